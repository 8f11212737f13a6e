"""evaluate_paths on NIfTI and PNG files written in tmp_path: matching, grids, labels, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_masks import ellipsoid

from medannot.data import Geometry, Image
from medannot.errors import GeometryError, InputError
from medannot.evaluation import evaluate_paths, segmentation_metrics
from medannot.io import read_image, write_image

SPACING = (2.0, 0.8, 0.8)
SHAPE = (12, 24, 20)


def _labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.zeros(SHAPE, np.uint8)
    truth[ellipsoid(SHAPE, (6, 12, 10), (4, 8, 7))] = 1
    truth[ellipsoid(SHAPE, (6, 8, 8), (2, 3, 3))] = 2
    pred = np.zeros_like(truth)
    shift = rng.integers(-1, 2, size=3)
    pred[ellipsoid(SHAPE, (6, 12, 10) + shift, (4, 7.5, 7))] = 1
    pred[ellipsoid(SHAPE, (6, 9, 8), (2, 2.5, 3))] = 2
    return pred, truth


def _nifti(path, array, geometry=None):
    geometry = geometry or Geometry(spacing=SPACING, origin=(-10.0, 5.0, 3.0))
    return write_image(Image.from_spatial(array, geometry, kind="label"), path)


def _expected(pred, truth, value, spacing=None):
    # NIfTI stores the spacing as float32, so the spacing read back is 0.800000011920929, not 0.8.
    spacing = spacing or tuple(float(np.float32(s)) for s in SPACING)
    return segmentation_metrics(pred == value, truth == value, spacing)


def _same(row, expected):
    assert row["empty"] == expected["empty"]
    numbers = {k: v for k, v in expected.items() if k != "empty"}
    assert {k: row[k] for k in numbers} == pytest.approx(numbers, rel=1e-12)


def test_folders_match_by_case_name_and_report(tmp_path):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    pairs = {name: _labels(i) for i, name in enumerate(["case_a", "case_b", "case_c"])}
    for name, (_pred, truth) in pairs.items():
        _nifti(truth_dir / f"{name}.nii.gz", truth)
    _nifti(pred_dir / "case_a" / "labels.nii.gz", pairs["case_a"][0])  # medannot annotate layout
    _nifti(pred_dir / "case_b.nii.gz", pairs["case_b"][0])
    _nifti(pred_dir / "extra.nii.gz", pairs["case_b"][0])  # no truth: listed, not scored
    # case_c has no prediction: with missing_as_empty, scored as an empty prediction and listed.

    result = evaluate_paths(pred_dir, truth_dir, tmp_path / "out", labels={1: "liver", 2: "tumour"}, missing_as_empty=True)
    assert result.missing_predictions == ["case_c"]
    assert result.unmatched_predictions == ["extra"]
    assert [(r["case"], r["label"]) for r in result.rows] == [
        (c, lab) for c in ("case_a", "case_b", "case_c") for lab in ("liver", "tumour")
    ]
    for row in result.rows:
        pred, truth = pairs[row["case"]]
        if row["case"] == "case_c":
            pred = np.zeros_like(truth)
        expected = _expected(pred, truth, row["label_value"])
        _same(row, expected)
    assert {(r["case"], r["empty"]) for r in result.rows if r["empty"]} == {("case_c", "prediction")}

    out = tmp_path / "out"
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("case,label,dice,iou,precision,recall,hd95,hd95_pooled,assd,")
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["summary"]["missing_predictions"] == ["case_c"]
    assert doc["settings"]["labels"] == {"1": "liver", "2": "tumour"}
    assert "case_c" in (out / "report.html").read_text()
    as_dict = json.loads(json.dumps(result.to_dict()))
    assert as_dict["missing_predictions"] == ["case_c"] and as_dict["paths"]["csv"].endswith("metrics.csv")


def test_grid_mismatch_error_and_resample(tmp_path):
    pred, truth = _labels(5)
    truth_geom = Geometry(spacing=SPACING, origin=(0.0, 0.0, 0.0))
    _nifti(tmp_path / "t.nii.gz", truth, truth_geom)
    # The prediction grid starts one voxel later along the 2nd axis (origin + 0.8 mm).
    shifted_geom = Geometry(spacing=SPACING, origin=(0.0, 0.8, 0.0))
    _nifti(tmp_path / "p.nii.gz", pred[:, 1:, :], shifted_geom)

    with pytest.raises(GeometryError, match=r"p\.nii\.gz.*t\.nii\.gz.*with --resample") as info:
        evaluate_paths(tmp_path / "p.nii.gz", tmp_path / "t.nii.gz", tmp_path / "out")
    assert "\n" not in str(info.value)

    result = evaluate_paths(tmp_path / "p.nii.gz", tmp_path / "t.nii.gz", tmp_path / "out", resample=True)
    on_truth_grid = pred.copy()
    on_truth_grid[:, 0, :] = 0  # outside the prediction's field of view
    for row in result.rows:
        expected = _expected(on_truth_grid, truth, row["label_value"])
        _same(row, expected)


def test_tiny_affine_noise_is_the_same_grid(tmp_path):
    pred, truth = _labels(6)
    _nifti(tmp_path / "t.nii.gz", truth, Geometry(spacing=SPACING))
    _nifti(tmp_path / "p.nii.gz", pred, Geometry(spacing=SPACING, origin=(2e-5, 0.0, 0.0)))
    result = evaluate_paths(tmp_path / "p.nii.gz", tmp_path / "t.nii.gz", tmp_path / "out")
    assert len(result.rows) == 2


def test_unknown_label_value_is_an_input_error(tmp_path):
    for i, name in enumerate(["u1", "u2"]):  # two cases: the error travels back from a worker process
        pred, truth = _labels(7 + i)
        if name == "u2":
            pred[0, 0, 0] = 9
        _nifti(tmp_path / "t" / f"{name}.nii.gz", truth)
        _nifti(tmp_path / "p" / f"{name}.nii.gz", pred)
    with pytest.raises(InputError, match=r"u2\.nii\.gz.*\[9\].*not in the label map"):
        evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "out", labels={1: "a", 2: "b"})
    with pytest.raises(InputError, match="background"):
        evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "out", labels={0: "bg", 1: "a", 2: "b", 9: "c"})


def test_no_match_and_missing_path_are_input_errors(tmp_path):
    pred, truth = _labels(8)
    _nifti(tmp_path / "t" / "x.nii.gz", truth)
    _nifti(tmp_path / "p" / "y.nii.gz", pred)
    with pytest.raises(InputError, match="no prediction matches"):
        evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        evaluate_paths(tmp_path / "nope", tmp_path / "t", tmp_path / "out")


def test_png_folders_default_labels(tmp_path):
    yy, xx = np.mgrid[:40, :48]
    truth1 = np.where((yy - 20) ** 2 + (xx - 24) ** 2 < 150, 1, 0).astype(np.uint8)
    truth1[2:6, 2:8] = 2
    pred1 = np.where((yy - 21) ** 2 + (xx - 22) ** 2 < 140, 1, 0).astype(np.uint8)
    truth2 = np.where((yy - 10) ** 2 + (xx - 30) ** 2 < 60, 1, 0).astype(np.uint8)
    pred2 = np.zeros_like(truth2)
    pred2[8:14, 26:33] = 1
    for d, arrays in (("truth", (truth1, truth2)), ("pred", (pred1, pred2))):
        for name, arr in zip(("img1", "img2"), arrays):
            write_image(Image.from_spatial(arr, kind="label"), tmp_path / d / f"{name}.png")
    assert read_image(tmp_path / "truth" / "img1.png", kind="label").ndim == 2

    result = evaluate_paths(tmp_path / "pred", tmp_path / "truth", tmp_path / "out")
    by_key = {(r["case"], r["label"]): r for r in result.rows}
    assert set(by_key) == {("img1", "1"), ("img1", "2"), ("img2", "1"), ("img2", "2")}
    assert by_key[("img1", "2")]["empty"] == "prediction"
    assert by_key[("img2", "2")]["empty"] == "both"  # label 2 exists elsewhere, absent here in both
    assert by_key[("img2", "2")]["dice"] == 1.0
    expected = _expected(pred2, truth2, 1, (1.0, 1.0))
    _same(by_key[("img2", "1")], expected)
    assert result.summary["empty_counts"]["2"] == {"truth": 0, "prediction": 1, "both": 1}
