"""The ``medannot`` command line. Heavy imports live inside commands so ``medannot --help`` is instant.

Every expected failure (bad input, unknown model, grid mismatch) prints one line
``medannot: error: <file>: <reason>`` on stderr and exits with code 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Optional, TypeVar

import typer

from medannot import __version__
from medannot.errors import InputError, MedannotError

app = typer.Typer(
    name="medannot",
    help="Annotate medical images automatically; experts review and correct instead of drawing from scratch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with code 2."""
    typer.echo(f"medannot: error: {message}".splitlines()[0], err=True)
    raise typer.Exit(EXIT_INPUT)


def friendly_errors(func: F) -> F:
    """Turn :class:`MedannotError` into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MedannotError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("medannot: interrupted; finished cases are kept, the current one was not written", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medannot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    max_image_mb: Optional[float] = typer.Option(
        None, "--max-image-mb", help="Most pixel data one input image may declare, in MiB (default 2048); larger files are refused before reading."
    ),
) -> None:
    """medannot: automatic annotation of medical images, with evaluation built in."""
    if max_image_mb is not None:
        from medannot.errors import ConfigError
        from medannot.io.limits import set_read_limits

        try:
            set_read_limits(max_image_mb=max_image_mb)
        except ConfigError as exc:
            fail(str(exc))


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` options; values are read as JSON when they parse (numbers, lists), else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--param expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def parse_label_names(text: str | None, option: str = "--labels") -> dict[int, str] | None:
    """``--labels`` of any command: ``1=liver,2=tumour`` or ``{"1": "liver"}`` -> ``{1: "liver"}``; None stays None."""
    from medannot.annotations.labelmap import LabelMap

    label_map = LabelMap.from_text(text, option)
    return None if label_map is None else label_map.names()


@app.command()
@friendly_errors
def annotate(
    input: Optional[str] = typer.Argument(
        None, help="A file, a DICOM series folder, a folder of images, a dataset folder, or dicomweb+http://HOST:PORT/dicom-web/studies/UID."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder; one sub-folder per case (default medannot_out; for a PACS study only if given)."
    ),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Bundled model name or bundle folder."),
    method: Optional[str] = typer.Option(None, "--method", help="Classical method instead of a model (see `medannot methods`)."),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="A --method parameter NAME=VALUE (repeatable), e.g. -p seed=25,69,9 -p tolerance=40; "
        "`medannot methods NAME` lists every parameter with type, default, unit and meaning."
    ),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Flip test-time augmentation (default: the bundle's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary table."),
    pacs: Optional[str] = typer.Option(None, "--pacs", help="DICOMweb root of a PACS, e.g. http://127.0.0.1:8042/dicom-web (with --study)."),
    study: Optional[str] = typer.Option(None, "--study", help="StudyInstanceUID to annotate on --pacs."),
    pacs_timeout: float = typer.Option(30.0, "--pacs-timeout", min=0.001, help="Seconds to wait for the PACS to connect or answer."),
    pacs_retries: int = typer.Option(3, "--pacs-retries", min=0, help="Retries (exponential back-off) on refused connections and HTTP 5xx."),
    deid: bool = typer.Option(False, "--deid", help="PACS input: de-identify each series on ingest, before it touches the disk (local outputs hold pseudonyms only)."),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="Also write uncertainty.nii.gz (softmax entropy), its overlay and a summary in annotation.json."),
    mc_dropout: int = typer.Option(0, "--mc-dropout", min=0, help="Monte-Carlo dropout passes for --uncertainty (networks with dropout only)."),
    engine: str = typer.Option("pytorch", "--engine", help="Network runtime: pytorch (default), onnxruntime (the bundle's model.onnx) or onnxruntime-int8 (model.int8.onnx)."),
    output_format: list[str] = typer.Option(
        [], "--format", help="Also write nrrd (labels.seg.nrrd: a 3D Slicer segmentation, any input), dicom-seg (seg.dcm), rtstruct (rtstruct.dcm), dicom-sr (sr.dcm: TID 1500 volumes and lesion "
        "diameters, with seg.dcm; stored beside the SEG on a PACS), report (report.html: key slices, measurements, provenance); "
        "nifti always; repeatable or comma list; the DICOM ones for DICOM inputs only."
    ),
    record_machine: bool = typer.Option(
        False, "--record-machine", help="Also record this computer's name and your user name in annotation.json (not recorded by default)."
    ),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Spread the cases over a Ray cluster: local (a private one on this machine), auto (the one `ray start --head` "
        "runs here) or HOST:PORT of an existing cluster; each worker loads the model once; a re-run skips complete cases."
    ),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", min=1, help="With --ray: workers (default: the cluster's CPUs / --ray-threads)."),
    ray_threads: int = typer.Option(1, "--ray-threads", min=1, help="With --ray: PyTorch threads (and CPUs) per worker."),
    resume: bool = typer.Option(False, "--resume", help="Skip cases whose folder is complete from an earlier run of the same model and settings "
                                "(always on with --ray)."),
    on_existing: str = typer.Option(
        "skip", "--on-existing", help="PACS study already holding this model's SEG (and SR) of a series (same UIDs: derived from the "
        "source series and the model): skip (default: not annotated again, nothing deleted), replace (delete it, then store) or keep-both "
        "(new series with new UIDs)."
    ),
) -> None:
    """Annotate INPUT with a trained model or a classical method; write labels, overlays and annotation.json.

    A PACS study (dicomweb+http://... or --pacs URL --study UID) is retrieved series by series over DICOMweb,
    and each series' labels are stored back into the study as a DICOM SEG. With --ray the cases are spread over
    a Ray cluster (the input and --out must be on a file system every node sees).
    """
    from medannot.inference.engines import Engine
    from medannot.reporting import print_annotation_summary
    from medannot.tasks import PredictOptions, load_predictor
    from medannot.tasks.segmentation import ClassicalSegmenter
    from medannot.workflows.annotate import annotate_inputs

    if (model is None) == (method is None):
        fail("give exactly one of --model NAME_OR_BUNDLE or --method NAME (see `medannot models` and `medannot methods`)")
    from medannot.io.dicomweb import PacsSettings, is_dicomweb_url, pacs_location

    if pacs is not None or study is not None:
        if pacs is None or study is None or input is not None:
            fail("--pacs URL and --study UID go together, in place of the INPUT argument")
        input = pacs_location(pacs, study).url_with_credentials()
    if input is None:
        fail("give an INPUT (file, folder or dicomweb+http://... address), or --pacs URL --study UID")
    remote = is_dicomweb_url(input)
    if not remote and not Path(input).exists():
        fail(f"{input}: no such file or folder")
    out = out if out is not None or remote else Path("medannot_out")
    if deid and not remote:
        fail("--deid de-identifies PACS input on ingest; for files and folders run `medannot deid IN OUT` first")
    pacs_settings = PacsSettings(timeout_s=pacs_timeout, retries=pacs_retries, deidentify=deid) if remote else None
    from medannot.annotations.dicom_outputs import parse_formats

    formats = parse_formats(output_format)
    from medannot.annotations.pacs_store import OnExisting

    if OnExisting.parse(on_existing) is not OnExisting.SKIP and ray is not None:  # a typo fails here, before anything is read
        fail(f"--on-existing {on_existing} is not passed to --ray workers (they skip what is there); run it without --ray")
    if model is not None and param:
        fail(f"-p/--param sets a --method's parameters; a --model takes none (got {', '.join(param)}); drop -p or use --method")
    if method is not None:
        from medannot import classical

        method_params = classical.parse_params(classical.ClassicalMethod.parse(method).value, param)  # typos fail before reading
    options = PredictOptions(tta=tta, progress=not quiet, uncertainty=uncertainty, mc_dropout=mc_dropout, engine=Engine.parse(engine).value)
    if ray is not None:
        factory = _ray_factory(model, options, method, method_params if method is not None else None)
    else:
        predictor = load_predictor(model, options) if model is not None else ClassicalSegmenter(str(method), method_params, progress=not quiet)

    def show(result: Any) -> None:
        if not result.ok:
            typer.echo(f"medannot: skipped {result.reason}", err=True)
        elif not quiet:
            kinds = ("DICOM SEG", "DICOM SR")  # store_segmentation stores the SEG, then its SR when asked
            kept = ([str(result.folder)] if result.folder else []) + [f"{kinds[min(i, 1)]} {uid} stored in the PACS"
                                                                       for i, uid in enumerate(result.stored)]
            c = result.annotation.classification if result.annotation is not None else None
            what = f": {c.label} (p = {c.probability:.3f}{', calibrated' if c.calibrated else ''})" if c is not None else ""
            typer.echo(f"annotated {result.name}{what} -> {', '.join(kept) or 'nothing kept'} ({result.seconds:.1f} s)"
                       + (f"; {result.pacs_note}" if getattr(result, "pacs_note", "") else ""))

    def show_files(files: list[Path]) -> None:
        if not quiet:
            typer.echo("batch files: " + ", ".join(str(f) for f in files))

    if ray is not None:
        from medannot.workflows.batch_ray import RaySettings, annotate_on_ray

        settings = RaySettings(address=ray, workers=ray_workers, threads=ray_threads)
        results = annotate_on_ray(input if remote else Path(input), factory, out or Path("medannot_out"), settings, on_case=show, formats=formats,
                                  pacs_settings=pacs_settings, on_batch_files=show_files, progress=not quiet, record_machine=record_machine)
    else:
        results = annotate_inputs(input if remote else Path(input), predictor, out, on_case=show, pacs_settings=pacs_settings, formats=formats,
                                  on_batch_files=show_files, record_machine=record_machine, skip_complete=resume, on_existing=on_existing)
    if not quiet:
        print_annotation_summary(results)
    failed = [r for r in results if not r.ok]
    if failed:
        typer.echo(f"medannot: {len(failed)} of {len(results)} inputs failed and were skipped", err=True)
        raise typer.Exit(EXIT_INPUT)


def _ray_factory(model: str | None, options: Any, method: str | None, method_params: Any) -> Callable[[], Any]:
    """A picklable maker of the predictor, run once inside each Ray worker (no progress bars there)."""
    from dataclasses import replace

    from medannot.tasks import load_predictor
    from medannot.tasks.segmentation import ClassicalSegmenter

    if model is not None:
        local = Path(model)
        ref = str(local.resolve()) if local.exists() else model  # a bundle folder: the same absolute path on every node
        return functools.partial(load_predictor, ref, replace(options, progress=False))
    return functools.partial(ClassicalSegmenter, str(method), method_params, progress=False)


@app.command()
@friendly_errors
def evaluate(
    pred: Path = typer.Argument(..., help="Predicted label file or folder (e.g. the --out of annotate); with --interactive the images (or a dataset folder)."),
    truth: Optional[Path] = typer.Argument(None, help="Ground-truth label file or folder, matched by case name; for a classifier's output, a CSV (case or path, label)."),
    out: Path = typer.Option(Path("medannot_eval"), "--out", "-o", help="Folder for metrics.csv, metrics.json, report.html."),
    interactive: bool = typer.Option(False, "--interactive", help="Simulated user on PRED's images against TRUTH masks: Dice after 1..N clicks, NoC@80/85/90 per engine."),
    engine: list[str] = typer.Option([], "--engine", help="With --interactive: an engine (repeatable): growcut, region-growing, random-walker, promptable-2d, a bundle folder."),
    clicks: int = typer.Option(20, "--clicks", min=1, help="With --interactive: interactions per object (the NoC cap)."),
    first: str = typer.Option("click", "--first", help="With --interactive: the first interaction, click or box."),
    max_objects: Optional[int] = typer.Option(None, "--max-objects", min=1, help="With --interactive: at most this many objects (label values) per case."),
    resample: bool = typer.Option(False, "--resample", help="Resample predictions onto the truth grid when grids differ."),
    labels: Optional[str] = typer.Option(None, "--labels", help='Label names: 1=liver,2=tumour or JSON \'{"1": "liver"}\'.'),
    tolerance: float = typer.Option(1.0, "--tolerance", min=0.0, help="Surface Dice tolerance in mm."),
    lesions: bool = typer.Option(False, "--lesions", help="Also lesion-wise metrics (sensitivity, precision, F1, FP, PQ; FROC when scored)."),
    boxes: bool = typer.Option(False, "--boxes", help="Score the boxes of annotation.json files against a COCO JSON or instance masks (AP, AR, FROC)."),
    match: str = typer.Option("iou", "--match", help="Lesion matching: iou, or overlap (fraction of the true lesion covered)."),
    match_threshold: float = typer.Option(0.5, "--match-threshold", help="Lesions match when the --match value is above this (0 to <1)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV with a 'case' column and columns to break results down by."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),
    print_format: str = typer.Option("table", "--print", help="What to print: table (for people) or json (for machines; only JSON on stdout)."),
    missing_as_empty: bool = typer.Option(
        False, "--missing-as-empty", help="Score truth cases that have no prediction as empty predictions (default: list them, score the cases on both sides)."
    ),
    include_absent: bool = typer.Option(
        False, "--include-absent", help="Count a label absent from both prediction and truth as Dice 1 in the means (default: flag it, leave it out, as nnU-Net)."
    ),
) -> None:
    """Compare predicted labels with ground truth: Dice, IoU, HD95, ASSD, surface Dice (and lesions); CSV, JSON and HTML report.

    A classifier's output folder (classifications.csv) against a CSV of true classes gives accuracy, per-class
    precision/recall, ROC AUC and calibration in classification.json / classification.html instead.
    """
    from medannot.reporting import PrintFormat, print_evaluation

    fmt = PrintFormat.parse(print_format)  # a typo lists the valid names before anything runs
    if interactive:
        from medannot.workflows.segment import evaluate_interactive

        values = sorted(parse_label_names(labels) or {}) or None
        print_evaluation(evaluate_interactive(pred, truth, engine, out, max_clicks=clicks, first=first, labels=values,
                                              max_objects=max_objects), out, fmt)
        return
    if engine or max_objects is not None:
        fail("--engine and --max-objects go with --interactive")
    if truth is None:
        fail("give TRUTH: the ground-truth label file or folder (or use --interactive on a dataset folder with labels)")
    from medannot.tasks import EvaluateOptions, Task, get_task, task_of_predictions

    if match not in {"iou", "overlap"}:
        fail(f"--match must be 'iou' or 'overlap', got {match!r}")
    task = Task.DETECTION if boxes else task_of_predictions(pred)  # the task the predictions record, not a guess
    options = EvaluateOptions(labels=parse_label_names(labels), resample=resample, tolerance_mm=tolerance, lesions=lesions, match=match,
                              match_threshold=match_threshold, manifest=manifest, workers=workers,
                              missing_as_empty=missing_as_empty, include_absent=include_absent)
    result = get_task(task).evaluate(pred, truth, out, options)
    print_evaluation(result, out, fmt)


@app.command()
@friendly_errors
def segment(
    image: Path = typer.Argument(..., help="One image: NIfTI, NRRD, MHA, PNG/TIFF, a DICOM file or one DICOM series folder."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="PROMPTS.json: points, boxes, scribbles of one object or a list of objects (README)."),
    point: list[str] = typer.Option([], "--point", help="Positive click X,Y,Z in world mm (RAS, as a viewer shows; X,Y in 2D); repeatable."),
    negative: list[str] = typer.Option([], "--negative", help="Negative click X,Y,Z (not the object); repeatable."),
    box: list[str] = typer.Option([], "--box", help="Box X0,Y0,Z0,X1,Y1,Z1 (two opposite corners; X0,Y0,X1,Y1 in 2D); repeatable."),
    voxel: bool = typer.Option(False, "--voxel", help="--point/--negative/--box are voxel indices in the file's array order, not mm."),
    previous: Optional[Path] = typer.Option(None, "--previous", help="Labels to refine (on the image's grid): object n refines label n."),
    engine: Optional[str] = typer.Option(None, "--engine", help="growcut (default: fewest clicks on held-out objects), region-growing, random-walker, promptable-2d (the network), or a bundle folder."),
    label: Optional[str] = typer.Option(None, "--label", help="Name of the object given on the command line."),
    out: Path = typer.Option(Path("medannot_out"), "--out", "-o", help="Output folder; the case goes to OUT/<case>/."),
    record_machine: bool = typer.Option(False, "--record-machine", help="Record the computer's and user's names in annotation.json."),
) -> None:
    """Segment the object(s) you point at: clicks, boxes or scribbles -> OUT/<case>/labels.nii.gz, overlays, annotation.json."""
    from medannot.workflows.segment import prompt_sessions, read_prompts_file, segment_image

    sessions = prompt_sessions(read_prompts_file(prompts) if prompts is not None else [], point, negative, box, voxel, label)
    done = segment_image(image, sessions, out, engine=engine, previous=previous, record_machine=record_machine)
    times = ", ".join(f"{t:.2f}" for t in done.seconds)
    typer.echo(f"{done.name}: {len(done.seconds)} object(s) with {done.engine} ({times} s) -> {done.folder}")


@app.command()
@friendly_errors
def agree(
    readers: list[Path] = typer.Argument(..., help="Two or more label files of the same case, one per reader, on one grid."),
    out: Path = typer.Option(Path("medannot_agreement"), "--out", "-o", help="Folder for agreement.csv/json and the consensus mask."),
    labels: Optional[str] = typer.Option(None, "--labels", help='Label names: 1=liver,2=tumour or JSON \'{"1": "liver"}\'.'),
    consensus: str = typer.Option("staple", "--consensus", help="staple, majority or none: which consensus mask to write."),
    tie: str = typer.Option("background", "--tie", help="Majority-vote tie rule: background, lowest or random-seeded."),
    print_format: str = typer.Option("table", "--print", help="What to print: table (for people) or json (for machines; only JSON on stdout)."),
) -> None:
    """Agreement between readers: pairwise Dice/HD95/ASSD, Fleiss' kappa on voxels, STAPLE or majority-vote consensus."""
    from medannot.evaluation.agreement_run import run_agreement
    from medannot.reporting import PrintFormat, print_evaluation

    fmt = PrintFormat.parse(print_format)  # a typo lists the valid names before anything runs
    result = run_agreement(readers, out, labels=parse_label_names(labels), consensus=consensus, tie=tie)
    print_evaluation(result, out, fmt)


@app.command()
@friendly_errors
def train(
    config: Path = typer.Argument(..., help="Training config (YAML or JSON), e.g. configs/nuclei.yaml."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: key=value (dotted keys allowed)."),
) -> None:
    """Train a model from CONFIG and write a bundle (weights, config, label map, model card)."""
    from medannot.tasks import train as run_training

    if not config.exists():
        fail(f"{config}: no such config file")
    bundle = run_training(config, overrides=parse_params(set_) or None)
    typer.echo(f"bundle written: {bundle}")


@app.command()
@friendly_errors
def models(
    name: Optional[str] = typer.Argument(None, help="Show this model's card; or 'export' followed by MODEL."),
    model: Optional[str] = typer.Argument(None, help="With 'export': the bundled model name or bundle folder to export."),
    export_format: Optional[str] = typer.Option(None, "--format", help="With 'export': onnx (writes model.onnx and onnx.json into the bundle)."),
    int8: bool = typer.Option(False, "--int8", help="With 'export': also model.int8.onnx (ONNX Runtime static int8, calibrated on the bundle's own data)."),
    calibration: list[Path] = typer.Option([], "--calibration", help="With --int8: images of the bundle's own (validation) data; bundled models know theirs."),
) -> None:
    """List the bundled models, print one model's card, or `models export MODEL --format onnx [--int8]`."""
    from medannot.models.bundle import Bundle, list_bundles
    from medannot.reporting import print_model, print_models

    if name == "export":
        _export_model(model, export_format, int8, calibration)
        return
    if model is not None or export_format is not None or int8 or calibration:
        fail("--format, --int8 and --calibration go with `medannot models export MODEL`")
    if name is not None:
        print_model(Bundle.load(name))
        return
    print_models(list_bundles())


def _export_model(model: str | None, export_format: str | None, int8: bool, calibration: list[Path]) -> None:
    """``medannot models export MODEL --format onnx [--int8] [--calibration IMAGE ...]``."""
    from medannot.inference.onnx_bundle import export_bundle
    from medannot.models.bundle import Bundle

    if model is None:
        fail("give the model to export: medannot models export MODEL --format onnx [--int8]")
    if export_format != "onnx":
        fail(f"--format must be onnx (the only export format), got {export_format!r}")
    if calibration and not int8:
        fail("--calibration is for --int8 (the images int8 quantisation is calibrated on)")
    images = None
    if calibration:
        from medannot.io import read_image

        missing = [str(p) for p in calibration if not p.is_file()]
        if missing:
            fail(f"{missing[0]}: no such calibration image file")
        images = [read_image(p) for p in calibration]
    bundle = Bundle.load(str(model))
    record = export_bundle(bundle, int8=int8, calibration=images, calibration_note=", ".join(p.name for p in calibration))
    for variant, entry in record.files.items():
        typer.echo(f"wrote {Path(str(bundle.path)) / entry['file']} ({variant}, {entry['bytes'] / 1e3:.0f} kB, "
                   f"max |ONNX Runtime - PyTorch| {record.max_abs_diff[variant]:.2g} on the export check)")


@app.command()
@friendly_errors
def methods(
    name: Optional[str] = typer.Argument(None, help="A method: print every parameter with type, default, unit and meaning."),
) -> None:
    """List the classical (training-free) annotation methods; `medannot methods NAME` shows one method's parameters."""
    import textwrap

    from medannot import classical

    if name is None:
        for method in classical.list_methods():
            typer.echo(textwrap.fill(f"{method:16s} {classical.describe_method(method)}", 80, subsequent_indent=" " * 17))
        typer.echo("\nmedannot methods NAME prints a method's parameters; set them with\nannotate --method NAME -p KEY=VALUE.")
        return
    method = classical.ClassicalMethod.parse(name).value
    typer.echo(textwrap.fill(f"{method}: {classical.describe_method(method)}", 80, subsequent_indent="  "))
    typer.echo("parameters (annotate --method " + method + " -p NAME=VALUE):")
    for line in classical.describe_parameters(method):
        typer.echo(line)


@app.command()
@friendly_errors
def deid(
    input: Path = typer.Argument(..., help="A DICOM file or a folder tree of DICOM files."),
    out: Path = typer.Argument(..., help="Output folder: sub-folders mirrored, files named by their new SOP Instance UID."),
    map_db: Optional[Path] = typer.Option(None, "--map", help="SQLite map of UIDs, pseudonyms and date shifts; reuse it so later batches match."),
    secret: Optional[str] = typer.Option(None, "--secret", help="Project secret for the replacements (default: the map's, or a new random one)."),
    shift_dates: bool = typer.Option(False, "--shift-dates/--remove-dates", help="Keep dates shifted by a per-patient offset, or remove them (Basic Profile)."),
    clean_descriptors: bool = typer.Option(False, "--clean-descriptors", help="Keep free-text descriptions, cleaned of names, IDs and dates, instead of removing them."),
    keep_private: list[str] = typer.Option([], "--keep-private", help="Private tag to keep: GGGG,EEEE or GGGG,xxEE@CREATOR (repeatable)."),
    assume_no_burned_in: bool = typer.Option(False, "--assume-no-burned-in", help="Pass secondary-capture/ultrasound images lacking BurnedInAnnotation (YES is always quarantined)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only problems and the final count."),
) -> None:
    """De-identify DICOM (PS3.15 Basic Profile): identifiers removed, UIDs remapped, burned-in images quarantined."""
    from medannot.privacy import Deidentifier, DeidOptions, UidMap, parse_private_tag
    from medannot.privacy.batch import DeidStatus, deidentify_tree

    if not input.exists():
        fail(f"{input}: no such file or folder")
    options = DeidOptions(
        shift_dates=shift_dates, clean_descriptors=clean_descriptors,
        keep_private=tuple(parse_private_tag(t) for t in keep_private), assume_no_burned_in=assume_no_burned_in,
    )
    if map_db is None and not quiet:
        typer.echo("medannot: no --map given: new UIDs will not match those of later batches", err=True)

    def show(result: Any) -> None:
        if result.status is DeidStatus.SKIPPED:
            typer.echo(f"medannot: skipped {result.reason}", err=True)
        elif result.status is DeidStatus.QUARANTINED:
            typer.echo(f"medannot: quarantined {result.source} -> {result.output}: {result.reason}", err=True)
        elif not quiet:
            typer.echo(f"{result.source} -> {result.output}")

    with UidMap(map_db, secret=secret) as uid_map:
        results = deidentify_tree(input, out, Deidentifier(options, uid_map), on_file=show)
    if not results:  # an empty folder: almost always a wrong path, and a run that did nothing must not look like success
        raise InputError("holds no files; nothing to de-identify (check the path)", input)
    counts = {status: sum(r.status is status for r in results) for status in DeidStatus}
    typer.echo(
        f"de-identified {counts[DeidStatus.WRITTEN]} file(s), quarantined {counts[DeidStatus.QUARANTINED]}, "
        f"skipped {counts[DeidStatus.SKIPPED]} -> {out}"
    )
    if counts[DeidStatus.SKIPPED]:
        raise typer.Exit(EXIT_INPUT)


@app.command()
@friendly_errors
def convert(
    src: Path = typer.Argument(..., help="Labels to convert: NIfTI (.nii/.nii.gz), a DICOM SEG or an RTSTRUCT (.dcm)."),
    dst: Path = typer.Argument(..., help="Output file: .nii/.nii.gz (NIfTI) or .dcm (DICOM SEG, or RTSTRUCT with --to rtstruct)."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", "-r", help="The DICOM series folder the labels belong to (needed to write SEG/RTSTRUCT and to read RTSTRUCT)."
    ),
    labels: Optional[str] = typer.Option(None, "--labels", help='Label names, e.g. "1=liver,2=tumour" (or JSON).'),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Take label names and colours from this bundle (and name it as the algorithm)."),
    to: Optional[str] = typer.Option(None, "--to", help="Target format: nifti, dicom-seg or rtstruct (default: from DST's suffix)."),
) -> None:
    """Convert label maps between NIfTI, DICOM SEG and RTSTRUCT, on the reference series' voxels."""
    from medannot.annotations.convert import convert_labels, parse_label_spec

    if labels is not None and model is not None:
        fail("give --labels or --model, not both")
    label_map, algorithm = parse_label_spec(labels), None
    if model is not None:
        from medannot.annotations import LabelMap
        from medannot.models.bundle import Bundle

        bundle = Bundle.load(model)
        label_map = LabelMap.parse({k: v.model_dump() for k, v in bundle.spec.labels.items()})
        algorithm = ("AUTOMATIC", bundle.name, bundle.version)
    path, source_fmt, target_fmt = convert_labels(src, dst, reference, label_map, to, algorithm)
    typer.echo(f"converted {src} ({source_fmt.value}) -> {path} ({target_fmt.value})")


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder."),
) -> None:
    """Annotate the bundled real samples with the bundled models, evaluate, and print a summary."""
    from medannot.workflows.demo import run_demo

    run_demo(out)


from medannot.server.cli import register as _register_server_commands  # noqa: E402 - serve, worker, users, projects

_register_server_commands(app, friendly_errors)

from medannot.workflows.federated_cli import register as _register_federated_commands  # noqa: E402 - federated server, client, simulate

_register_federated_commands(app, friendly_errors)

@app.command()
@friendly_errors
def index(
    folder: Path = typer.Argument(..., help="Images to index: a folder of files, a folder per class (FOLDER/<class>/...), DICOM series..."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to write (features.npy, cases.json, thumbs/)."),
    model: Optional[str] = typer.Option("modality", "--model", "-m", help="Classification bundle whose embedding is a feature block; 'none' for classical features only."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="A `medannot annotate --out` folder: label names of each case's annotation.json become text features."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only problems and the final count."),
) -> None:
    """Build a similar-case index: model embedding, intensity histogram, HOG edge orientations, annotation text."""
    from medannot.retrieval import build_index

    def show(case_id: str, error: str | None) -> None:
        if error:
            typer.echo(f"medannot: skipped {error}", err=True)
        elif not quiet:
            typer.echo(f"indexed {case_id}")

    idx = build_index(folder, out, model=None if model in (None, "none") else model, annotations=annotations, on_case=show)
    typer.echo(f"index written: {out} ({len(idx)} cases, {idx.features.shape[1]} features each)")


@app.command()
@friendly_errors
def similar(
    image: Optional[Path] = typer.Argument(None, help="The query image or volume (any input `annotate` reads); omit with --evaluate."),
    index_dir: Path = typer.Option(..., "--index", "-i", help="Index folder built by `medannot index`."),
    k: int = typer.Option(10, "-k", min=1, help="Number of similar cases."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write OUT/similar.html with thumbnails."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Precision at k of the index's labelled cases (each against the others, other sources only)."),
) -> None:
    """Find the cases of an index most similar to IMAGE (cosine similarity), or evaluate the index (--evaluate)."""
    from medannot.retrieval.cli_support import print_evaluation, run_similar

    if evaluate:
        print_evaluation(index_dir, k)
        return
    if image is None:
        fail("give a query IMAGE, or --evaluate")
    run_similar(image, index_dir, k, out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
