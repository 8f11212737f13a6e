"""Terminal tables for people (rich). Machines read the JSON/CSV files, or ``--print json``, instead."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from medannot.errors import InputError
from medannot.tasks import get_task

if TYPE_CHECKING:
    from medannot.evaluation.agreement_run import AgreementResult
    from medannot.evaluation.boxes_eval import BoxEvaluation
    from medannot.evaluation.results import EvaluationResult, Stats, TaskEvaluation


class PrintFormat(enum.StrEnum):
    """What ``medannot evaluate`` / ``agree`` print on stdout (``--print``); the files they write are the same."""

    TABLE = "table"
    JSON = "json"

    @classmethod
    def parse(cls, text: str) -> PrintFormat:
        """The format named by ``text`` (any case).

        Raises:
            InputError: An unknown name; the message lists the valid ones.
        """
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            valid = ", ".join(f.value for f in cls)
            raise InputError(f"--print must be one of: {valid} (table for people, json for machines); got {text!r}") from None


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def print_annotation_summary(results: Iterable[Any]) -> None:
    """One row per case and label: size (mm³ or mm²) and objects (instances, or boxes for a detector); a classifier's
    case shows its class and probability; failed cases with their reason."""
    table = Table(title="medannot annotate", show_lines=False)
    for col in ("case", "label", "size", "objects", "status"):
        table.add_column(col, justify="right" if col in {"size", "objects"} else "left")
    for res in results:
        if not res.ok:
            table.add_row(res.name, "-", "-", "-", f"[red]skipped[/red]: {res.reason}")
            continue
        ann = res.annotation
        status = f"ok ({res.seconds:.1f} s)"
        if ann is None:  # a PACS series whose outputs were already there (annotate --on-existing skip)
            table.add_row(res.name, "-", "-", "-", f"not redone: {getattr(res, 'pacs_note', '') or 'nothing new'}")
            continue
        if ann.classification is not None:
            c = ann.classification
            table.add_row(res.name, f"{c.label} (p = {c.probability:.3f}{', calibrated' if c.calibrated else ''})", "-", "-", status)
            continue
        unit = "mm³" if ann.ndim == 3 else "mm²"
        for i, lab in enumerate(ann.labels):
            objects = str(lab.instance_count) if lab.instance_count or not lab.box_count else f"{lab.box_count} boxes"
            table.add_row(res.name if i == 0 else "", lab.name, f"{lab.size:,.1f} {unit}" if lab.size else "-", objects,
                          status if i == 0 else "")
    _console().print(table)


#: Numbers in a bundle's metrics that are settings or counts, not results.
_NOT_RESULTS = {"epoch", "n", "iou", "threshold", "temperature", "seconds"}


def metric_summary(metrics: dict[str, Any], limit: int = 6) -> str:
    """Held-out metrics of any task in one short line (``"accuracy 0.596, macro_f1 0.396"``, ``"dice nucleus 0.942"``).

    Floats at the top level come first, then floats one level down (``dice`` -> per label, ``froc`` -> ``score``);
    integers (counts, epochs), lists (confusion matrices) and deeper tables (per case, per class) are left out,
    as are known settings (IoU thresholds, temperatures). At most ``limit`` values, then ``+N more``.

    Args:
        metrics: A bundle's ``metrics`` (``bundle.json``).
        limit: Most values shown.

    Returns:
        The line; "" for empty metrics or metrics without a float.
    """
    top: list[str] = []
    nested: list[str] = []
    for key, value in (metrics or {}).items():
        if key in _NOT_RESULTS:
            continue
        if isinstance(value, float):
            top.append(f"{key} {value:.3f}")
        elif isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, float) and sub not in _NOT_RESULTS:
                    nested.append(f"{key} {sub} {v:.3f}")
    shown = top + nested
    more = len(shown) - limit
    return ", ".join(shown[:limit]) + (f", +{more} more" if more > 0 else "")


#: The one metric ``medannot models`` shows per model: the first of these a bundle has (key, words).
HEADLINE_METRICS = (("mean_dice", "Dice"), ("accuracy", "accuracy"), ("ap50", "AP@0.5"), ("ap", "AP@[.5:.95]"), ("mae", "MAE"))


def headline_metric(metrics: dict[str, Any]) -> str:
    """The model's one headline held-out number (``"Dice 0.794"``, ``"accuracy 0.577"``, ``"AP@0.5 0.907"``).

    The first of :data:`HEADLINE_METRICS` the metrics hold as a number, else the first value of
    :func:`metric_summary`; "" when there is none.
    """
    for key, words in HEADLINE_METRICS:
        value = (metrics or {}).get(key)
        if isinstance(value, float):
            return f"{words} {value:.3f}"
    return metric_summary(metrics, limit=1).split(", +")[0]


def print_models(bundles: Iterable[Any]) -> None:
    """Bundled models, one line each on an 80-column terminal: name, version, task and dims, labels (classes) and one
    held-out metric (:func:`headline_metric`); ``medannot models NAME`` shows every metric and the card."""
    from rich import box

    table = Table(title="bundled models", caption="one held-out metric each; `medannot models NAME` shows all and the card",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("name", "version", "task", "labels", "held-out"):
        wraps = col == "labels"  # on a narrow terminal the labels wrap; the rest never shorten
        table.add_column(col, no_wrap=not wraps, overflow="fold" if wraps else "ignore")
    for b in bundles:
        labels = ", ".join(name for value, name in b.labels.items() if value != 0 or not get_task(b.task).has_background)
        table.add_row(b.name, str(b.version), f"{b.task} {b.spatial_dims}D", labels, headline_metric(b.spec.metrics))
    _console().print(table)


def print_model(bundle: Any) -> None:
    """One model: name, version, task, labels, every held-out metric (one per line), then its model card."""
    import typer

    labels = ", ".join(f"{value} {name}" for value, name in bundle.labels.items())
    lines = [f"{bundle.name} {bundle.version}: {bundle.task}, {bundle.spatial_dims}D; labels {labels}", "held-out metrics:"]
    lines += [f"  {item}" for item in metric_summary(bundle.spec.metrics, limit=1000).split(", ") if item] or ["  none recorded"]
    typer.echo("\n".join(lines))
    card = Path(bundle.path) / "MODEL_CARD.md" if bundle.path else None
    typer.echo("")
    typer.echo(card.read_text() if card is not None and card.exists() else f"{bundle.name} {bundle.version}: no model card")


def print_evaluation(result: TaskEvaluation, out_dir: Path, fmt: str = PrintFormat.TABLE) -> None:
    """Print any task's evaluation: ``json`` = strict JSON and nothing else on stdout, ``table`` = tables for people.

    Raises:
        InputError: An unknown ``fmt`` (before anything is printed).
    """
    import typer

    from medannot.evaluation.agreement_run import AgreementResult
    from medannot.evaluation.boxes_eval import BoxEvaluation
    from medannot.evaluation.classification_run import ClassificationEvaluation
    from medannot.evaluation.results import EvaluationResult

    if PrintFormat.parse(fmt) is PrintFormat.JSON:
        typer.echo(result.to_json())
    elif isinstance(result, EvaluationResult):
        print_evaluation_summary(result, out_dir)
    elif isinstance(result, BoxEvaluation):
        print_box_summary(result)
    elif isinstance(result, AgreementResult):
        print_agreement(result, out_dir)
    else:
        console = _console()
        console.print(result.summary_line())
        if isinstance(result, ClassificationEvaluation):
            if result.missing_predictions:
                console.print(f"no prediction (not scored): {', '.join(result.missing_predictions[:10])}")
            console.print(f"report: {result.paths['html']}")


def print_evaluation_summary(result: EvaluationResult, out_dir: Path) -> None:
    """Per label: cases, Dice (mean ± sd), HD95, ASSD, surface Dice, empty cases (and lesion F1); then where the report is."""
    lesions = bool(result.summary.lesions)
    table = Table(title="medannot evaluate", show_lines=False)
    cols = ["label", "n", "Dice", "HD95 mm", "ASSD mm", "surf. Dice", "empty"]
    if lesions:
        cols += ["lesion F1", "found", "FP"]
    for col in cols:
        table.add_column(col, justify="left" if col == "label" else "right", no_wrap=col == "label")
    for row in summary_rows(result):
        table.add_row(*row)
    console = _console()
    console.print(table)
    settings = result.settings
    absent = "counted as Dice 1" if settings.include_absent else "left out of the means; --include-absent counts them"
    console.print(f"empty = cases missed entirely / false alarms / absent in both ({absent})")
    missing = ("no prediction (scored as empty)" if settings.missing_as_empty else
               "truth case(s) without a prediction, not scored (--missing-as-empty scores them as empty)")
    for names, text in ((result.missing_predictions, missing),
                        (result.unmatched_predictions, "prediction without a reference (not scored)")):
        if names:
            console.print(f"[yellow]{len(names)} {text}[/yellow]: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}")
    froc = result.summary.froc
    if froc is not None and froc.skipped:
        console.print(froc.skipped)
    for label, curve in ((froc.curves if froc is not None else None) or {}).items():
        if curve.score is not None:
            console.print(f"FROC score {label}: {curve.score:.3f}")
    console.print(f"report: {result.paths.get('html', Path(out_dir) / 'report.html')}")


def summary_rows(result: EvaluationResult) -> list[list[str]]:
    """Rows of the evaluation summary table, from ``result.summary`` (see :func:`medannot.evaluation.accumulate.summarise`).

    Columns: label, n, Dice mean ± sd, HD95, ASSD, surface Dice (means ± sd), empty counts
    ``missed / false alarm / both``, and, when lesions were evaluated, pooled lesion F1,
    found/true lesions and false positives.
    """
    summary = result.summary
    lesions = summary.lesions

    def fmt(m: Stats | None, digits: int = 3) -> str:
        if m is None:
            return "-"
        return f"{m.mean:.{digits}f}" + (f" ± {m.std:.{digits}f}" if m.std is not None else "")

    rows = []
    for label, stats in summary.labels.items():
        e = summary.empty_counts.get(label)
        empty = "0/0/0" if e is None else f"{e.prediction}/{e.truth}/{e.both}"
        dice = stats.get("dice")
        row = [str(label), "" if dice is None else str(dice.n), fmt(dice), fmt(stats.get("hd95"), 1), fmt(stats.get("assd"), 1),
               fmt(stats.get("surface_dice"), 2), empty]
        if lesions is not None:
            les = lesions.get(label)
            if les is None:
                row += ["-", "-", "-"]
            else:
                f1 = "-" if les.f1 is None else f"{les.f1:.3f}"
                row += [f1, f"{les.tp}/{les.n_truth}", str(les.fp)]
        rows.append(row)
    return rows


def print_box_summary(result: BoxEvaluation) -> None:
    """One row per class and an overall row: AP@[.5:.95], AP@0.5, AP@0.75, AR@100, counts; then the FROC score."""

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    table = Table(title="medannot evaluate --boxes")
    for col in ("class", "true", "predicted", "AP@[.5:.95]", "AP@0.5", "AP@0.75", "AR@100"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, v in result.per_class.items():
        table.add_row(name, str(v["n_truth"]), str(v["n_detections"]), f(v["ap"]), f(v["ap50"]), f(v["ap75"]), f(v["recall"]))
    o = result.overall
    table.add_row("all", str(o.n_truth), str(o.n_predicted), f(o.ap), f(o.ap50), f(o.ap75), f(o.recall_at_100))
    console = _console()
    console.print(table)
    console.print(f"FROC score (IoU >= {o.froc_iou}): {f(o.froc_score)}   written: {result.files['json']}, {result.files['csv']}")


def print_agreement(result: AgreementResult, out_dir: Path) -> None:
    """Per label: reader pairs, empty pairs, mean/min Dice, mean/max HD95, worst pair; then where the files are."""
    kappa = result.fleiss_kappa_voxels.kappa
    table = Table(title=f"agreement of {len(result.readers)} readers (Fleiss' kappa on voxels {kappa:.3f})")
    for col in ("label", "pairs", "empty", "mean Dice", "min Dice", "mean HD95 (mm)", "max HD95 (mm)", "worst pair"):
        table.add_column(col, justify="left" if col in {"label", "worst pair"} else "right")
    for s in result.summary:
        table.add_row(
            str(s.label_name), str(s.n_pairs), str(s.n_empty), f"{s.mean_dice:.3f}", f"{s.min_dice:.3f}",
            f"{s.mean_hd95:.2f}", f"{s.max_hd95:.2f}", str(s.worst_pair),
        )
    _console().print(table)
    _console().print(f"written: {Path(out_dir)}/agreement.csv, agreement_summary.csv, agreement.json")
