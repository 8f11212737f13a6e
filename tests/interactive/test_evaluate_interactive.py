"""``medannot evaluate --interactive``: simulated user per engine on image/label pairs; CSV, JSON, plot, HTML."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medannot.cli import app
from medannot.data import Image, ImageKind
from medannot.io import read_image, write_image
from medannot.training.promptable_sources import DATA_SAMPLES, NUCLEI_SPLIT_COLUMN

runner = CliRunner()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Two real image/label pairs: crops of the right (held-out) half of the stardist nuclei image and their instances."""
    root = tmp_path_factory.mktemp("pairs")
    img = read_image(DATA_SAMPLES / "stardist" / "img2d.tif").array[0]
    inst = read_image(DATA_SAMPLES / "stardist" / "mask2d.tif", kind="label").array[0]
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for n, rows in enumerate((slice(0, 128), slice(256, 384))):
        cols = slice(NUCLEI_SPLIT_COLUMN, NUCLEI_SPLIT_COLUMN + 128)
        write_image(Image.from_spatial(img[rows, cols].astype(np.float32)), root / "images" / f"case{n}.nii.gz")
        lab = inst[rows, cols].astype(np.uint16)
        write_image(Image(lab[None], Image.from_spatial(lab).geometry, ImageKind.LABEL), root / "labels" / f"case{n}.nii.gz")
    return root


def test_interactive_evaluation_writes_csv_json_plot_and_html(pairs, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", "--interactive", str(pairs / "images"), str(pairs / "labels"), "--engine", "growcut",
                                 "--engine", "region-growing", "--clicks", "4", "--max-objects", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "growcut: Dice@1" in result.output and "interactive.html" in result.output
    with (out / "interactive.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 3 * 2  # cases x objects x engines
    assert {r["engine"] for r in rows} == {"growcut", "region-growing"} and {r["group"] for r in rows} == {"case0", "case1"}
    for r in rows:  # NoC@85 and the failure flag follow from the row's own Dice curve (capped at 4 clicks)
        dices = [float(r[f"dice_{k}"]) for k in range(1, 5)]
        reached = [k for k, d in enumerate(dices, 1) if d >= 0.85]
        assert int(r["noc85"]) == (reached[0] if reached else 4) and r["failed85"] == ("0" if reached else "1")
    assert any(r["failed85"] == "0" for r in rows if r["engine"] == "growcut")  # GrowCut reaches 0.85 on real nuclei
    data = json.loads((out / "interactive.json").read_text())
    assert data["objects"] == 6 and data["max_clicks"] == 4 and set(data["engines"]) == {"growcut", "region-growing"}
    for e in data["engines"].values():
        assert {"dice1", "dice_last", "noc80", "noc85", "noc90", "fail85", "median_seconds"} <= set(e)
    assert set(data["groups"]) == {"case0", "case1"}
    page = (out / "interactive.html").read_text()
    assert "data:image/png;base64," in page and "NoC@85" in page and "growcut" in page
    assert (out / "clicks_vs_dice.png").stat().st_size > 1000


def test_json_output_and_a_case_without_truth_is_listed(pairs, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "case0.nii.gz").write_bytes((pairs / "labels" / "case0.nii.gz").read_bytes())
    result = runner.invoke(app, ["evaluate", "--interactive", str(pairs / "images"), str(labels), "--engine", "growcut",
                                 "--clicks", "2", "--max-objects", "1", "--print", "json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["objects"] == 1 and data["skipped"] == ["case1: no truth label file"]


def test_bad_interactive_requests_are_one_line(pairs, tmp_path):
    result = runner.invoke(app, ["evaluate", "--interactive", str(pairs / "images"), str(pairs / "labels"), "--engine", "wand",
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unknown engine 'wand'" in result.output
    result = runner.invoke(app, ["evaluate", str(pairs / "images"), "--engine", "growcut"])
    assert result.exit_code == 2 and "--engine and --max-objects go with --interactive" in result.output
    result = runner.invoke(app, ["evaluate", str(pairs / "images")])
    assert result.exit_code == 2 and "give TRUTH" in result.output
