"""Accumulator summaries and the CSV / JSON / HTML report."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import numpy as np
import pytest
from eval_masks import PAIRS

from medannot.evaluation import SegmentationAccumulator, segmentation_metrics
from medannot.evaluation.report import write_report

FIRST = "case,label,dice,iou,precision,recall,hd95,hd95_pooled,assd"


def _filled() -> SegmentationAccumulator:
    acc = SegmentationAccumulator(tolerance_mm=1.0)
    for name in ("anisotropic_3d", "border_3d", "many_components_3d"):
        pred, truth, spacing = PAIRS[name]
        acc.update(name, "organ", pred, truth, spacing)
        acc.update(name, "lesion", pred[::2], truth[::2], spacing)
    z = np.zeros((6, 6, 6), bool)
    m = z.copy()
    m[2:4, 2:4, 2:4] = True
    acc.update("missed", "lesion", z, m, (1.0, 1.0, 1.0))
    acc.update("absent", "lesion", z, z, (1.0, 1.0, 1.0))
    return acc


def test_accumulator_summary_statistics():
    acc = _filled()
    assert len(acc) == 8
    assert list(acc.rows[0])[:9] == FIRST.split(",")
    summary = acc.compute()
    organ = [r["dice"] for r in acc.rows if r["label"] == "organ"]
    s = summary["labels"]["organ"]["dice"]
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(np.mean(organ))
    assert s["std"] == pytest.approx(np.std(organ, ddof=1))
    assert s["median"] == pytest.approx(np.median(organ))
    # Empty cases are listed and counted; a miss is in the averages (never dropped), a label absent from both is not
    # (nnU-Net's rule) unless asked.
    assert summary["empty_counts"]["lesion"] == {"truth": 0, "prediction": 1, "both": 1}
    assert {(e["case"], e["empty"]) for e in summary["empty_cases"]} == {("missed", "prediction"), ("absent", "both")}
    lesion = [r["dice"] for r in acc.rows if r["label"] == "lesion" and r["case"] != "absent"]
    assert summary["labels"]["lesion"]["dice"]["n"] == 4 and 0.0 in lesion
    assert summary["labels"]["lesion"]["dice"]["mean"] == pytest.approx(np.mean(lesion))
    counted = SegmentationAccumulator(include_absent=True)
    for row in acc.rows:
        counted.add_row(row)
    assert counted.compute()["labels"]["lesion"]["dice"]["mean"] == pytest.approx(np.mean(lesion + [1.0]))
    assert summary["n_cases"] == 5
    acc.reset()
    assert len(acc) == 0 and acc.compute()["labels"] == {}


def test_single_case_has_undefined_std():
    acc = SegmentationAccumulator()
    pred, truth, spacing = PAIRS["ellipse_2d"]
    row = acc.update("c", "x", pred, truth, spacing)
    assert row == {"case": "c", "label": "x", **segmentation_metrics(pred, truth, spacing)}
    assert acc.compute()["labels"]["x"]["dice"]["std"] is None


def test_report_files(tmp_path):
    acc = _filled()
    settings = {"tolerance_mm": 1.0, "labels": {"1": "organ"}}
    summary = dataclasses.replace(acc.compute(), missing_predictions=["missed"])  # results are frozen records
    paths = write_report(tmp_path / "out", acc.rows, summary, settings)
    assert set(paths) == {"csv", "json", "html"}

    text = paths["csv"].read_text()
    assert text.splitlines()[0].startswith(FIRST + ",")
    parsed = list(csv.DictReader(text.splitlines()))
    assert len(parsed) == 8
    assert float(parsed[0]["hd95"]) == acc.rows[0]["hd95"]  # full precision round trip
    assert {"specificity", "hausdorff", "surface_dice", "truth_volume", "pred_volume", "empty"} <= set(parsed[0])

    doc = json.loads(paths["json"].read_text())
    assert set(doc) >= {"rows", "summary", "settings", "versions"}
    assert doc["rows"][0]["dice"] == acc.rows[0]["dice"]
    assert doc["summary"]["labels"]["organ"]["dice"]["mean"] == pytest.approx(summary["labels"]["organ"]["dice"]["mean"])
    assert "numpy" in doc["versions"]

    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2
    # Self-contained: no external resources at all.
    no_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"(https?:)?//", no_data, flags=re.IGNORECASE)
    assert not re.search(r"<link|<script|url\(|@import", no_data, flags=re.IGNORECASE)
    assert re.findall(r"src='([^']*)'", page) and all(s.startswith("data:image/png;base64,") for s in re.findall(r"src='([^']*)'", page))
    assert "missed" in page and "prediction is empty" in page and "How to read this" in page
    # Worst case first in the per-case table: the missed lesion (Dice 0).
    cases = page.split("Cases, worst first", 1)[1]
    assert cases.index("missed") < cases.index("anisotropic_3d")
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_report_with_no_rows(tmp_path):
    paths = write_report(tmp_path, [], settings={"tolerance_mm": 1.0})
    assert paths["csv"].read_text().strip() == FIRST
    assert json.loads(paths["json"].read_text())["rows"] == []
    assert "data:image/png" not in paths["html"].read_text()
