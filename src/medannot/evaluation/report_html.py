"""The self-contained HTML evaluation report: what each section shows, prepared for its template.

Order: verdict in plain words (what a radiologist reads first), things needing
attention, where to look first (model uncertainty and classifier explanations, when the
annotation run wrote them), summary table, distributions, lesions and FROC, manifest breakdown,
worst cases with overlay thumbnails, every case, how to read this, settings.
The markup is ``medannot/templates/evaluation_report.html`` (one shared stylesheet, inlined); plots and
thumbnails are base64 PNG; no script, no external URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medannot.evaluation.metrics import Empty
from medannot.evaluation.record import json_safe
from medannot.evaluation.report_explanations import ExplanationView
from medannot.evaluation.results import (
    SUMMARY_METRICS,
    LesionSummary,
    MetricRow,
    SegmentationSummary,
    Stats,
    worst_first,
)
from medannot.evaluation.thumbnails import Thumbnail

__all__ = ["HOW_TO_READ", "render_html"]

HOW_TO_READ = {
    "Dice": "Overlap of the automatic and the reference mask, from 0 (no overlap) to 1 (identical): twice the shared "
    "volume divided by the sum of both volumes. Small structures get low Dice from small errors. As a rough guide "
    "used in the verdict: 0.9 or more = close agreement, 0.7 to 0.9 = moderate, below 0.7 = poor.",
    "IoU": "Intersection over union (Jaccard): shared volume divided by the volume covered by either mask. "
    "Always lower than Dice for the same result; 0 to 1.",
    "precision": "Of what the algorithm marked, the fraction that is in the reference. Low precision = over-segmentation or false positives.",
    "recall": "Of the reference, the fraction the algorithm found (sensitivity). Low recall = missed tissue or lesions.",
    "HD95": "Boundary error in mm that 95% of the boundary points stay within, taken as the worse of the two directions "
    "(automatic-to-reference and reference-to-automatic; MONAI's definition). Robust to a few stray voxels.",
    "HD95 pooled": "Same idea as HD95 but over the boundary points of both masks pooled together (MedPy's definition); "
    "never larger than HD95.",
    "ASSD": "Average distance in mm between the two boundaries (every boundary voxel of both masks to the other boundary).",
    "Hausdorff": "The single largest boundary distance in mm: the worst point anywhere, including far-away false positives.",
    "surface Dice": "Fraction of both boundaries lying within the tolerance (in mm, see the top of the page) of the other "
    "boundary, 0 to 1; how much of the outline a reader would accept without correction.",
    "specificity": "Fraction of background correctly left unmarked. Near 1 for small structures in large images; rarely informative.",
    "volume difference": "Automatic minus reference volume (mm³ in 3D, mm² in 2D). Positive = too large.",
    "empty cases": "'prediction' = the algorithm marked nothing where the reference has the structure (a miss); "
    "'truth' = the reference has no such structure but the algorithm marked some (a false alarm); 'both' = correctly "
    "absent. A one-sided empty mask scores Dice 0 and the worst possible distance (the diagonal of the image in mm); "
    "a label absent from both ('both') says nothing about the method: as nnU-Net does, it is listed but left out of the "
    "averages (medannot evaluate --include-absent counts it as Dice 1 and distance 0). Missed structures and false alarms "
    "are included in every average and listed, never dropped.",
    "lesions": "With lesion evaluation on, each connected component of a label (or each instance of instances.nii.gz) "
    "is one lesion. A predicted and a true lesion match when their IoU (or, with --match overlap, the fraction of the "
    "true lesion covered) is strictly above the match threshold; matching is one-to-one.",
    "lesion sensitivity": "True lesions found / all true lesions (per case; the lesion table pools all cases).",
    "lesion precision": "Predicted lesions that match a true lesion / all predicted lesions.",
    "lesion F1": "2 × found / (2 × found + false positives + missed): one number balancing misses and false alarms.",
    "false positives": "Predicted lesions matching no true lesion, per case. 'FP per case' is their mean over cases.",
    "lesion empty rule": "No lesion on either side: sensitivity, precision and F1 are 1 (correctly nothing). Lesions on "
    "one side only: they are 0, so predicting nothing is never rewarded.",
    "PQ (panoptic quality)": "Segmentation quality × recognition quality (Kirillov et al. 2019), with matches at IoU > 0.5: "
    "SQ = mean IoU of matched lesions, RQ = the lesion F1 at IoU > 0.5, PQ = SQ × RQ; 0 to 1.",
    "FROC": "Free-response ROC: lesion sensitivity against the mean number of false positives per case, as the "
    "confidence threshold for keeping a predicted lesion is lowered. The FROC score is the mean sensitivity at "
    "1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per case (LUNA16). It needs a confidence score per predicted "
    "lesion, which classical methods do not give.",
    "thumbnails": "One slice per case and structure: in 3D the axial slice holding most of the structure (reference or "
    "prediction, whichever has more there), "
    "anterior up and the patient's right on the image left; green = both agree, orange = false positive (predicted, "
    "not in the reference), blue = false negative (in the reference, missed). Drawn on the original image when it could "
    "be found, else on grey. Only the worst cases get a thumbnail.",
    "breakdown": "With a manifest, every metric is also summarised per value of each manifest column (site, scanner, "
    "model version...), so a drop at one site or with one scanner is visible. Cases missing on either side are listed.",
}

_UNITS = {"hd95": "mm", "hd95_pooled": "mm", "assd": "mm", "hausdorff": "mm", "volume_difference": "mm³"}
_HEAD = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "hd95_pooled": "HD95 pooled", "assd": "ASSD", "hausdorff": "Hausdorff",
         "surface_dice": "surface Dice", "volume_difference": "volume diff.", "specificity": "specificity",
         "precision": "precision", "recall": "recall"}

#: Columns of the HTML summary table; IoU, HD95 pooled, Hausdorff, specificity and volumes are in the CSV/JSON and case table.
_SUMMARY_SHOWN = ("dice", "precision", "recall", "hd95", "assd", "surface_dice", "volume_difference")

#: Thumbnail legend: overlay class -> words.
_LEGEND = {"agree": "both agree", "false_positive": "false positive (predicted only)", "false_negative": "false negative (reference only, missed)"}


@dataclass(frozen=True)
class _Verdict:
    """One label's bullet of the verdict."""

    label: str
    quality: str
    quality_text: str
    dice: Stats
    worst: MetricRow | None
    hd95: Stats | None
    missed: list[str]
    alarms: list[str]
    lesions: LesionSummary | None


@dataclass(frozen=True)
class _SummaryRow:
    label: str
    n: int
    cells: list[tuple[Stats | None, int]]
    empty: str


@dataclass(frozen=True)
class _Card:
    case: str
    label: str
    row: MetricRow | None
    thumb: Thumbnail


def _quality(mean_dice: float) -> tuple[str, str]:
    if mean_dice >= 0.9:
        return "good", "close agreement"
    if mean_dice >= 0.7:
        return "fair", "moderate agreement"
    return "poor", "poor agreement"


def _cases_of(rows: Sequence[MetricRow], label: str, kind: Empty) -> list[str]:
    return [str(r.case) for r in rows if str(r.label) == label and r.empty == kind]


def short_list(names: Sequence[str], limit: int = 6) -> str:
    """``"a, b, c and 4 more"``: at most ``limit`` names."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def verdict(rows: Sequence[MetricRow], summary: SegmentationSummary) -> list[_Verdict]:
    """The plain-words verdict: one entry per label that has Dice values."""
    items = []
    lesions = summary.lesions or {}
    for label, stats in summary.labels.items():
        d = stats.get("dice")
        if d is None:
            continue
        sel = [r for r in rows if str(r.label) == label]
        worst = min(sel, key=lambda r: float(r.metrics.dice)) if sel else None
        quality, text = _quality(d.mean)
        items.append(_Verdict(label, quality, text, d, worst, stats.get("hd95"), _cases_of(rows, label, Empty.PREDICTION),
                              _cases_of(rows, label, Empty.TRUTH), lesions.get(label)))
    return items


def attention(summary: SegmentationSummary, settings: Mapping[str, Any] | None = None) -> list[str]:
    """Things needing attention, in words: missing/unmatched predictions, empty masks, manifest mismatches.

    ``settings`` (``missing_as_empty``, ``include_absent``) say how missing cases and absent labels were scored.
    """
    settings = settings or {}
    missing = summary.missing_predictions or []
    unmatched = summary.unmatched_predictions or []
    man = summary.manifest
    items = []
    if missing:
        how = ("scored as empty predictions" if settings.get("missing_as_empty") else
               "not scored (medannot evaluate --missing-as-empty scores them as empty predictions)")
        items.append(f"No prediction file for {len(missing)} case(s), {how}: {', '.join(missing)}")
    if unmatched:
        items.append(f"{len(unmatched)} prediction(s) without a reference, not scored: {', '.join(unmatched)}")
    what = {Empty.TRUTH: "reference is empty, prediction is not", Empty.PREDICTION: "prediction is empty, reference is not"}
    items += [f"{e.case} / {e.label}: {what[e.empty]}" for e in summary.empty_cases if e.empty != Empty.BOTH]
    both = [e for e in summary.empty_cases if e.empty == Empty.BOTH]
    if both:
        how = "counted as perfect" if settings.get("include_absent") else "left out of the averages"
        items.append(f"absent in both ({how}): " + ", ".join(f"{e.case} / {e.label}" for e in both))
    if man is not None and man.not_evaluated:
        items.append(f"in the manifest but not evaluated: {', '.join(man.not_evaluated)}")
    if man is not None and man.not_in_manifest:
        items.append(f"evaluated but not in the manifest (grouped as “(not in manifest)”): {', '.join(man.not_in_manifest)}")
    return items


def _summary_table(summary: SegmentationSummary) -> tuple[list[str], list[_SummaryRow]]:
    metrics = [m for m in SUMMARY_METRICS if m in _SUMMARY_SHOWN]
    head = [f"{_HEAD.get(m, m)}{' (' + _UNITS[m] + ')' if m in _UNITS else ''}" for m in metrics]
    rows = []
    for label, per_metric in summary.labels.items():
        n = max((s.n for s in per_metric.values()), default=0)
        cells = [(per_metric.get(m), 0 if m == "volume_difference" else 1 if m in _UNITS else 3) for m in metrics]
        e = summary.empty_counts.get(label)
        empty = "0 / 0 / 0" if e is None else f"{e.prediction} / {e.truth} / {e.both}"
        rows.append(_SummaryRow(label, n, cells, empty))
    return head, rows


def _case_cell(value: Any, column: str) -> str:
    from medannot.templates import grouped, num

    if column.endswith("volume") and isinstance(value, (int, float)):
        return grouped(value, 0)
    return num(value, 1 if column in _UNITS else 3)


@dataclass(frozen=True)
class _CaseTable:
    """Every case, worst first: header ``(css class, name)`` and rows ``(empty?, [(css class, text)])``."""

    head: list[tuple[str, str]]
    body: list[tuple[bool, list[tuple[str, str]]]]


def _case_table(rows: Sequence[MetricRow], extra: Sequence[str]) -> _CaseTable:
    cols = ["case", "label", "dice", "iou", "precision", "recall", "hd95", "hd95_pooled", "assd", "surface_dice", "truth_volume", "pred_volume"]
    if any(r.lesions is not None for r in rows):
        cols += ["n_truth_lesions", "lesion_tp", "false_positives", "lesion_f1", "pq"]
    cols += ["empty", *extra]
    text_cols = {"case", "label", "empty", *extra}
    names = {"n_truth_lesions": "true lesions", "lesion_tp": "found", "false_positives": "FP", "lesion_f1": "lesion F1", "pq": "PQ",
             "truth_volume": "ref. volume", "pred_volume": "pred. volume"}
    head = [("t" if c in text_cols else "n", names.get(c, _HEAD.get(c, c))) for c in cols]
    body = [(bool(r.empty), [("t" if c in text_cols else "n", _case_cell(r.get(c), c)) for c in cols]) for r in sorted(rows, key=worst_first)]
    return _CaseTable(head, body)


def render_html(
    rows: Sequence[MetricRow],
    summary: SegmentationSummary,
    settings: Mapping[str, Any],
    plots: Mapping[str, Any],
    thumbnails: Mapping[tuple[str, str], Thumbnail],
    versions: Mapping[str, str],
    created: str,
    explanations: ExplanationView | None = None,
) -> str:
    """The whole page as text.

    Args:
        rows: Metric rows.
        summary: Summary (labels, empty cases, optional ``lesions``, ``froc``, ``manifest``).
        settings: Run settings (``tolerance_mm``, ``prediction``, ``truth``, ``match``...).
        plots: ``{"dice": b64, "hd95": b64, "froc": b64, "manifest": {column: b64}}`` (any may be missing).
        thumbnails: ``{(case, label): Thumbnail}``.
        versions: Library versions.
        created: Creation time text.
        explanations: The "where to look first" section's content
            (:func:`medannot.evaluation.report_explanations.explanation_view`), or None.
    """
    from medannot.evaluation.thumbnails import COLORS
    from medannot.templates import render

    man = summary.manifest
    by_key = {(str(r.case), str(r.label)): r for r in rows}
    head, summary_rows = _summary_table(summary)
    manifest_labels = {} if man is None else {
        column: list(dict.fromkeys(lab for g in groups.values() for lab in g.labels)) for column, groups in man.groups.items()
    }
    match = settings.get("match", "iou")
    return render(
        "evaluation_report.html",
        rows=rows,
        summary=summary,
        settings=settings,
        where=(settings.get("prediction"), settings.get("truth", "")),
        created=created,
        verdict=verdict(rows, summary),
        short_list=short_list,
        attention=attention(summary, settings),
        explanations=explanations,
        summary_head=head,
        summary_rows=summary_rows,
        plots={"dice": plots.get("dice"), "hd95": plots.get("hd95"), "froc": plots.get("froc"), "manifest": plots.get("manifest") or {}},
        match_rule="IoU" if match == "iou" else "fraction of the true lesion covered",
        match_threshold=settings.get("match_threshold", 0.5),
        manifest_labels=manifest_labels,
        legend=[(f"rgb{COLORS[k]}", text) for k, text in _LEGEND.items()],
        cards=[_Card(key[0], key[1], by_key.get(key), t) for key, t in thumbnails.items()],
        case_table=_case_table(rows, man.columns if man is not None else []),
        how_to_read=HOW_TO_READ,
        settings_json=json.dumps(json_safe(settings), indent=2),
        versions=versions,
    )
