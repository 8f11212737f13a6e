"""Validation during training: segment held-out cases through the real inference path and score them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medannot.training.sources import ValidationCase

__all__ = ["dice_score", "instance_f1", "validate"]


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks; both empty -> 1.0, one empty -> 0.0 (medannot.evaluation's rule)."""
    try:
        from medannot.evaluation.metrics import dice
    except ImportError:  # pragma: no cover - evaluation is part of medannot
        p, t = np.asarray(pred, bool), np.asarray(truth, bool)
        s = int(p.sum()) + int(t.sum())
        return 1.0 if s == 0 else 2.0 * int((p & t).sum()) / s
    return float(dice(np.asarray(pred, bool), np.asarray(truth, bool)))


def _consecutive(labels: np.ndarray) -> np.ndarray:
    a = np.asarray(labels).ravel()
    out = np.zeros(a.shape, dtype=np.int64)
    fg = a != 0
    vals = np.unique(a[fg])
    out[fg] = np.searchsorted(vals, a[fg]) + 1
    return out


def instance_f1(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Instance detection F1: a predicted and a true instance match when their IoU > ``iou_threshold``.

    With a threshold >= 0.5 every match is one-to-one. Both empty -> f1 1.0.

    Returns:
        ``{"f1", "precision", "recall", "tp", "n_pred", "n_true"}``.
    """
    p = _consecutive(pred)
    t = _consecutive(truth)
    n_p, n_t = int(p.max()), int(t.max())
    if n_p == 0 and n_t == 0:
        return {"f1": 1.0, "precision": 1.0, "recall": 1.0, "tp": 0, "n_pred": 0, "n_true": 0}
    inter = np.bincount(p * (n_t + 1) + t, minlength=(n_p + 1) * (n_t + 1)).reshape(n_p + 1, n_t + 1)
    size_p = inter.sum(axis=1)
    size_t = inter.sum(axis=0)
    inter = inter[1:, 1:].astype(np.float64)
    union = size_p[1:, None] + size_t[None, 1:] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    tp = int((iou > iou_threshold).sum())
    precision = tp / n_p if n_p else 0.0
    recall = tp / n_t if n_t else 0.0
    f1 = 2 * tp / (n_p + n_t)
    return {"f1": f1, "precision": precision, "recall": recall, "tp": tp, "n_pred": n_p, "n_true": n_t}


def validate(predictor: Any, cases: Sequence[ValidationCase], labels: dict[int, str]) -> dict[str, Any]:
    """Segment each case with ``predictor`` and compute Dice per label (and instance F1 where available).

    Returns:
        ``{"mean_dice", "dice": {label_name: mean over cases}, "cases": {name: {...}}, "instance_f1": {...}}``;
        ``mean_dice`` averages the foreground labels (the early-stopping score).
    """
    per_case: dict[str, dict[str, Any]] = {}
    sums: dict[str, list[float]] = {labels[k]: [] for k in labels if k != 0}
    inst: dict[str, list[dict[str, float]]] = {}
    for case in cases:
        name, truth = case.name, case.truth
        pred = predictor.predict(case.image)
        lab = pred.labels.array[0]
        tru = truth.array[0]
        row: dict[str, Any] = {}
        for k, lname in labels.items():
            if k == 0:
                continue
            d = dice_score(lab == k, tru == k)
            row[f"dice_{lname}"] = d
            sums[lname].append(d)
        if case.instances is not None:
            for k, arr in pred.instances.items():
                f = instance_f1(arr, case.instances)
                row[f"instance_f1_{labels.get(k, k)}"] = f["f1"]
                inst.setdefault(labels.get(k, str(k)), []).append(f)
        per_case[name] = row
    dice_means = {n: float(np.mean(v)) for n, v in sums.items() if v}
    out: dict[str, Any] = {
        "mean_dice": float(np.mean(list(dice_means.values()))) if dice_means else 0.0,
        "dice": dice_means,
        "cases": per_case,
    }
    if inst:
        out["instance_f1"] = {n: float(np.mean([f["f1"] for f in fs])) for n, fs in inst.items()}
        out["instance_counts"] = {n: {"tp": sum(f["tp"] for f in fs), "n_pred": sum(f["n_pred"] for f in fs), "n_true": sum(f["n_true"] for f in fs)} for n, fs in inst.items()}
    return out
