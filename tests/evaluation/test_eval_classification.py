"""Classification metrics against scikit-learn (within 1e-12) and hand-computed degenerate cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from medannot.errors import InputError
from medannot.evaluation.classification import classification_metrics, reliability_diagram, roc_auc, roc_curve_points

TOL = 1e-12


def _multiclass(seed: int = 0, n: int = 400, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    logits = np.round(logits, 1)  # ties in scores
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, prob


def test_multiclass_equals_sklearn() -> None:
    y, prob = _multiclass()
    pred = prob.argmax(axis=1)
    out = classification_metrics(y, y_prob=prob)
    assert out["labels"] == [0, 1, 2, 3]
    assert abs(out["accuracy"] - skm.accuracy_score(y, pred)) < TOL
    assert abs(out["balanced_accuracy"] - skm.balanced_accuracy_score(y, pred)) < TOL
    p, r, f, s = skm.precision_recall_fscore_support(y, pred)
    for i in range(4):
        c = out["per_class"][i]
        assert abs(c["precision"] - p[i]) < TOL and abs(c["recall"] - r[i]) < TOL and abs(c["f1"] - f[i]) < TOL
        assert c["support"] == s[i]
    assert abs(out["macro_f1"] - skm.f1_score(y, pred, average="macro")) < TOL
    assert abs(out["weighted_f1"] - skm.f1_score(y, pred, average="weighted")) < TOL
    assert abs(out["macro_precision"] - skm.precision_score(y, pred, average="macro")) < TOL
    np.testing.assert_array_equal(out["confusion_matrix"], skm.confusion_matrix(y, pred))
    assert out["confusion_axes"].startswith("rows = truth")
    assert abs(out["roc_auc"] - skm.roc_auc_score(y, prob, multi_class="ovr", average="macro")) < TOL
    for i in range(4):
        assert abs(out["roc_auc_per_class"][i] - skm.roc_auc_score(y == i, prob[:, i])) < TOL
    assert abs(out["brier"] - skm.brier_score_loss(y, prob, labels=[0, 1, 2, 3], scale_by_half=False)) < TOL
    assert out["flags"] == []


def test_confusion_orientation_rows_truth() -> None:
    out = classification_metrics([0, 0, 0, 1], [1, 1, 0, 1])
    # two truth-0 samples predicted as 1 -> row 0, column 1
    assert out["confusion_matrix"] == [[1, 2], [0, 1]]


def test_binary_probabilities_equal_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, 300), 2), 0, 1)
    out = classification_metrics(y, y_prob=p)
    pred = (p > 0.5).astype(int)  # arg-max of [1-p, p]: p == 0.5 predicts class 0
    assert abs(out["accuracy"] - skm.accuracy_score(y, pred)) < TOL
    assert abs(out["roc_auc"] - skm.roc_auc_score(y, p)) < TOL
    assert abs(out["brier"] - skm.brier_score_loss(y, p)) < TOL
    r = roc_curve_points(y, p)
    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(r["fpr"], fpr, rtol=0, atol=TOL)
    np.testing.assert_allclose(r["tpr"], tpr, rtol=0, atol=TOL)
    np.testing.assert_array_equal(r["thresholds"], thr)
    assert abs(r["auc"] - skm.auc(fpr, tpr)) < TOL
    assert abs(roc_auc(y, p)["roc_auc"] - skm.roc_auc_score(y, p)) < TOL


def test_string_labels_and_explicit_order() -> None:
    y = np.array(["cat", "dog", "dog", "eel", "cat", "eel"])
    yp = np.array(["cat", "dog", "eel", "eel", "dog", "eel"])
    out = classification_metrics(y, yp, labels=["eel", "dog", "cat"])
    np.testing.assert_array_equal(out["confusion_matrix"], skm.confusion_matrix(y, yp, labels=["eel", "dog", "cat"]))
    assert out["labels"] == ["eel", "dog", "cat"]
    with pytest.raises(InputError, match="not in labels"):
        classification_metrics(y, yp, labels=["eel", "dog"])


def test_class_without_support_is_none_not_zero() -> None:
    y = [0, 0, 1, 1]
    yp = [0, 2, 1, 1]  # class 2 predicted but never true
    out = classification_metrics(y, yp)
    c2 = out["per_class"][2]
    assert c2["recall"] is None and c2["precision"] == 0.0 and c2["f1"] == 0.0 and c2["support"] == 0
    assert any("no support" in f for f in out["flags"])
    # balanced accuracy over classes with support, as scikit-learn (which warns about class 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(out["balanced_accuracy"] - skm.balanced_accuracy_score(y, yp)) < TOL
    # a class never predicted: precision undefined -> None (sklearn would silently give 0)
    out = classification_metrics([0, 1, 2], [0, 1, 1])
    assert out["per_class"][2]["precision"] is None and out["per_class"][2]["recall"] == 0.0
    assert out["macro_precision"] == pytest.approx((1.0 + 0.5) / 2)
    # a label in neither truth nor prediction: everything undefined
    out = classification_metrics([0, 1], [0, 1], labels=[0, 1, 2])
    assert out["per_class"][2] == {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
    assert out["macro_f1"] == 1.0


def test_auc_undefined_with_one_class() -> None:
    out = classification_metrics([1, 1, 1], y_prob=[0.2, 0.7, 0.9])
    assert out["roc_auc"] is None and any("ROC AUC undefined" in f for f in out["flags"])
    r = roc_curve_points([1, 1, 1], [0.2, 0.7, 0.9])
    assert r["auc"] is None and r["fpr"] is None and r["undefined"]
    # multi-class: the class without samples is left out of the macro mean, and named
    y, prob = _multiclass(k=3)
    keep = y != 2
    res = roc_auc(y[keep], prob[keep], labels=[0, 1, 2])
    assert res["per_class"][2] is None and "[2]" in res["undefined"]
    ref = np.mean([skm.roc_auc_score(y[keep] == i, prob[keep][:, i]) for i in (0, 1)])
    assert abs(res["roc_auc"] - ref) < TOL


def _ece_reference(y: np.ndarray, prob: np.ndarray, n_bins: int) -> float:
    conf = prob.max(axis=1)
    correct = prob.argmax(axis=1) == y
    total = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        sel = (conf > lo) & (conf <= hi) if i else (conf >= 0) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return total


def test_ece_and_reliability() -> None:
    y, prob = _multiclass(seed=3)
    out = classification_metrics(y, y_prob=prob, n_bins=10)
    assert abs(out["ece"] - _ece_reference(y, prob, 10)) < 1e-12
    rd = reliability_diagram(y, prob, n_bins=15)
    assert abs(rd["ece"] - _ece_reference(y, prob, 15)) < 1e-12
    assert sum(rd["bin_count"]) == len(y) and len(rd["bin_edges"]) == 16
    assert abs(classification_metrics(y, y_prob=prob)["ece"] - rd["ece"]) < 1e-15  # 15 bins by default
    # hand example: two samples at confidence 0.8, one right, one wrong -> |0.5 - 0.8| = 0.3
    rd = reliability_diagram([1, 0], [0.8, 0.8], n_bins=5)
    assert rd["ece"] == pytest.approx(0.3) and rd["bin_count"] == [0, 0, 0, 2, 0]
    assert rd["bin_accuracy"][0] is None
    # perfectly calibrated and confident: ECE 0
    assert reliability_diagram([0, 1, 1], [0.0, 1.0, 1.0])["ece"] == 0.0


def test_bad_input() -> None:
    with pytest.raises(InputError, match="empty"):
        classification_metrics([], [])
    with pytest.raises(InputError, match="same length"):
        classification_metrics([0, 1], [0])
    with pytest.raises(InputError, match="softmax"):
        classification_metrics([0, 1], y_prob=[[0.9, 0.9], [0.1, 0.2]])
    with pytest.raises(InputError, match="neither"):
        classification_metrics([0, 1])
