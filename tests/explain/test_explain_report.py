"""`annotate --uncertainty` then `evaluate`: report.html ranks the cases by uncertainty inside the mask (real nuclei crops)."""

import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot import samples
from medannot.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Three 128x128 crops of the real stardist nuclei image (8-bit) and their true masks."""
    root = tmp_path_factory.mktemp("crops")
    img = samples.nuclei_image().scalar().astype(np.float32)
    inst = samples.nuclei_instances().scalar()
    (root / "in").mkdir()
    (root / "truth").mkdir()
    for name, (r, c) in {"a": (0, 300), "b": (200, 300), "c": (384, 384)}.items():
        a = img[r : r + 128, c : c + 128]
        PILImage.fromarray((255 * (a - a.min()) / (a.max() - a.min())).astype(np.uint8)).save(root / "in" / f"{name}.png")
        PILImage.fromarray((inst[r : r + 128, c : c + 128] > 0).astype(np.uint8)).save(root / "truth" / f"{name}.png")
    return root


def test_report_ranks_cases_by_uncertainty_in_the_mask(crops, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(crops / "in"), "--model", "nuclei", "--uncertainty", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    in_mask = {}
    for case in ("a", "b", "c"):
        ann = json.loads((out / case / "annotation.json").read_text())
        s = ann["explanations"]["uncertainty"]
        assert 0 <= s["mean_entropy_in_mask"] <= 1 and 0 <= s["uncertain_fraction"] <= 1
        assert ann["files"]["uncertainty"] == "uncertainty.nii.gz" and (out / case / ann["files"]["uncertainty_png"]).is_file()
        in_mask[case] = s["mean_entropy_in_mask"]
    report = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", str(out), str(crops / "truth"), "--out", str(report), "--workers", "1"])
    assert result.exit_code == 0, result.output
    page = (report / "report.html").read_text()
    section = page[page.index("<h2>Where to look first</h2>") : page.index("<h2>Summary per label</h2>")]
    ranked = re.findall(r"<tr><td>\d+</td><td class=t><b>(\w+)</b>", section)
    assert ranked == sorted(in_mask, key=lambda c: -in_mask[c])
    assert section.count("data:image/png;base64,") == 3 and "mean Dice" in section
    summary = json.loads((report / "metrics.json").read_text())["summary"]
    assert [r["case"] for r in summary["explanations"]["uncertainty"]] == ranked


def test_report_without_explanations_has_no_section(crops, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["annotate", str(crops / "in" / "a.png"), "--method", "otsu", "--out", str(out), "-q"]).exit_code == 0
    report = tmp_path / "report"
    assert runner.invoke(app, ["evaluate", str(out), str(crops / "truth"), "--out", str(report), "--workers", "1"]).exit_code == 0
    assert "Where to look first" not in (report / "report.html").read_text()


def test_mc_dropout_on_a_model_without_dropout_is_refused_before_writing(crops, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(crops / "in"), "--model", "nuclei", "--mc-dropout", "4", "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no dropout layer" in lines[0]
    assert not out.exists()
