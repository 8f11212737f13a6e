"""Classification metrics: accuracy, per-class precision/recall/F1, confusion matrix, ROC AUC, calibration.

Inputs
    ``y_true``: (N,) class labels (integers or strings). ``y_pred``: (N,) predicted labels.
    ``y_prob``: either (N,) probabilities of the *positive* class ``labels[1]`` (binary only) or
    (N, K) per-class probabilities whose columns follow ``labels`` (rows sum to 1). When only
    ``y_prob`` is given, the prediction is its arg-max (ties go to the first label, so p = 0.5
    predicts ``labels[0]``).

Labels
    Default: the sorted union of the values in ``y_true`` and ``y_pred`` (scikit-learn's rule);
    with (N, K) probabilities and no labels, ``0 .. K-1``; with (N,) probabilities, ``[0, 1]``.
    A value outside ``labels`` is an error.

Undefined values are None, never a silent 0 (they are listed in ``flags``)
    - precision of a class never predicted (TP + FP = 0), recall of a class with no support;
      F1 = 2 TP / (2 TP + FP + FN) is undefined only when the class is in neither.
      Macro averages are over the classes where the value is defined; the weighted F1 weights
      by support. Balanced accuracy is the macro recall (classes with support only).
    - ROC AUC of a class without positives or without negatives (only one class present).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict, cast

import numpy as np
from scipy.stats import rankdata

from medannot.errors import ConfigError, InputError

__all__ = [
    "ClassMetrics",
    "ClassificationAccumulator",
    "ClassificationMetrics",
    "Reliability",
    "RocAuc",
    "RocCurve",
    "classification_metrics",
    "reliability_diagram",
    "roc_auc",
    "roc_curve_points",
]

CONFUSION_AXES = "rows = truth, columns = prediction (in the order of labels)"

# The results are plain dicts typed as TypedDicts: training stores them as is in a bundle's metrics.


class ClassMetrics(TypedDict):
    """Per-class entry of :func:`classification_metrics` (None where undefined, see the module docstring)."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int
    predicted: int


class ClassificationMetrics(TypedDict):
    """Result of :func:`classification_metrics`."""

    n: int
    labels: list[Any]
    accuracy: float
    balanced_accuracy: float | None
    per_class: dict[Any, ClassMetrics]
    macro_precision: float | None
    macro_recall: float | None
    macro_f1: float | None
    weighted_f1: float
    confusion_matrix: list[list[int]]
    confusion_axes: str
    roc_auc: float | None
    roc_auc_per_class: dict[Any, float | None] | None
    ece: float | None
    brier: float | None
    flags: list[str]


class RocAuc(TypedDict):
    """Result of :func:`roc_auc`."""

    roc_auc: float | None
    per_class: dict[Any, float | None]
    undefined: str | None


class RocCurve(TypedDict):
    """Result of :func:`roc_curve_points`."""

    thresholds: list[float]
    tpr: list[float] | None
    fpr: list[float] | None
    auc: float | None
    undefined: str | None


class Reliability(TypedDict):
    """Result of :func:`reliability_diagram`."""

    bin_edges: list[float]
    bin_confidence: list[float | None]
    bin_accuracy: list[float | None]
    bin_count: list[int]
    ece: float
    mce: float


def _labels(y_true: np.ndarray, y_pred: np.ndarray | None, prob: np.ndarray | None, labels: Sequence[Any] | None) -> np.ndarray:
    if labels is not None:
        lab = np.asarray(list(labels))
        if lab.size != np.unique(lab).size:
            raise ConfigError(f"labels must be distinct, got {lab.tolist()}")
        return lab
    if prob is not None and prob.ndim == 2:
        return np.arange(prob.shape[1])
    if prob is not None:
        return np.array([0, 1])
    return np.unique(np.concatenate([y_true, y_pred]) if y_pred is not None else y_true)


def _index(values: np.ndarray, labels: np.ndarray, name: str) -> np.ndarray:
    order = np.argsort(labels, kind="stable")
    pos = np.searchsorted(labels[order], values)
    pos = np.clip(pos, 0, labels.size - 1)
    bad = labels[order][pos] != values
    if np.any(bad):
        raise InputError(f"{name} holds values not in labels {labels.tolist()}: {np.unique(values[bad])[:10].tolist()}; pass labels= with every class")
    return order[pos]


def _probabilities(y_prob: Any, n: int, n_labels: int) -> np.ndarray:
    """(N, K) probability matrix from (N,) positive-class or (N, K) probabilities."""
    p = np.asarray(y_prob, dtype=np.float64)
    if p.ndim == 1:
        if n_labels != 2:
            raise InputError(f"y_prob of shape (N,) is the positive-class probability of a binary problem, but there are {n_labels} labels; pass (N, K) probabilities")
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape != (n, n_labels):
        raise InputError(f"y_prob must have shape ({n},) or ({n}, {n_labels}) (columns in the order of labels), got {p.shape}")
    if not np.all(np.isfinite(p)) or p.min(initial=0) < 0 or p.max(initial=0) > 1:
        raise InputError("y_prob must hold probabilities in [0, 1]; apply a sigmoid or softmax first")
    if n and not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise InputError("y_prob rows must sum to 1 (one probability per class); apply a softmax first")
    return p


def _prepare(y_true: Any, y_pred: Any, y_prob: Any, labels: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    yt = np.asarray(y_true).reshape(-1)
    if yt.size == 0:
        raise InputError("y_true is empty: nothing to evaluate; pass at least one sample")
    yp = None if y_pred is None else np.asarray(y_pred).reshape(-1)
    raw_prob = None if y_prob is None else np.asarray(y_prob)
    if yp is None and raw_prob is None:
        raise InputError("give y_pred (predicted labels) or y_prob (probabilities), got neither")
    if yp is not None and yp.size != yt.size:
        raise InputError(f"y_true and y_pred must have the same length, got {yt.size} and {yp.size}")
    lab = _labels(yt, yp, raw_prob, labels)
    t = _index(yt, lab, "y_true")
    prob = None if raw_prob is None else _probabilities(raw_prob, yt.size, lab.size)
    p = _index(yp, lab, "y_pred") if yp is not None else np.argmax(cast(np.ndarray, prob), axis=1)
    return lab, t, p, prob


def _auc(pos: np.ndarray, score: np.ndarray) -> float | None:
    """Mann-Whitney AUC with tied scores counted 1/2 (= area under the ROC polyline)."""
    n_pos = int(np.count_nonzero(pos))
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(y_true: Any, y_prob: Any, labels: Sequence[Any] | None = None) -> RocAuc:
    """ROC AUC: binary, or one-vs-rest per class with the macro mean for more classes.

    The AUC of class k is the probability that a random sample of class k gets a higher
    ``P(k)`` than a random sample of another class (ties count 1/2), i.e. the area under the
    ROC curve. Binary problems report the AUC of ``labels[1]``.

    Returns:
        ``roc_auc`` (binary AUC or OvR macro over classes where it is defined), ``per_class``
        ({label: AUC or None}) and ``undefined`` (reason, or None). A class without positives or
        negatives has AUC None; if no class has a defined AUC, ``roc_auc`` is None.
    """
    if y_prob is None:
        raise InputError("roc_auc needs y_prob (probabilities), got None")
    lab, t, _, prob = _prepare(y_true, None, y_prob, labels)
    prob = cast(np.ndarray, prob)
    per = {lab[k].item(): _auc(t == k, prob[:, k]) for k in range(lab.size)}
    bad = [k for k, v in per.items() if v is None]
    reason = f"AUC undefined for {bad}: needs samples of the class and of the rest (only one class present)" if bad else None
    if lab.size == 2:
        value = per[lab[1].item()]
    else:
        ok = [v for v in per.values() if v is not None]
        value = float(np.mean(ok)) if ok else None
    return {"roc_auc": value, "per_class": per, "undefined": reason}


def roc_curve_points(y_true: Any, y_score: Any, pos_label: Any = None) -> RocCurve:
    """ROC curve points, one per distinct score (no points dropped).

    ``tpr(s) = #{positives with score >= s} / #positives``, ``fpr(s)`` likewise for negatives.
    The first point is (0, 0) at threshold +inf; thresholds then descend over the distinct
    scores (as ``sklearn.metrics.roc_curve(drop_intermediate=False)``).

    Args:
        y_true: (N,) binary labels.
        y_score: (N,) scores, higher = more likely positive.
        pos_label: The positive label; default: the larger of the two values.

    Returns:
        ``fpr``, ``tpr``, ``thresholds`` (lists), ``auc``; with only one class present the
        undefined rate list and ``auc`` are None and ``undefined`` gives the reason.
    """
    yt = np.asarray(y_true).reshape(-1)
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if yt.size == 0 or yt.size != s.size:
        raise InputError(f"y_true and y_score must be non-empty and of the same length, got {yt.size} and {s.size}")
    values = np.unique(yt)
    if values.size > 2:
        raise InputError(f"roc_curve_points needs binary labels, got {values.size} classes; use one-vs-rest")
    pos = yt == (values.max() if pos_label is None else pos_label)
    thr = np.unique(s)[::-1]
    neg_s, pos_s = np.sort(-s[~pos]), np.sort(-s[pos])
    tp = np.concatenate([[0], np.searchsorted(pos_s, -thr, side="right")]).astype(np.float64)
    fp = np.concatenate([[0], np.searchsorted(neg_s, -thr, side="right")]).astype(np.float64)
    n_pos, n_neg = pos_s.size, neg_s.size
    out: RocCurve = {
        "thresholds": [float("inf")] + thr.tolist(),
        "tpr": (tp / n_pos).tolist() if n_pos else None,
        "fpr": (fp / n_neg).tolist() if n_neg else None,
        "auc": _auc(pos, s),
        "undefined": None if n_pos and n_neg else "only one class present: the ROC curve and AUC are undefined",
    }
    return out


def reliability_diagram(y_true: Any, y_prob: Any, n_bins: int = 15, labels: Sequence[Any] | None = None) -> Reliability:
    """Top-label reliability diagram data and calibration errors.

    Each sample's confidence is its largest class probability and it is *correct* when that
    arg-max class is the truth. Confidences fall into ``n_bins`` equal-width bins
    ``(i/n, (i+1)/n]`` (0 goes to the first bin). Per bin: mean confidence, accuracy, count.
    ``ece = sum_b (n_b / N) * |accuracy_b - confidence_b|`` (Guo et al. 2017, top-label);
    ``mce = max_b |accuracy_b - confidence_b|`` over non-empty bins. Empty bins have None.

    Args:
        y_true: (N,) labels.
        y_prob: (N,) positive-class probabilities (binary) or (N, K) probabilities.
        n_bins: Number of equal-width confidence bins (>= 1).
        labels: Class labels in the order of the probability columns.

    Returns:
        ``bin_edges`` (n_bins + 1), ``bin_confidence``, ``bin_accuracy``, ``bin_count``, ``ece``, ``mce``.
    """
    if int(n_bins) < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    if y_prob is None:
        raise InputError("reliability_diagram needs y_prob (probabilities), got None")
    _, t, _, prob = _prepare(y_true, None, y_prob, labels)
    prob = cast(np.ndarray, prob)
    return _reliability(t, prob, int(n_bins))


def _reliability(t: np.ndarray, prob: np.ndarray, n_bins: int) -> Reliability:
    conf = prob.max(axis=1)
    correct = (np.argmax(prob, axis=1) == t).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b, weights=correct, minlength=n_bins)
    ok = count > 0
    mean_conf = np.divide(sum_conf, count, out=np.zeros(n_bins), where=ok)
    mean_acc = np.divide(sum_acc, count, out=np.zeros(n_bins), where=ok)
    gap = np.abs(mean_acc - mean_conf)
    return {
        "bin_edges": edges.tolist(),
        "bin_confidence": [float(v) if o else None for v, o in zip(mean_conf, ok, strict=True)],
        "bin_accuracy": [float(v) if o else None for v, o in zip(mean_acc, ok, strict=True)],
        "bin_count": count.tolist(),
        "ece": float(np.sum(count * gap) / t.size),
        "mce": float(gap[ok].max()),
    }


def classification_metrics(
    y_true: Any, y_pred: Any = None, *, y_prob: Any = None, labels: Sequence[Any] | None = None, n_bins: int = 15
) -> ClassificationMetrics:
    """Classification metrics of one set of predictions (see the module docstring for inputs).

    Definitions: ``accuracy = correct / N``; per class ``precision = TP / (TP + FP)``,
    ``recall = TP / (TP + FN)``, ``f1 = 2 TP / (2 TP + FP + FN)``, ``support`` = true count;
    ``balanced_accuracy`` = mean recall over classes with support; ``macro_*`` = unweighted
    mean over classes where defined; ``weighted_f1`` = support-weighted mean F1. From
    probabilities: ``roc_auc`` (binary, or one-vs-rest macro), ``ece`` (top-label, ``n_bins``
    equal-width bins, see :func:`reliability_diagram`) and ``brier``: binary (N,) input:
    ``mean((p - y)^2)`` in [0, 1]; (N, K) input: ``mean(sum_k (p_k - y_k)^2)`` in [0, 2]
    (Brier 1950). Without probabilities these are None.

    Args:
        y_true: (N,) true labels.
        y_pred: (N,) predicted labels; None = arg-max of ``y_prob``.
        y_prob: (N,) or (N, K) probabilities (keyword only).
        labels: Class labels (order of the confusion matrix and of probability columns).
        n_bins: Bins of the calibration error.

    Returns:
        ``n``, ``labels``, ``accuracy``, ``balanced_accuracy``, ``per_class`` ({label: precision,
        recall, f1, support, predicted}), ``macro_precision``, ``macro_recall``, ``macro_f1``,
        ``weighted_f1``, ``confusion_matrix`` (list of rows; rows = truth, columns = prediction),
        ``confusion_axes``, ``roc_auc``, ``roc_auc_per_class``, ``ece``, ``brier``, ``flags``
        (why a value is None).
    """
    if int(n_bins) < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    lab, t, p, prob = _prepare(y_true, y_pred, y_prob, labels)
    k, n = lab.size, t.size
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    f1_den = support + predicted
    prec = [float(a / b) if b else None for a, b in zip(tp, predicted, strict=True)]
    rec = [float(a / b) if b else None for a, b in zip(tp, support, strict=True)]
    f1 = [float(2 * a / b) if b else None for a, b in zip(tp, f1_den, strict=True)]
    flags: list[str] = []
    names = [x.item() for x in lab]
    for name, pr, rc in zip(names, prec, rec, strict=True):
        if rc is None:
            flags.append(f"class {name!r}: no support, recall undefined")
        if pr is None:
            flags.append(f"class {name!r}: never predicted, precision undefined")

    def mean(values: list[float | None]) -> float | None:
        ok = [v for v in values if v is not None]
        return float(np.mean(ok)) if ok else None

    out: ClassificationMetrics = {
        "n": int(n),
        "labels": names,
        "accuracy": float(tp.sum() / n),
        "balanced_accuracy": mean(rec),
        "per_class": {
            name: {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": int(support[i]), "predicted": int(predicted[i])}
            for i, name in enumerate(names)
        },
        "macro_precision": mean(prec),
        "macro_recall": mean(rec),
        "macro_f1": mean(f1),
        "weighted_f1": float(sum(s * (v or 0.0) for s, v in zip(support, f1, strict=True)) / n),
        "confusion_matrix": cm.tolist(),
        "confusion_axes": CONFUSION_AXES,
        "roc_auc": None,
        "roc_auc_per_class": None,
        "ece": None,
        "brier": None,
        "flags": flags,
    }
    if prob is None:
        flags.append("no probabilities: roc_auc, ece and brier need y_prob")
        return out
    per = {names[j]: _auc(t == j, prob[:, j]) for j in range(k)}
    bad = [name for name, v in per.items() if v is None]
    if bad:
        flags.append(f"ROC AUC undefined for {bad}: only one class present among their one-vs-rest labels")
    out["roc_auc"] = per[names[1]] if k == 2 else mean(list(per.values()))
    out["roc_auc_per_class"] = per
    onehot = np.zeros_like(prob)
    onehot[np.arange(n), t] = 1.0
    sq = np.sum((prob - onehot) ** 2, axis=1)
    binary_input = np.asarray(y_prob).ndim == 1
    out["brier"] = float(np.mean(sq) / (2.0 if binary_input else 1.0))
    out["ece"] = _reliability(t, prob, int(n_bins))["ece"]
    return out


class ClassificationAccumulator:
    """Collects true labels and class probabilities batch by batch (update / compute / reset, as MONAI's metrics).

    Args:
        labels: The classes, in the order of the probability columns.
        n_bins: Confidence bins of the calibration error.

    Example:
        >>> acc = ClassificationAccumulator(["normal", "tumour"])
        >>> acc.update(["normal", "tumour"], [[0.9, 0.1], [0.3, 0.7]])
        >>> acc.compute()["accuracy"]
        1.0
    """

    def __init__(self, labels: Sequence[Any], n_bins: int = 15) -> None:
        self.labels = list(labels)
        if len(self.labels) < 2:
            raise ConfigError(f"a classifier needs at least two classes, got {self.labels}")
        self.n_bins = int(n_bins)
        self.reset()

    def update(self, y_true: Any, y_prob: Any) -> None:
        """Add a batch: (B,) true labels and (B, K) probabilities (columns in the order of ``labels``).

        Raises:
            InputError: Probabilities whose shape does not match the batch and the classes.
        """
        yt = np.asarray(y_true).reshape(-1)
        p = np.asarray(y_prob, dtype=np.float64)
        if p.ndim != 2 or p.shape != (yt.size, len(self.labels)):
            raise InputError(f"y_prob must have shape ({yt.size}, {len(self.labels)}) (one column per class), got {p.shape}")
        self._true.append(yt)
        self._prob.append(p)

    def compute(self) -> ClassificationMetrics:
        """:func:`classification_metrics` of every sample so far.

        Raises:
            InputError: No sample was added (empty input has no accuracy).
        """
        if not self._true:
            raise InputError("classification accumulator: no sample added; call update() first")
        return classification_metrics(np.concatenate(self._true), y_prob=np.concatenate(self._prob), labels=self.labels, n_bins=self.n_bins)

    def reset(self) -> None:
        """Forget all samples."""
        self._true: list[np.ndarray] = []
        self._prob: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(a.size for a in self._true)
