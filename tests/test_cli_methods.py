"""`medannot methods NAME` and `annotate --method NAME -p ...` as a newcomer meets them."""

import json

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot import classical, samples
from medannot.cli import app

runner = CliRunner()


@pytest.fixture()
def cells_png(tmp_path):
    """A real image: a 128x128 crop of the stardist nuclei sample, as 8-bit PNG."""
    arr = samples.nuclei_image().scalar()[:128, 300:428].astype(np.float32)
    arr = (255 * (arr - arr.min()) / (arr.max() - arr.min())).astype(np.uint8)
    (tmp_path / "in").mkdir()
    PILImage.fromarray(arr).save(tmp_path / "in" / "cells.png")
    return tmp_path / "in" / "cells.png"


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("medannot: error:"), result.output
    return lines[0]


@pytest.mark.parametrize("name", classical.list_methods())
def test_methods_name_prints_every_parameter_with_type_default_unit_and_meaning(name):
    result = runner.invoke(app, ["methods", name])
    assert result.exit_code == 0, result.output
    for p in classical.method_parameters(name):
        line = next(ln for ln in result.output.splitlines() if ln.startswith(f"  {p.name}  ("))
        assert p.type.value in line and f"default {p.default_text()}" in line
        assert (f"unit {p.unit}" in result.output) if p.unit else True
        assert p.meaning.split()[0] in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_methods_lists_and_points_to_names_and_help_points_there():
    listing = runner.invoke(app, ["methods"])
    assert listing.exit_code == 0 and all(m in listing.output for m in classical.list_methods())
    assert "medannot methods NAME" in listing.output
    grow = runner.invoke(app, ["methods", "region-growing"]).output
    assert "(row, column)" in grow and "(column, row, slice)" in grow and "RAS" in grow  # the axis order of a seed
    assert "-p seed=25,69,9" in grow
    import typer

    annotate = typer.main.get_command(app).commands["annotate"]  # type: ignore[attr-defined]
    helps = {p.name: p.help for p in annotate.params}
    assert "`medannot methods NAME` lists every parameter" in helps["param"] and "medannot methods" in helps["method"]
    assert "Usage" in runner.invoke(app, ["annotate", "--help"]).output
    assert "unknown classical method 'magic'" in _one_error_line(runner.invoke(app, ["methods", "magic"]))


def test_seed_as_people_write_it_and_false_as_false(cells_png, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(cells_png), "--method", "region-growing", "-p", "seed=64,75", "-p", "tolerance=40",
                                 "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "cells" / "annotation.json").read_text())
    assert meta["provenance"]["parameters"] == {"seed": [64.0, 75.0], "tolerance": 40.0}
    assert meta["labels"][0]["voxels"] > 50
    result = runner.invoke(app, ["annotate", str(cells_png), "--method", "watershed", "-p", "instances_out=False", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    labels = np.asarray(PILImage.open(out / "cells" / "labels.png"))
    assert set(np.unique(labels).tolist()) == {0, 1}  # one label for every object, as asked


@pytest.mark.parametrize("args, message, before_reading", [
    (["--method", "region-growing", "-p", "seeds=64,75"], "has no parameter 'seeds'; valid: seed, seed_space", True),
    (["--method", "otsu", "-p", "sigma=2"], "valid: sigma_mm, nbins (see `medannot methods otsu`)", True),
    (["--method", "watershed", "-p", "instances_out=nope"], "-p instances_out (method watershed) expects true or false", True),
    (["--model", "nuclei", "-p", "threshold=0.3"], "-p/--param sets a --method's parameters; a --model takes none", True),
    (["--method", "threshold"], "give -p lower=... and/or -p upper=...", False),
    (["--method", "region-growing", "-p", "seed=1,2,3", "-p", "tolerance=4"], "-p seed needs 2 coordinates (one per axis", False),
    (["--method", "region-growing", "-p", "seed=500,3", "-p", "tolerance=4"], "axis order: `medannot methods region-growing`", False),
])
def test_a_value_that_would_be_ignored_or_misread_is_a_one_line_error(args, message, before_reading, cells_png, tmp_path):
    result = runner.invoke(app, ["annotate", str(cells_png), *args, "--out", str(tmp_path / "o")])
    if before_reading:
        assert message in _one_error_line(result)
        assert not (tmp_path / "o").exists()  # refused before anything was read or written
    else:  # found once the image is read: the case is skipped with the reason, which names the -p parameter
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
        assert not (tmp_path / "o" / "cells").exists()
