"""The self-contained HTML evaluation report, section by section.

Order: verdict in plain words (what a radiologist reads first), things needing
attention, where to look first (model uncertainty and classifier explanations, when the
annotation run wrote them), summary table, distributions, lesions and FROC, manifest breakdown,
worst cases with overlay thumbnails, every case, how to read this, settings.
Inline CSS, plots and thumbnails as base64 PNG; no script, no external URL.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any, Sequence

from medannot.evaluation.accumulate import SUMMARY_METRICS

__all__ = ["CSS", "HOW_TO_READ", "render_html"]

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
    "'both' scores Dice 1 and distance 0. Every empty case is included in every average and listed, never dropped.",
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
    "thumbnails": "One slice per case and structure: in 3D the axial slice where prediction and reference disagree most, "
    "anterior up and the patient's right on the image left; green = both agree, orange = false positive (predicted, "
    "not in the reference), blue = false negative (in the reference, missed). Drawn on the original image when it could "
    "be found, else on grey. Only the worst cases get a thumbnail.",
    "breakdown": "With a manifest, every metric is also summarised per value of each manifest column (site, scanner, "
    "model version...), so a drop at one site or with one scanner is visible. Cases missing on either side are listed.",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;color:#222;max-width:1150px;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:2px solid #e4e4e4;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .3em}.sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0}
th,td{border:1px solid #d4d4d4;padding:.3em .6em;text-align:right;vertical-align:top}th{background:#f3f4f6}
td.t,th.t{text-align:left}table.sum td{white-space:nowrap}table.sum{font-size:.85em}tr.empty td{background:#fff6d6}
.verdict{background:#f4f8fc;border:1px solid #b9d3ea;border-radius:6px;padding:.8em 1.2em}
.verdict ul{margin:.3em 0;padding-left:1.2em}.verdict li{margin:.45em 0}
.badge{display:inline-block;padding:0 .5em;border-radius:4px;font-size:.85em;font-weight:600;color:#fff}
.good{background:#1a7f4b}.fair{background:#b7791f}.poor{background:#c0392b}
.note{background:#fff6d6;border:1px solid #e0c060;border-radius:6px;padding:.5em 1em;margin:1em 0}.note ul{margin:.3em 0}
.plots img{margin:.3em;border:1px solid #eee;vertical-align:top}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px;width:292px;font-size:.82em;background:#fafafa}
.card img{display:block;margin:4px auto;max-width:280px}.card b{font-size:1.05em}.card .where{color:#666}
.sw{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin:0 .3em 0 .9em;border:1px solid #888}
dl{font-size:.93em}dt{font-weight:600;margin-top:.6em}dd{margin-left:1.2em}
.muted{color:#777}.wide{overflow-x:auto}pre{background:#f6f6f6;padding:.6em;font-size:.82em;overflow-x:auto}
"""

_UNITS = {"hd95": "mm", "hd95_pooled": "mm", "assd": "mm", "hausdorff": "mm", "volume_difference": "mm³"}
_HEAD = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "hd95_pooled": "HD95 pooled", "assd": "ASSD", "hausdorff": "Hausdorff",
         "surface_dice": "surface Dice", "volume_difference": "volume diff.", "specificity": "specificity",
         "precision": "precision", "recall": "recall"}


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _esc(value)


def _img(b64: str | None, alt: str) -> str:
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{b64}'>" if b64 else ""


def _quality(mean_dice: float) -> str:
    if mean_dice >= 0.9:
        return "<span class='badge good'>close agreement</span>"
    if mean_dice >= 0.7:
        return "<span class='badge fair'>moderate agreement</span>"
    return "<span class='badge poor'>poor agreement</span>"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _cases_of(rows: Sequence[dict[str, Any]], label: str, kind: str) -> list[str]:
    return [str(r["case"]) for r in rows if str(r["label"]) == label and r.get("empty") == kind]


def _short_list(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def verdict(rows: Sequence[dict[str, Any]], summary: dict[str, Any], unit_volume: str) -> str:
    """The plain-words verdict block: one bullet per label."""
    items = []
    lesions = summary.get("lesions") or {}
    for label, stats in summary.get("labels", {}).items():
        d = stats.get("dice")
        if not d:
            continue
        sel = [r for r in rows if str(r["label"]) == label and isinstance(r.get("dice"), (int, float))]
        worst = min(sel, key=lambda r: float(r["dice"])) if sel else None
        text = f"<b>{_esc(label)}</b> {_quality(d['mean'])}: mean Dice <b>{d['mean']:.2f}</b> (n={d['n']}"
        if d["n"] > 1:
            text += f"; median {d['median']:.2f}"
            if worst is not None:
                text += f", lowest {float(worst['dice']):.2f} in {_esc(worst['case'])}"
        text += ")."
        h = stats.get("hd95")
        if h:
            text += f" Boundary error HD95: median {h['median']:.1f} mm."
        missed = _cases_of(rows, label, "prediction")
        alarms = _cases_of(rows, label, "truth")
        if missed:
            text += (f" <b>{_plural(len(missed), 'case')} with no prediction where the reference has the structure</b> "
                     f"({_esc(_short_list(missed))}).")
        if alarms:
            text += f" {_plural(len(alarms), 'case')} where it was predicted but the reference has none ({_esc(_short_list(alarms))})."
        if not missed and not alarms:
            text += " No case where it was missed entirely or falsely reported."
        les = lesions.get(label)
        if les:
            sens = "–" if les["sensitivity"] is None else f"{les['sensitivity']:.2f}"
            f1 = "–" if les["f1"] is None else f"{les['f1']:.2f}"
            text += (f" Lesions: {les['tp']} of {les['n_truth']} found (sensitivity {sens}), "
                     f"{_plural(les['fp'], 'false positive')} ({les['fp_per_case']:.1f} per case), lesion F1 {f1}.")
        items.append(f"<li>{text}</li>")
    if not items:
        return "<div class=verdict><b>Nothing was evaluated.</b></div>"
    return f"<div class=verdict><b>In short</b><ul>{''.join(items)}</ul></div>"


def _attention(summary: dict[str, Any]) -> str:
    missing = summary.get("missing_predictions") or []
    unmatched = summary.get("unmatched_predictions") or []
    man = summary.get("manifest") or {}
    empty_cases = [e for e in summary.get("empty_cases", []) if e["empty"] != "both"]
    both = [e for e in summary.get("empty_cases", []) if e["empty"] == "both"]
    items = []
    if missing:
        items.append(f"No prediction file for {len(missing)} case(s), scored as empty predictions: {_esc(', '.join(missing))}")
    if unmatched:
        items.append(f"{len(unmatched)} prediction(s) without a reference, not scored: {_esc(', '.join(unmatched))}")
    what = {"truth": "reference is empty, prediction is not", "prediction": "prediction is empty, reference is not"}
    items += [f"{_esc(e['case'])} / {_esc(e['label'])}: {what[e['empty']]}" for e in empty_cases]
    if both:
        items.append("absent in both (scored as perfect): " + _esc(", ".join(f"{e['case']} / {e['label']}" for e in both)))
    if man.get("not_evaluated"):
        items.append(f"in the manifest but not evaluated: {_esc(', '.join(man['not_evaluated']))}")
    if man.get("not_in_manifest"):
        items.append(f"evaluated but not in the manifest (grouped as “(not in manifest)”): {_esc(', '.join(man['not_in_manifest']))}")
    if not items:
        return ""
    return "<div class=note><b>Attention.</b><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>"


#: Columns of the HTML summary table; IoU, HD95 pooled, Hausdorff, specificity and volumes are in the CSV/JSON and case table.
_SUMMARY_SHOWN = ("dice", "precision", "recall", "hd95", "assd", "surface_dice", "volume_difference")


def _summary_table(summary: dict[str, Any]) -> str:
    metrics = [m for m in SUMMARY_METRICS if m in _SUMMARY_SHOWN]
    head = "".join(f"<th>{_HEAD.get(m, m)}{' (' + _UNITS[m] + ')' if m in _UNITS else ''}</th>" for m in metrics)
    body = []
    for label, per_metric in summary.get("labels", {}).items():
        n = max((s["n"] for s in per_metric.values()), default=0)
        cells = []
        for m in metrics:
            s = per_metric.get(m)
            if s is None:
                cells.append("<td>–</td>")
                continue
            digits = 0 if m == "volume_difference" else 1 if m in _UNITS else 3
            sd = "" if s["std"] is None else f" ± {s['std']:,.{digits}f}"
            median = "" if s["n"] < 2 else f"<br><small class=muted>median {s['median']:,.{digits}f}</small>"
            cells.append(f"<td>{s['mean']:,.{digits}f}{sd}{median}</td>")
        e = summary.get("empty_counts", {}).get(label, {})
        empty = f"{e.get('prediction', 0)} / {e.get('truth', 0)} / {e.get('both', 0)}"
        body.append(f"<tr><td class=t><b>{_esc(label)}</b></td><td>{n}</td>{''.join(cells)}<td>{empty}</td></tr>")
    return (f"<table class=sum><tr><th class=t>label</th><th>n</th>{head}<th>empty<br><small>miss / false alarm / both</small></th></tr>"
            f"{''.join(body)}</table><p class=muted>mean ± sample standard deviation (median below); volumes in mm³ (mm² for 2D images). IoU, HD95 pooled, Hausdorff and specificity are in metrics.csv / metrics.json.</p>")


def _lesion_section(summary: dict[str, Any], settings: dict[str, Any], froc_b64: str | None) -> str:
    lesions = summary.get("lesions")
    if lesions is None:
        return ""
    crit = settings.get("match", "iou")
    thr = settings.get("match_threshold", 0.5)
    rule = "IoU" if crit == "iou" else "fraction of the true lesion covered"
    parts = [f"<h2>Lesions</h2><p>Matching: {rule} &gt; {_fmt(thr, 2)}, one-to-one. Counts pooled over all cases.</p>"]
    head = ["label", "cases", "true lesions", "predicted", "found", "missed", "false positives", "FP per case",
            "sensitivity", "precision", "F1", "mean PQ"]
    body = []
    for label, s in lesions.items():
        cells = [s["n_cases"], s["n_truth"], s["n_pred"], s["tp"], s["fn"], s["fp"], _fmt(s["fp_per_case"], 2),
                 _fmt(s["sensitivity"]), _fmt(s["precision"]), _fmt(s["f1"]), _fmt(s["mean_pq"])]
        body.append(f"<tr><td class=t><b>{_esc(label)}</b></td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("<table><tr>" + "".join(f"<th{' class=t' if h == 'label' else ''}>{h}</th>" for h in head) + "</tr>" + "".join(body) + "</table>")
    froc = summary.get("froc") or {}
    if froc.get("skipped"):
        parts.append(f"<p class=muted>{_esc(froc['skipped'])}.</p>")
    elif froc.get("curves"):
        rates = froc.get("fp_rates", [])
        rows = []
        for label, c in froc["curves"].items():
            at = c.get("sensitivity_at") or {}
            rows.append(f"<tr><td class=t>{_esc(label)}</td><td>{_fmt(c.get('score'))}</td>"
                        + "".join(f"<td>{_fmt(at.get(r))}</td>" for r in rates) + "</tr>")
        parts.append("<h3>FROC</h3><div class=plots>" + _img(froc_b64, "FROC curve") + "</div>")
        parts.append("<table><tr><th class=t>label</th><th>FROC score</th>" + "".join(f"<th>sens. @ {r:g} FP</th>" for r in rates)
                     + "</tr>" + "".join(rows) + "</table>")
    return "".join(parts)


def _manifest_section(summary: dict[str, Any], plots: dict[str, str | None]) -> str:
    man = summary.get("manifest")
    if not man:
        return ""
    parts = [f"<h2>Breakdown by manifest</h2><p class=muted>{_esc(man.get('path', ''))}</p>"]
    for column, groups in man.get("groups", {}).items():
        labels = list(dict.fromkeys(lab for g in groups.values() for lab in g["labels"]))
        head = "<tr><th class=t rowspan=2>" + _esc(column) + "</th><th rowspan=2>cases</th>" + "".join(
            f"<th colspan=2>{_esc(lab)}</th>" for lab in labels) + "</tr><tr>" + "<th>Dice mean (median)</th><th>HD95 mm mean (median)</th>" * len(labels) + "</tr>"
        body = []
        for value, g in groups.items():
            cells = []
            for lab in labels:
                s = g["labels"].get(lab) or {}
                for metric, digits in (("dice", 3), ("hd95", 1)):
                    m = s.get(metric)
                    cells.append("<td>–</td>" if not m else f"<td>{_fmt(m['mean'], digits)} ({_fmt(m['median'], digits)})<br><small class=muted>n={s['n']}</small></td>")
            body.append(f"<tr><td class=t>{_esc(value or '(blank)')}</td><td>{g['n_cases']}</td>{''.join(cells)}</tr>")
        parts.append(f"<h3>by {_esc(column)}</h3><table>{head}{''.join(body)}</table>")
        parts.append("<div class=plots>" + _img(plots.get(column), f"Dice by {column}") + "</div>")
    for key, text in (("not_evaluated", "In the manifest, not evaluated"), ("not_in_manifest", "Evaluated, not in the manifest")):
        if man.get(key):
            parts.append(f"<p><b>{text}:</b> {_esc(', '.join(man[key]))}</p>")
    return "".join(parts)


def _legend() -> str:
    from medannot.evaluation.thumbnails import COLORS

    names = {"agree": "both agree", "false_positive": "false positive (predicted only)", "false_negative": "false negative (reference only, missed)"}
    return "<p>" + "".join(f"<span class=sw style='background:rgb{COLORS[k]}'></span>{v}" for k, v in names.items()) + "</p>"


def _thumbnail_section(rows: Sequence[dict[str, Any]], thumbnails: dict[tuple[str, str], dict[str, Any]]) -> str:
    if not thumbnails:
        return ""
    by_key = {(str(r["case"]), str(r["label"])): r for r in rows}
    cards = []
    for key, t in thumbnails.items():
        r = by_key.get(key, {})
        empty = {"prediction": " · <b>missed entirely</b>", "truth": " · <b>false alarm</b>"}.get(str(r.get("empty") or ""), "")
        les = f" · lesion F1 {_fmt(r.get('lesion_f1'), 2)}" if "lesion_f1" in r else ""
        bg = "" if t.get("image") else " (no image found: grey background)"
        cards.append(
            f"<div class=card><b>{_esc(key[0])}</b> — {_esc(key[1])}<br>Dice {_fmt(r.get('dice'))} · HD95 {_fmt(r.get('hd95'), 1)} mm{les}{empty}"
            f"{_img(t.get('png'), f'{key[0]} {key[1]} overlay')}<span class=where>{_esc(t.get('where', ''))}{bg}</span></div>"
        )
    return (f"<h2>Worst cases</h2><p>The {len(cards)} case/structure pair(s) with the lowest Dice, worst first.</p>"
            + _legend() + f"<div class=grid>{''.join(cards)}</div>")


def _cell(value: Any, column: str) -> str:
    if column.endswith("volume") and isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:,.0f}"
    return _fmt(value, 1 if column in _UNITS else 3)


def _case_table(rows: Sequence[dict[str, Any]], extra: Sequence[str]) -> str:
    cols = ["case", "label", "dice", "iou", "precision", "recall", "hd95", "hd95_pooled", "assd", "surface_dice", "truth_volume", "pred_volume"]
    if any("lesion_f1" in r for r in rows):
        cols += ["n_truth_lesions", "lesion_tp", "false_positives", "lesion_f1", "pq"]
    cols += ["empty", *extra]
    text_cols = {"case", "label", "empty", *extra}
    ordered = sorted(rows, key=lambda r: (float(r.get("dice", 0.0)), -float(r.get("hd95", 0.0)), str(r["case"]), str(r["label"])))
    names = {"n_truth_lesions": "true lesions", "lesion_tp": "found", "false_positives": "FP", "lesion_f1": "lesion F1", "pq": "PQ",
             "truth_volume": "ref. volume", "pred_volume": "pred. volume"}
    head = "".join(f"<th class={'t' if c in text_cols else 'n'}>{_esc(names.get(c, _HEAD.get(c, c)))}</th>" for c in cols)
    body = []
    for r in ordered:
        cls = " class=empty" if r.get("empty") else ""
        cells = "".join(f"<td class={'t' if c in text_cols else 'n'}>{_cell(r.get(c), c)}</td>" for c in cols)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<div class=wide><table><tr>{head}</tr>{''.join(body)}</table></div>"


def render_html(
    rows: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    settings: dict[str, Any],
    plots: dict[str, Any],
    thumbnails: dict[tuple[str, str], dict[str, Any]],
    versions: dict[str, str],
    created: str,
    explanations: str = "",
) -> str:
    """The whole page as text.

    Args:
        rows: Metric rows.
        summary: Summary (labels, empty cases, optional ``lesions``, ``froc``, ``manifest``).
        settings: Run settings (``tolerance_mm``, ``match``...).
        plots: ``{"dice": b64, "hd95": b64, "froc": b64, "manifest": {column: b64}}`` (any may be missing).
        thumbnails: ``{(case, label): {"png", "where", "image"}}``.
        versions: Library versions.
        created: Creation time text.
        explanations: HTML of the "where to look first" section (:mod:`medannot.evaluation.report_explanations`), or "".
    """
    from medannot.evaluation.record import json_safe

    extra = (summary.get("manifest") or {}).get("columns", [])
    n_cases, n_rows = summary.get("n_cases", 0), summary.get("n_rows", 0)
    where = ""
    if settings.get("prediction"):
        where = f"<br>prediction: <code>{_esc(settings['prediction'])}</code> · reference: <code>{_esc(settings.get('truth', ''))}</code>"
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        "<title>medannot evaluation report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Segmentation evaluation</h1>",
        f"<p class=sub>{n_cases} case(s), {n_rows} case/structure rows · surface Dice tolerance "
        f"{_fmt(settings.get('tolerance_mm'), 2)} mm · {_esc(created)}{where}</p>",
        verdict(rows, summary, "mm³"),
        _attention(summary),
        explanations,
        "<h2>Summary per label</h2>",
        _summary_table(summary),
    ]
    box = [plots.get("dice"), plots.get("hd95")]
    if any(box):
        parts.append("<h2>Distributions</h2><p class=muted>Each dot is one case; red crosses are cases where one side is empty. "
                     "Box = middle half of the cases, line = median, triangle = mean.</p><div class=plots>")
        parts += [_img(b, f"{m} box plot") for m, b in zip(("Dice", "HD95"), box) if b]
        parts.append("</div>")
    parts.append(_lesion_section(summary, settings, plots.get("froc")))
    parts.append(_manifest_section(summary, plots.get("manifest") or {}))
    parts.append(_thumbnail_section(rows, thumbnails))
    parts += ["<h2>Cases, worst first</h2>", _case_table(rows, extra)]
    parts.append("<h2>How to read this</h2><dl>")
    parts += [f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in HOW_TO_READ.items()]
    parts.append("</dl>")
    parts.append(f"<h2>Settings and versions</h2><pre>{_esc(json.dumps(json_safe(settings), indent=2))}</pre>")
    parts.append("<table>" + "".join(f"<tr><td class=t>{_esc(k)}</td><td class=t>{_esc(v)}</td></tr>" for k, v in versions.items()) + "</table>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
