"""Terminal tables for people (rich). Machines read the JSON/CSV files instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def print_annotation_summary(results: Iterable[Any]) -> None:
    """One row per case and label: size (mm³ or mm²) and instance count; failed cases with their reason."""
    table = Table(title="medannot annotate", show_lines=False)
    for col in ("case", "label", "size", "instances", "status"):
        table.add_column(col, justify="right" if col in {"size", "instances"} else "left")
    for res in results:
        if not res.ok:
            table.add_row(res.name, "-", "-", "-", f"[red]skipped[/red]: {res.reason}")
            continue
        ann = res.annotation
        unit = "mm³" if ann.ndim == 3 else "mm²"
        for i, lab in enumerate(ann.labels):
            table.add_row(
                res.name if i == 0 else "",
                lab.name,
                f"{lab.size:,.1f} {unit}",
                str(lab.instance_count),
                f"ok ({res.seconds:.1f} s)" if i == 0 else "",
            )
    _console().print(table)


def print_models(bundles: Iterable[Any]) -> None:
    """Bundled models with task, labels and held-out validation metrics."""
    table = Table(title="bundled models (medannot models NAME shows the card)")
    for col in ("name", "version", "task", "dims", "labels", "held-out metrics"):
        table.add_column(col)
    for b in bundles:
        labels = ", ".join(name for value, name in b.labels.items() if value != 0)
        metrics = b.spec.metrics
        shown = ", ".join(
            f"{kind} {name} {value:.3f}"
            for kind in ("dice", "instance_f1")
            for name, value in (metrics.get(kind) or {}).items()
            if isinstance(value, float)
        )
        table.add_row(b.name, str(b.version), str(b.task), f"{b.spatial_dims}D", labels, shown)
    _console().print(table)


def print_evaluation_summary(result: Any, out_dir: Path) -> None:
    """Mean (± sd) per label of Dice, HD95 and ASSD, the number of empty cases, and where the report is."""
    table = Table(title=f"medannot evaluate ({Path(out_dir) / 'report.html'})")
    for col in ("label", "cases", "Dice", "IoU", "HD95 (mm)", "ASSD (mm)", "empty"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for row in summary_rows(result):
        table.add_row(*row)
    _console().print(table)


def summary_rows(result: Any) -> list[list[str]]:
    """Rows of the evaluation summary table, from ``result.summary`` (see :func:`medannot.evaluation.accumulate.summarise`)."""
    summary = result.summary
    rows = []
    for label, stats in summary["labels"].items():
        def fmt(metric: str) -> str:
            m = stats.get(metric)
            if not m:
                return "-"
            return f"{m['mean']:.3f}" + (f" ± {m['std']:.3f}" if m.get("std") is not None else "")

        empty = summary.get("empty_counts", {}).get(label, {})
        n_empty = sum(int(v) for v in empty.values())
        rows.append([str(label), str(stats.get("dice", {}).get("n", "")), fmt("dice"), fmt("iou"), fmt("hd95"), fmt("assd"), str(n_empty)])
    return rows
