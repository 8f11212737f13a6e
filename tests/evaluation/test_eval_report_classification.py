"""write_classification_report on a small synthetic (made-up) three-class set."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from medannot.errors import InputError
from medannot.evaluation.report import write_classification_report


def _synthetic_set(n: int = 90, seed: int = 0):
    """Synthetic labels and probabilities: right most of the time, with some confusion."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    logits = rng.normal(0.0, 1.0, (y.size, 3))
    logits[np.arange(y.size), y] += 1.5
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, prob


def test_classification_report_writes_json_and_html(tmp_path):
    y, prob = _synthetic_set()
    names = ["normal", "benign", "malignant"]
    paths = write_classification_report(tmp_path / "cls", y, prob, names)
    doc = json.loads(paths["json"].read_text())
    assert doc["metrics"]["accuracy"] == pytest.approx(float(np.mean(prob.argmax(1) == y)))
    assert set(doc["roc"]) == set(names) and doc["roc"]["benign"]["fpr"][0] == 0.0
    assert np.sum(doc["metrics"]["confusion_matrix"]) == y.size
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2  # ROC curves and reliability diagram
    assert "malignant" in page and "Reliability" not in page.split("<h2>")[0]
    no_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|<script|<link", no_data)

    # Class names as labels and binary (N,) probabilities of the second class.
    yb = np.array(["neg", "pos", "pos", "neg", "pos", "neg"])
    pb = np.array([0.1, 0.8, 0.6, 0.4, 0.3, 0.2])
    doc2 = json.loads(write_classification_report(tmp_path / "bin", yb, pb, ["neg", "pos"])["json"].read_text())
    assert list(doc2["roc"]) == ["pos"] and doc2["roc"]["pos"]["auc"] == pytest.approx(8 / 9)
    with pytest.raises(InputError, match="not in class_names"):
        write_classification_report(tmp_path / "x", ["cat"], [0.5], ["neg", "pos"])
