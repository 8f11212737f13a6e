"""Plots of the evaluation reports, rendered with matplotlib's Agg backend into base64 PNG text.

No pyplot (no global state, no display needed). Every function returns None when
there is nothing to plot, so the report simply leaves the figure out.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["boxplot_png", "froc_png", "grouped_boxplot_png", "reliability_png", "roc_png"]

_POINT = "#333333"
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _encode(fig: Any) -> str:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def _jitter(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.12, 0.12, size=n)


def boxplot_png(rows: Sequence[Mapping[str, Any]], metric: str, title: str, unit: str = "") -> str | None:
    """Box plot of ``metric`` per label, every case drawn as a point (empty cases as red crosses).

    Args:
        rows: Metric rows (``label``, ``metric``, ``empty``).
        metric: Column to plot.
        title: Figure title.
        unit: Axis unit (``"mm"``), or ``""``.
    """
    labels = list(dict.fromkeys(str(r["label"]) for r in rows))
    data = [[r for r in rows if str(r["label"]) == lab and _finite([r.get(metric)])] for lab in labels]
    if not any(data):
        return None
    fig = _figure(max(3.6, 1.2 * len(labels) + 1.6), 3.3)
    ax = fig.add_subplot(1, 1, 1)
    values = [[float(r[metric]) for r in group] for group in data]
    ax.boxplot([v if v else [math.nan] for v in values], tick_labels=labels, showmeans=True, widths=0.5,
               flierprops={"marker": ""}, meanprops={"marker": "^", "markerfacecolor": "white", "markeredgecolor": "black"})
    for i, group in enumerate(data, start=1):
        x = i + _jitter(len(group), i)
        for xi, row in zip(x, group, strict=True):
            bad = str(row.get("empty") or "") in ("prediction", "truth")
            ax.plot(xi, float(row[metric]), "x" if bad else "o", color="#D55E00" if bad else _POINT,
                    alpha=0.9 if bad else 0.55, markersize=6 if bad else 3.5)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    if metric in ("dice", "iou", "surface_dice", "lesion_f1"):
        ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)
    return _encode(fig)


def grouped_boxplot_png(rows: Sequence[Mapping[str, Any]], column: str, metric: str = "dice", max_groups: int = 12) -> str | None:
    """Box plot of ``metric`` per value of manifest ``column`` (x axis), one box colour per label.

    Only the ``max_groups`` most frequent values are drawn.
    """
    labels = list(dict.fromkeys(str(r["label"]) for r in rows))
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.get(column, ""))] = counts.get(str(r.get(column, "")), 0) + 1
    groups = sorted(sorted(counts), key=lambda g: -counts[g])[:max_groups]
    groups.sort()
    if not groups or not labels:
        return None
    fig = _figure(max(4.0, 0.9 * len(groups) * max(1, len(labels)) * 0.6 + 2.0), 3.3)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(labels)
    plotted = False
    for j, lab in enumerate(labels):
        color = _PALETTE[j % len(_PALETTE)]
        for i, g in enumerate(groups):
            vals = _finite([r.get(metric) for r in rows if str(r["label"]) == lab and str(r.get(column, "")) == g])
            if not vals:
                continue
            pos = i + (j - (len(labels) - 1) / 2) * width
            bp = ax.boxplot([vals], positions=[pos], widths=width * 0.85, patch_artist=True, flierprops={"marker": ""})
            for box in bp["boxes"]:
                box.set_facecolor(color)
                box.set_alpha(0.45)
            ax.plot(pos + _jitter(len(vals), i * 31 + j) * width, vals, "o", color=_POINT, alpha=0.55, markersize=3)
            plotted = True
    if not plotted:
        return None
    ax.set_xticks(range(len(groups)), [g if g else "(blank)" for g in groups], rotation=20 if len(groups) > 4 else 0)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel(column)
    ax.set_ylabel(metric)
    if metric in ("dice", "iou", "surface_dice", "lesion_f1"):
        ax.set_ylim(-0.03, 1.03)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(facecolor=_PALETTE[j % len(_PALETTE)], alpha=0.45, label=lab) for j, lab in enumerate(labels)],
              fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"{metric} by {column}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _encode(fig)


def froc_png(curves: Mapping[str, Mapping[str, Any]]) -> str | None:
    """FROC curves (lesion sensitivity against false positives per case, log x axis), one per label.

    Args:
        curves: ``{label: {"fp_per_case": [...], "sensitivity": [...], "sensitivity_at": {rate: s}, "score": s}}``.
    """
    usable = {k: v for k, v in curves.items() if v.get("fp_per_case") and v.get("sensitivity")}
    if not usable:
        return None
    fig = _figure(5.2, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for j, (label, c) in enumerate(usable.items()):
        color = _PALETTE[j % len(_PALETTE)]
        fp = np.asarray(c["fp_per_case"], dtype=float)
        sens = np.asarray(c["sensitivity"], dtype=float)
        order = np.argsort(fp, kind="stable")
        score = c.get("score")
        name = f"{label} (FROC score {score:.3f})" if isinstance(score, (int, float)) else label
        ax.step(np.maximum(fp[order], 1e-3), sens[order], where="post", color=color, label=name)
        at = c.get("sensitivity_at") or {}
        pts = [(float(r), float(s)) for r, s in at.items() if s is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=color, markersize=4)
    ax.set_xscale("log")
    ax.set_xlabel("false positives per case")
    ax.set_ylabel("lesion sensitivity")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("FROC", fontsize=10)
    return _encode(fig)


def roc_png(curves: Mapping[str, Mapping[str, Any]]) -> str | None:
    """ROC curves, one per class: ``{name: {"fpr": [...], "tpr": [...], "auc": float | None}}``."""
    usable = {k: v for k, v in curves.items() if len(v.get("fpr") or ()) > 1}
    if not usable:
        return None
    fig = _figure(4.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], ":", color="#999999", label="chance")
    for j, (name, c) in enumerate(usable.items()):
        auc = c.get("auc")
        lab = f"{name} (AUC {auc:.3f})" if isinstance(auc, (int, float)) and math.isfinite(auc) else name
        ax.plot(c["fpr"], c["tpr"], color=_PALETTE[j % len(_PALETTE)], label=lab)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("ROC, one class against the rest", fontsize=10)
    return _encode(fig)


def reliability_png(bins_confidence: Sequence[float], bins_accuracy: Sequence[float], bins_count: Sequence[int], ece: float | None) -> str | None:
    """Reliability diagram: accuracy against mean confidence per bin, bar width = bin, with the diagonal.

    Args:
        bins_confidence: Mean predicted confidence per non-empty bin (0..1).
        bins_accuracy: Observed accuracy per bin (0..1).
        bins_count: Number of samples per bin.
        ece: Expected calibration error shown in the title (or None).
    """
    conf = np.asarray(bins_confidence, dtype=float)
    acc = np.asarray(bins_accuracy, dtype=float)
    cnt = np.asarray(bins_count, dtype=float)
    keep = np.isfinite(conf) & np.isfinite(acc) & (cnt > 0)
    if not keep.any():
        return None
    fig = _figure(4.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], ":", color="#999999", label="perfect calibration")
    sizes = 20 + 180 * cnt[keep] / cnt[keep].max()
    ax.scatter(conf[keep], acc[keep], s=sizes, color=_PALETTE[0], alpha=0.7, label="bins (size = samples)")
    ax.plot(conf[keep], acc[keep], color=_PALETTE[0], alpha=0.5)
    ax.set_xlabel("predicted confidence")
    ax.set_ylabel("observed accuracy")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Reliability" + (f" (ECE {ece:.3f})" if isinstance(ece, (int, float)) else ""), fontsize=10)
    return _encode(fig)
