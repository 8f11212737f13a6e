"""What `evaluate` does with a prediction folder that covers only some cases, with labels absent from both masks,
and which slice a report card shows; the messages name the CLI flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_masks import ellipsoid
from typer.testing import CliRunner

from medannot.cli import app
from medannot.data import Geometry, Image
from medannot.errors import GeometryError
from medannot.evaluation import evaluate_paths
from medannot.evaluation.thumbnails import key_slice
from medannot.io import write_image

SPACING = (2.0, 0.8, 0.8)
SHAPE = (12, 24, 20)
runner = CliRunner()


def _nifti(path, array, spacing=SPACING):
    return write_image(Image.from_spatial(array, Geometry(spacing=spacing), kind="label"), path)


def _case(shift: int, tumour: bool) -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros(SHAPE, np.uint8)
    truth[ellipsoid(SHAPE, (6, 12, 10), (4, 8, 7))] = 1
    pred = np.zeros_like(truth)
    pred[ellipsoid(SHAPE, (6, 12 + shift, 10), (4, 7.5, 7))] = 1
    if tumour:
        truth[ellipsoid(SHAPE, (6, 8, 8), (2, 3, 3))] = 2
        pred[ellipsoid(SHAPE, (6, 9, 8), (2, 2.5, 3))] = 2
    return pred, truth


@pytest.fixture()
def partial(tmp_path):
    """Four truth cases; predictions for three; the tumour (label 2) only in case a."""
    for i, name in enumerate("abcd"):
        pred, truth = _case(i % 2, tumour=name == "a")
        _nifti(tmp_path / "truth" / f"{name}.nii.gz", truth)
        if name != "d":
            _nifti(tmp_path / "pred" / name / "labels.nii.gz", pred)
    return tmp_path


def test_cases_without_prediction_are_listed_and_not_scored_by_default(partial):
    result = evaluate_paths(partial / "pred", partial / "truth", partial / "out")
    assert result.missing_predictions == ["d"] and sorted({r.case for r in result.rows}) == ["a", "b", "c"]
    assert result.summary.n_cases == 3 and result.summary.labels["1"]["dice"].n == 3
    assert result.summary.labels["1"]["dice"].min > 0.5  # no Dice 0 from the case nobody predicted
    page = (partial / "out" / "report.html").read_text()
    assert "not scored (medannot evaluate --missing-as-empty scores them as empty predictions): d" in page
    old = evaluate_paths(partial / "pred", partial / "truth", partial / "old", missing_as_empty=True)
    assert sorted({r.case for r in old.rows}) == ["a", "b", "c", "d"] and old.summary.labels["1"]["dice"].min == 0.0
    assert json.loads((partial / "old" / "metrics.json").read_text())["settings"]["missing_as_empty"] is True


def test_labels_absent_from_both_are_flagged_and_left_out_of_the_means(partial):
    result = evaluate_paths(partial / "pred", partial / "truth", partial / "out")
    rows = {(r.case, r.label): r for r in result.rows}
    assert rows[("b", "2")].empty == "both" and rows[("b", "2")].metrics.dice == 1.0  # the row stays, flagged
    tumour = result.summary.labels["2"]["dice"]
    assert tumour.n == 1 and tumour.mean == pytest.approx(rows[("a", "2")].metrics.dice) and tumour.mean < 0.9
    assert result.summary.empty_counts["2"].both == 2
    page = (partial / "out" / "report.html").read_text()
    assert "absent in both (left out of the averages)" in page
    counted = evaluate_paths(partial / "pred", partial / "truth", partial / "counted", include_absent=True)
    assert counted.summary.labels["2"]["dice"].n == 3
    assert counted.summary.labels["2"]["dice"].mean == pytest.approx((rows[("a", "2")].metrics.dice + 2) / 3)


def test_cli_says_which_cases_are_missing_and_names_the_options(partial):
    result = runner.invoke(app, ["evaluate", str(partial / "pred"), str(partial / "truth"), "--out", str(partial / "o")],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 truth case(s) without a prediction, not scored (--missing-as-empty scores them as empty): d" in text
    assert "left out of the means; --include-absent counts them" in text
    both = runner.invoke(app, ["evaluate", str(partial / "pred"), str(partial / "truth"), "--out", str(partial / "o2"),
                               "--missing-as-empty", "--include-absent", "--print", "json"])
    assert both.exit_code == 0, both.output
    doc = json.loads(both.output)
    assert doc["settings"]["missing_as_empty"] and doc["settings"]["include_absent"]
    assert doc["summary"]["labels"]["2"]["dice"]["n"] == 4


def test_grid_errors_name_the_flag(tmp_path):
    pred, truth = _case(0, tumour=False)
    _nifti(tmp_path / "t.nii.gz", truth)
    _nifti(tmp_path / "p.nii.gz", pred, spacing=(2.0, 0.8, 0.9))
    with pytest.raises(GeometryError, match="--resample") as err:
        evaluate_paths(tmp_path / "p.nii.gz", tmp_path / "t.nii.gz", tmp_path / "out")
    assert "resample=True" not in str(err.value)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "p.nii.gz"), str(tmp_path / "t.nii.gz"), "--out", str(tmp_path / "o"),
                                 "--lesions", "--match-threshold", "1.5"])
    assert result.exit_code == 2 and "--match-threshold must be in [0, 1)" in result.output


def test_report_card_shows_the_slice_with_most_of_the_structure():
    truth = np.zeros((20, 20, 10), bool)
    truth[4:16, 4:16, 2:8] = True  # a block over slices 2..7, widest on slice 5
    truth[2:18, 2:18, 5] = True
    pred = truth.copy()
    pred[4:16, 4:10, 3] = False  # slice 3: the most disagreement (72 voxels), the old choice
    pred[0, 0, 9] = True  # a stray voxel on slice 9
    axis, index = key_slice(pred, truth, np.eye(3))
    assert (axis, index) == (2, 5)  # the slice holding most of the structure
    tied = truth.copy()
    tied[2:18, 2:18, 6] = True  # slices 5 and 6 now hold as much; the prediction misses part of 6
    pred6 = tied.copy()
    pred6[2:6, 2:6, 6] = False
    assert key_slice(pred6, tied, np.eye(3)) == (2, 6)  # among equals, where they differ
    missed = key_slice(np.zeros_like(truth), truth, np.eye(3))  # a miss: the truth's biggest slice
    assert missed[1] in range(2, 8)
    assert key_slice(np.zeros_like(truth), np.zeros_like(truth), np.eye(3)) == (2, 5)
