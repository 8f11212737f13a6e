"""Annotate inputs in a batch: discover, load, predict, write; one bad input never stops the rest.

The predictor is any :class:`~medannot.tasks.CasePredictor`: a trained bundle of any task
(:func:`medannot.tasks.load_predictor`) or a classical method (:class:`~medannot.tasks.segmentation.ClassicalSegmenter`).
Each case folder is written by the predictor's own case writer, atomically; batch-level files (e.g. a classifier's
``classifications.csv``) come after the last case.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medannot.annotations.dicom_grid import load_source_datasets
from medannot.annotations.dicom_outputs import OutputFormat, case_writers, parse_formats
from medannot.annotations.dicom_uids import fresh_output_uids
from medannot.annotations.pacs_store import OnExisting, existing_outputs, store_segmentation
from medannot.annotations.results import SegmentationResult
from medannot.annotations.schema import Annotation, Provenance, portable_provenance, validate_annotation
from medannot.errors import ConfigError, InputError, MedannotError
from medannot.io import discover_inputs
from medannot.privacy import Deidentifier
from medannot.tasks import CasePredictor, Task, get_task

__all__ = ["CaseResult", "CaseStep", "annotate_inputs", "completed_case", "plan_batch"]


@dataclass
class CaseResult:
    """Outcome of one input in a batch.

    Attributes:
        name: Case name (the output folder's name).
        ok: Whether the case was annotated and written.
        reason: The one-line reason of a failure.
        folder: The case folder (None when nothing is kept locally).
        annotation: What ``annotation.json`` holds.
        seconds: Time spent on the case.
        stored: SOPInstanceUIDs stored back to a PACS (DICOM SEG).
        resumed: The case folder was complete from an earlier run of the same model and settings (not redone).
        pacs_note: For a PACS series: what was already in the study and kept, or replaced ("" when nothing was).
    """

    name: str
    ok: bool
    reason: str = ""
    folder: Path | None = None
    annotation: Annotation | None = None
    seconds: float = 0.0
    stored: list[str] = field(default_factory=list)
    resumed: bool = False
    pacs_note: str = ""


def annotate_inputs(
    input_path: str | Path,
    predictor: CasePredictor,
    out_dir: str | Path | None,
    on_case: Callable[[CaseResult], None] | None = None,
    pacs_settings: Any = None,
    formats: Sequence[str] = ("nifti",),
    on_batch_files: Callable[[list[Path]], None] | None = None,
    dataset_hook: Callable[[Any], Any] | None = None,
    record_machine: bool = False,
    skip_complete: bool = False,
    on_existing: OnExisting | str = OnExisting.SKIP,
) -> list[CaseResult]:
    """Annotate everything under ``input_path`` into ``out_dir/<case>/``.

    A DICOMweb address (``dicomweb+http://HOST/ROOT/studies/UID``) is annotated series by series, and
    each series' label map is stored back to the same study on the PACS as a DICOM SEG (STOW-RS).

    Args:
        input_path: A file, a DICOM series folder, a folder of files, a dataset folder, or a DICOMweb address (str).
        predictor: A bundle's or a classical method's predictor.
        out_dir: Output root; None keeps nothing locally (for PACS inputs, whose result goes back to the PACS).
        on_case: Called after each case (for progress display).
        pacs_settings: :class:`medannot.io.dicomweb.PacsSettings` (timeout, retries) for DICOMweb addresses.
        formats: Formats of each case folder: ``nifti`` (always), ``dicom-seg`` (``seg.dcm``),
            ``rtstruct`` (``rtstruct.dcm``), ``dicom-sr`` (``sr.dcm``, with ``seg.dcm``), ``report`` (``report.html``);
            the DICOM ones only for DICOM inputs (other inputs fail with a one-line reason), all of them only for
            label-map tasks. For a PACS study, ``dicom-sr`` also stores the SR in the study beside the SEG.
        on_batch_files: Called with the batch-level files written after the last case (e.g. ``classifications.csv``).
        dataset_hook: For DICOMweb addresses: applied to every retrieved instance before it touches the disk. With
            ``pacs_settings.deidentify`` and no hook, one :class:`medannot.privacy.Deidentifier` (PS3.15 Basic
            Profile) serves the whole run, so UIDs stay consistent across the study's series.
        record_machine: Record the computer's and the user's name in each ``annotation.json`` (``--record-machine``).
            Paths are never absolute: the input's is relative to ``input_path`` (see
            :func:`medannot.annotations.schema.portable_provenance`).
        skip_complete: Resume: a case whose folder is complete (:func:`completed_case`) is not redone.
        on_existing: For a PACS study: what to do when it already holds this model's SEG (and SR) of a series, whose
            UIDs are derived from the source series and the model (:mod:`medannot.annotations.pacs_store`):
            ``skip`` (default: the series is not retrieved or annotated again), ``replace`` (delete, then store)
            or ``keep-both`` (new series with new UIDs).

    Returns:
        One :class:`CaseResult` per discovered input, in order; failed inputs carry the one-line reason.

    Raises:
        InputError: If ``input_path`` does not exist or holds no readable input at all.
        ConfigError: DICOM output formats asked of a task without label maps (before anything is read).
    """
    items, step = plan_batch(input_path, predictor, formats, pacs_settings, dataset_hook, out_dir=out_dir, record_machine=record_machine,
                             on_existing=on_existing)
    results: list[CaseResult] = []
    reference = step.reference(predictor.provenance({})) if skip_complete else None
    for item in items:
        result = completed_case(out_dir, item.name, reference) if reference is not None else None
        if result is None:
            result = step(item, predictor)
        results.append(result)
        if on_case is not None:
            on_case(result)
    if out_dir is not None:
        files = predictor.finish(Path(out_dir), [(r.name, r.annotation) for r in results if r.ok and r.annotation is not None])
        if on_batch_files is not None and files:
            on_batch_files(files)
    return results


def _annotate_one(item: Any, predictor: CasePredictor, out_dir: str | Path | None, formats: Sequence[OutputFormat],
                  input_root: str | Path, record_machine: bool, on_existing: OnExisting = OnExisting.SKIP) -> CaseResult:
    """Load, predict and write one discovered input (DICOM SEG, and SR when asked, stored back for PACS inputs)."""
    dicom_formats = [f for f in formats if f.needs_dicom]
    if dicom_formats and item.source not in ("dicom-series", "dicomweb"):
        wanted = ", ".join(f.value for f in dicom_formats)
        raise InputError(f"--format {wanted} needs a DICOM series input; this input is a {item.source} (NIfTI, picture or "
                         "dataset case): its labels go to labels.nii.gz only, run without that --format", item.paths[0])
    if item.remote is not None and on_existing is OnExisting.SKIP:  # done before? then not even retrieved
        maker = portable_provenance(predictor.provenance({}), input_root, record_machine)
        there = existing_outputs(item.remote.location, maker, item.remote.settings, measurements=OutputFormat.DICOM_SR in formats)
        if len(there) == 1 + (OutputFormat.DICOM_SR in formats):
            return CaseResult(item.name, True, pacs_note="already in the PACS, kept: " + ", ".join(f"{k} series {u}" for k, u in there)
                              + " (--on-existing replace redoes it)")
    case = item.load()
    image = case.image
    result = predictor.predict(image)
    where = case.files[0] if not item.paths else item.paths[0].parent if item.source == "dicom-series" else item.paths[0]
    info: dict[str, Any] = {"path": str(where), "source": item.source}
    info.update({k: str(v) for k, v in case.identifiers.items()})
    provenance = portable_provenance(predictor.provenance(info), input_root, record_machine)
    labels = result.labels if isinstance(result, SegmentationResult) else None
    extra = []
    instance_maps = result.instance_maps if isinstance(result, SegmentationResult) else None
    uids = fresh_output_uids(provenance) if item.remote is not None and on_existing is OnExisting.KEEP_BOTH else None
    if formats and labels is not None:
        sources = (list(case.dicom_headers) or load_source_datasets(list(item.paths), item.series_uid)) if dicom_formats else []
        extra = case_writers(formats, image, labels, sources, result.label_map, provenance, instance_maps, case_name=item.name,
                             uids=uids)
    root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="medannot-annotate-"))
    try:
        annotation = predictor.write_case(root, item.name, image, result, provenance, extra)
    finally:
        if out_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    done = CaseResult(item.name, True, folder=None if out_dir is None else root / item.name, annotation=annotation)
    if item.remote is not None and labels is not None:
        outcome = store_segmentation(item.remote.location, labels, list(case.dicom_headers), result.label_map, provenance,
                                     item.remote.settings, measurements=OutputFormat.DICOM_SR in formats, instance_maps=instance_maps,
                                     on_existing=on_existing, uids=uids)
        done.stored, done.pacs_note = outcome.stored, outcome.note
    return done


@dataclass(frozen=True)
class CaseStep:
    """The per-case step of a batch: one discovered input annotated into ``out_dir/<case>/`` (atomically).

    The one step of every batch: this module's loop and the Ray workers of :mod:`medannot.workflows.batch_ray`
    (it is picklable). Made by :func:`plan_batch`.

    Attributes:
        out_dir: Output root (None: nothing kept locally, for PACS inputs).
        formats: Formats each case writes besides NIfTI.
        input_root: The INPUT given (case paths in ``annotation.json`` are relative to it).
        record_machine: Record the computer's and user's names.
        on_existing: For PACS series: skip, replace or keep-both this model's earlier SEG/SR (:class:`OnExisting`).
    """

    out_dir: Path | None
    formats: tuple[OutputFormat, ...]
    input_root: str | Path
    record_machine: bool = False
    on_existing: OnExisting = OnExisting.SKIP

    def __call__(self, item: Any, predictor: CasePredictor) -> CaseResult:
        """Annotate ``item``; never raises for a bad input (the result carries the one-line reason), timed."""
        start = time.perf_counter()
        try:
            result = _annotate_one(item, predictor, self.out_dir, list(self.formats), self.input_root, self.record_machine,
                                   self.on_existing)
        except MedannotError as exc:  # a message without a file names the case, so a batch says which input failed
            result = CaseResult(item.name, False, reason=str(exc) if exc.path is not None or str(exc).startswith(item.name)
                                else f"{item.name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug or resource limit on one input must not lose the batch
            result = CaseResult(item.name, False, reason=f"{item.name}: {type(exc).__name__}: {exc}".splitlines()[0])
        result.seconds = time.perf_counter() - start
        return result

    def reference(self, provenance: Provenance) -> Provenance:
        """A predictor's provenance as this batch writes it into ``annotation.json`` (for :func:`completed_case`)."""
        return portable_provenance(provenance, self.input_root, self.record_machine)


def plan_batch(input_path: str | Path, predictor: CasePredictor, formats: Sequence[str], pacs_settings: Any = None,
               dataset_hook: Callable[[Any], Any] | None = None, *, out_dir: str | Path | None,
               record_machine: bool = False, on_existing: OnExisting | str = OnExisting.SKIP) -> tuple[list[Any], CaseStep]:
    """Check the output formats against the predictor's task, then discover the inputs (none is read yet).

    Args:
        input_path, predictor, formats, pacs_settings, dataset_hook, record_machine, on_existing: As for :func:`annotate_inputs`
            (``predictor`` is asked only for its ``task``).
        out_dir: Output root.

    Returns:
        ``(items, step)``: the discovered :class:`medannot.io.InputItem` list and the :class:`CaseStep` for each.

    Raises:
        InputError: If ``input_path`` does not exist or holds no readable input at all.
        ConfigError: Output formats asked of a task without label maps (before anything is read).
    """
    mode = OnExisting.parse(on_existing)  # a typo fails before anything is read
    extra_formats = [f for f in parse_formats(formats) if f is not OutputFormat.NIFTI]
    if extra_formats and not get_task(predictor.task).writes_label_maps:
        wanted = ", ".join(f.value for f in extra_formats)
        raise ConfigError(f"--format {wanted} needs a label map; a {predictor.task.value} model gives none (run without that --format)")
    if dataset_hook is None and pacs_settings is not None and getattr(pacs_settings, "deidentify", False):
        dataset_hook = Deidentifier().deidentify
    items = discover_inputs(input_path, pacs_settings, dataset_hook=dataset_hook)
    if not items:
        raise InputError("no image found (expected NIfTI, DICOM, PNG/JPEG/TIFF or a dataset folder)", input_path)
    return items, CaseStep(None if out_dir is None else Path(out_dir), tuple(extra_formats), input_path, record_machine, mode)


def completed_case(out_dir: str | Path | None, name: str, reference: Provenance) -> CaseResult | None:
    """The result of a case an earlier run finished with the same model and settings, or None (redo it).

    A case folder is complete when its ``annotation.json`` follows the schema, every file it lists exists, and its
    provenance names the same source, model, version, weights hash, task and parameters as ``reference``
    (:meth:`CaseStep.reference`). Case folders are renamed into place whole, so a run killed mid-case leaves none.
    """
    if out_dir is None:
        return None
    folder = Path(out_dir) / name
    path = folder / "annotation.json"
    try:
        annotation = validate_annotation(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError, MedannotError):
        return None
    mine, theirs = reference, annotation.provenance
    if (mine.source, mine.name, mine.version, mine.sha256, Task.parse(mine.task)) != (
            theirs.source, theirs.name, theirs.version, theirs.sha256, Task.parse(theirs.task)):
        return None
    if _plain(mine.parameters) != _plain(theirs.parameters):
        return None
    if not all((folder / f).is_file() for f in annotation.files.values() if isinstance(f, str)):
        return None
    return CaseResult(name, True, folder=folder, annotation=annotation, resumed=True)


def _plain(value: Any) -> Any:
    """JSON round trip, so parameters compare as ``annotation.json`` stores them."""
    return json.loads(json.dumps(value, default=str))
