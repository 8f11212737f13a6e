"""Evaluate label-map files or folders against reference labels and write the report.

Lesion-wise metrics (``lesions=True``), a FROC over cases when the predictions carry
instance scores, a manifest breakdown and overlay thumbnails are optional.
Cases are evaluated in parallel worker processes, each holding one case at a time.

Cases are matched by name: the file name without its image suffix
(``.nii.gz``, ``.nii``, ``.png``, ``.tif``, ...), or the folder name for the
layout written by ``medannot annotate`` (``PRED/<case>/labels.nii.gz``). So
``PRED/liver_01/labels.nii.gz`` matches ``TRUTH/liver_01.nii.gz``.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from medannot.errors import ConfigError, InputError
from medannot.evaluation.accumulate import (
    FrocAccumulator,
    SegmentationAccumulator,
    lesion_summary,
)
from medannot.evaluation.case_eval import (
    CaseOptions,
    CaseOutcome,
    absent_row,
    evaluate_case,
    thumbnail_case,
)
from medannot.evaluation.results import (
    FIRST_COLUMNS,
    LESION_COLUMNS,
    SUMMARY_METRICS,
    EvaluationResult,
    FrocSummary,
    MetricRow,
    SegmentationSettings,
    worst_first,
)
from medannot.evaluation.thumbnails import Thumbnail

__all__ = ["EvaluationResult", "MAX_THUMBNAILS", "case_name", "evaluate_paths", "find_label_files"]

#: Most overlay thumbnails in the HTML report (worst case/label rows first), keeping the page small.
MAX_THUMBNAILS = 24
#: Longest side of a thumbnail in pixels (24 of them stay well under 5 MB of HTML).
THUMBNAIL_SIDE = 280

_SUFFIXES = (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpg", ".jpeg", ".bmp", ".dcm")
#: File names looked for inside a per-case prediction folder, in order.
_CASE_FOLDER_FILES = tuple(f"labels{s}" for s in _SUFFIXES) + tuple(f"label{s}" for s in _SUFFIXES)


def case_name(path: str | Path) -> str:
    """Case name of a label file: its name without the image suffix (``ct_01.nii.gz`` -> ``ct_01``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_SUFFIXES)


def find_label_files(path: str | Path, role: str) -> dict[str, Path]:
    """Label files under ``path`` by case name.

    Args:
        path: A label file, or a folder of label files and/or case folders holding ``labels.<suffix>``.
        role: ``"prediction"`` or ``"truth"`` (for messages).

    Raises:
        InputError: If ``path`` does not exist, holds no label file, or two files give the same case name.
    """
    p = Path(path)
    if p.is_file():
        return {case_name(p): p}
    if not p.is_dir():
        raise InputError(f"{role} path does not exist; expected a label file or a folder of label files", p)
    found: dict[str, Path] = {}
    for child in sorted(p.iterdir()):
        if child.name.startswith("."):
            continue
        if _is_image_file(child):
            name, file = case_name(child), child
        elif child.is_dir():
            inner = next((child / f for f in _CASE_FOLDER_FILES if (child / f).is_file()), None)
            if inner is None:
                continue
            name, file = child.name, inner
        else:
            continue
        if name in found:
            raise InputError(f"two {role} files for case {name!r}: {found[name].name} and {file.name}; keep one", p)
        found[name] = file
    if not found:
        raise InputError(
            f"no {role} label files found; expected <case>.nii.gz (or .nii/.png/.tif) files or <case>/labels.nii.gz folders", p
        )
    return found


def _run(pool: Any, func: Any, jobs: list[tuple[Any, ...]]) -> list[Any]:
    """``func(*job)`` for every job, in order, in the pool (or in this process when pool is None)."""
    if pool is None:
        return [func(*job) for job in jobs]
    futures = [pool.submit(func, *job) for job in jobs]
    return [f.result() for f in futures]


def _worst_rows(rows: list[MetricRow], limit: int) -> list[MetricRow]:
    """Rows worth a thumbnail, worst first (lowest Dice, then largest HD95); correctly absent labels skipped."""
    shown = sorted((r for r in rows if r.empty != "both"), key=worst_first)
    return shown[: max(0, limit)]


def _froc_summary(outcomes: list[CaseOutcome], rows: list[MetricRow]) -> FrocSummary:
    """FROC per label over all cases, or why it was skipped."""
    reasons = sorted({o.froc_reason for o in outcomes if o.froc_hits is None and o.froc_reason})
    if any(o.froc_hits is None for o in outcomes):
        return FrocSummary(skipped="FROC not computed: " + ("; ".join(reasons) or "no instance scores"))
    names = dict(sorted({int(r.label_value): str(r.label) for r in rows if r.label_value is not None}.items()))
    acc = FrocAccumulator()
    for o in outcomes:
        hits = o.froc_hits or {}
        acc.update({name: hits.get(value, ([], [], 0)) for value, name in names.items()})
    curves = acc.compute()
    if not curves:
        return FrocSummary(skipped="FROC not computed: no lesion in any case")
    return FrocSummary(curves=curves, fp_rates=list(acc.fp_rates))


def evaluate_paths(
    pred: str | Path,
    truth: str | Path,
    out_dir: str | Path,
    labels: dict[int, str] | None = None,
    resample: bool = False,
    tolerance_mm: float = 1.0,
    max_workers: int | None = None,
    lesions: bool = False,
    match: str = "iou",
    match_threshold: float = 0.5,
    manifest: str | Path | None = None,
    max_thumbnails: int = MAX_THUMBNAILS,
    missing_as_empty: bool = False,
    include_absent: bool = False,
) -> EvaluationResult:
    """Evaluate predicted label maps against reference label maps and write the report.

    Args:
        pred: A prediction label file or folder (``<case>.nii.gz`` files or ``<case>/labels.nii.gz`` folders).
        truth: A reference label file or folder, matched to predictions by case name
            (two single files are matched to each other whatever their names).
        out_dir: Folder for ``metrics.csv``, ``metrics.json`` and ``report.html``.
        labels: Label value -> name to evaluate. Values present in a file but not listed raise
            :class:`InputError`. Default: every non-zero value present in any prediction or truth,
            named by its value; a label absent from both masks of a case gets a row flagged "both"
            that the summary leaves out of its statistics (see ``include_absent``).
        resample: Resample a prediction on a different grid onto the truth grid (nearest neighbour)
            instead of raising :class:`GeometryError` (``medannot evaluate --resample``).
        tolerance_mm: Surface Dice tolerance in mm.
        max_workers: Worker processes (default ``os.cpu_count()``); a single case runs in-process.
        lesions: Add lesion-wise columns per case and label (see
            :func:`medannot.evaluation.instances.lesion_metrics` and ``panoptic_quality``): lesions are the
            connected components of each label, or the ids of ``<case>/instances.nii.gz`` where present.
            When every prediction is a ``medannot annotate`` folder with instance scores, a FROC per
            label over all cases is added to the summary (``summary["froc"]``); otherwise the reason
            it was skipped is given there.
        match: Lesion matching criterion, ``"iou"`` or ``"overlap"`` (fraction of the true lesion covered).
        match_threshold: A lesion pair matches when the criterion is strictly above this (0 <= t < 1).
        manifest: CSV file with a ``case`` column and any other columns (site, scanner...): rows gain
            the columns, ``summary["manifest"]`` breaks Dice/HD95 down per value, and cases on one side
            only are listed (see :mod:`medannot.evaluation.manifest`).
        max_thumbnails: Most overlay thumbnails (worst rows first) in the HTML report; 0 for none.
        missing_as_empty: Score truth cases without a prediction as empty predictions (Dice 0 for every
            label they hold; ``--missing-as-empty``); by default only the cases present on both sides are scored.
        include_absent: Count labels absent from both masks of a case in the summary statistics as perfect
            agreement (Dice 1, distance 0; ``--include-absent``); by default they are flagged and left out, as nnU-Net does.

    Returns:
        :class:`~medannot.evaluation.results.EvaluationResult`. Truth cases without a prediction are listed
        in ``missing_predictions`` (and scored only with ``missing_as_empty``); predictions without a truth
        are listed in ``unmatched_predictions`` and not scored.

    Raises:
        InputError: Missing paths, no matching case at all, label values outside ``labels``, unreadable
            files, a manifest without a ``case`` column or with a column named like a metric.
        ConfigError: Unknown ``match`` or a threshold outside [0, 1).
        GeometryError: Prediction and truth grids differ (shape, or affine beyond 1e-4 mm) and ``resample`` is False.
    """
    from medannot.evaluation.report import write_report

    pred_p, truth_p = Path(pred), Path(truth)
    if lesions:
        from medannot.evaluation.instances import Criterion

        try:
            match = str(Criterion(str(match).lower()))
        except ValueError:
            raise ConfigError(f"--match must be one of {', '.join(c.value for c in Criterion)}, got {match!r}") from None
        if not 0.0 <= float(match_threshold) < 1.0:
            raise ConfigError(f"--match-threshold must be in [0, 1) (pairs need a value strictly above it), got {match_threshold}")
    man = None
    if manifest is not None:
        from medannot.evaluation.manifest import read_manifest

        man = read_manifest(manifest)
        reserved = set(FIRST_COLUMNS) | set(SUMMARY_METRICS) | set(LESION_COLUMNS) | {"empty", "label_value"}
        clash = sorted(set(man.columns) & reserved)
        if clash:
            raise InputError(f"--manifest columns {clash} have the names of result columns; rename them", man.path)
    truths = find_label_files(truth_p, "truth")
    preds = find_label_files(pred_p, "prediction")
    if pred_p.is_file() and truth_p.is_file():
        preds = {next(iter(truths)): pred_p}
    if not set(preds) & set(truths):
        raise InputError(
            f"no prediction matches a truth case by name (predictions: {', '.join(sorted(preds)[:5])}; "
            f"truths: {', '.join(sorted(truths)[:5])}); name predictions <case>.nii.gz or <case>/labels.nii.gz",
            pred_p,
        )
    if labels is not None:
        labels = {int(k): str(v) for k, v in labels.items()}
        if 0 in labels:
            raise InputError("label 0 is the background and is not evaluated; remove it from --labels")
    missing = sorted(set(truths) - set(preds))
    unmatched = sorted(set(preds) - set(truths))
    cases = sorted(truths) if missing_as_empty else sorted(set(truths) & set(preds))
    options = CaseOptions(labels, resample, float(tolerance_mm), bool(lesions), str(match), float(match_threshold))
    jobs = [(c, preds.get(c), truths[c], options) for c in cases]

    workers = min(max_workers or os.cpu_count() or 1, len(jobs))
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        outcomes: list[CaseOutcome] = _run(pool, evaluate_case, jobs)
        acc = SegmentationAccumulator(tolerance_mm=tolerance_mm, include_absent=include_absent)
        all_values: set[int] = set().union(*(o.present for o in outcomes)) if labels is None else set()
        for case, o in zip(cases, outcomes, strict=True):
            extra = all_values - {r.label_value for r in o.rows}
            rows = o.rows + [absent_row(case, v, o.ndim, options) for v in extra]
            for row in sorted(rows, key=lambda r: int(r.label_value or 0)):
                if man is not None:
                    row = dataclasses.replace(row, extra=man.values(case))
                acc.add_row(row)

        thumbnails: dict[tuple[str, str], Thumbnail] = {}
        worst = _worst_rows(acc.rows, max_thumbnails)
        by_case: dict[str, list[MetricRow]] = {}
        for row in worst:
            by_case.setdefault(str(row.case), []).append(row)
        thumb_jobs = [(preds.get(c), truths[c], [int(r.label_value or 0) for r in rs], resample, THUMBNAIL_SIDE) for c, rs in by_case.items()]
        for (case, rs), thumbs in zip(by_case.items(), _run(pool, thumbnail_case, thumb_jobs), strict=True):
            for r in rs:
                thumbnails[(case, str(r.label))] = thumbs[int(r.label_value or 0)]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    breakdown = None
    if man is not None:
        from medannot.evaluation.manifest import breakdown as manifest_breakdown

        breakdown = manifest_breakdown(acc.rows, man, cases, include_absent=include_absent)
    summary = dataclasses.replace(
        acc.compute(),
        missing_predictions=missing,
        unmatched_predictions=unmatched,
        lesions=lesion_summary(acc.rows, include_absent) if lesions else None,
        froc=_froc_summary(outcomes, acc.rows) if lesions else None,
        manifest=breakdown,
    )
    settings = SegmentationSettings(
        prediction=str(pred_p),
        truth=str(truth_p),
        labels=None if labels is None else {str(k): v for k, v in sorted(labels.items())},
        resample=resample,
        tolerance_mm=float(tolerance_mm),
        lesions=bool(lesions),
        workers=workers,
        match=str(match) if lesions else None,
        match_threshold=float(match_threshold) if lesions else None,
        lesion_definition="connected components of each label (full connectivity), or <case>/instances.nii.gz ids where present"
        if lesions else None,
        manifest=str(man.path) if man is not None else None,
        missing_as_empty=bool(missing_as_empty),
        include_absent=bool(include_absent),
    )
    paths = write_report(out_dir, acc.rows, summary, settings, thumbnails=thumbnails)
    return EvaluationResult(
        summary=summary, settings=settings, paths=paths, missing_predictions=missing, unmatched_predictions=unmatched,
        rows=acc.rows, thumbnails=thumbnails,
    )
