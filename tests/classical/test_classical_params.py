"""Method parameters a person can discover and write: one table per method that matches its function, -p values read
as people write them, and nothing silently ignored; long steps show progress on a terminal only."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest

from medannot import classical
from medannot.classical import ClassicalMethod, Progress, method_parameters, parse_params, run_method
from medannot.classical.edges import watershed
from medannot.classical.params import REQUIRED, describe_parameters
from medannot.data import Image
from medannot.errors import ConfigError


@pytest.mark.parametrize("name", classical.list_methods())
def test_every_function_parameter_is_described_with_its_default(name):
    fn = classical._METHODS[ClassicalMethod(name)]
    signature = {k: p for k, p in inspect.signature(fn).parameters.items() if k not in ("image", "progress")}
    described = method_parameters(name)
    assert [p.name for p in described] == list(signature)
    for p in described:
        default = signature[p.name].default
        assert p.default is REQUIRED if default is inspect.Parameter.empty else p.default == default, p.name
        assert p.meaning.endswith(".") and len(p.meaning) > 20
    lines = describe_parameters(name)
    assert all(len(line) <= 80 for line in lines)
    for p in described:
        assert any(line.startswith(f"  {p.name}  (") and f"default {p.default_text()}" in " ".join(lines) for line in lines)


def test_values_are_read_as_people_write_them():
    grow = "region-growing"
    for text in ("seed=25,69,9", "seed=25, 69, 9", "seed=[25,69,9]", "seed=(25 69 9)", "seed='25 69 9'"):
        assert parse_params(grow, [text, "tolerance=40"]) == {"seed": [25.0, 69.0, 9.0], "tolerance": 40.0}
    for text, value in (("False", False), ("false", False), ("no", False), ("0", False), ("TRUE", True), ("yes", True)):
        assert parse_params("watershed", [f"instances_out={text}"]) == {"instances_out": value}
    assert parse_params(grow, ["seed=1,2", "seed_space=WORLD", "k_std=2.5", "connectivity=none", "iterations=6"]) == {
        "seed": [1.0, 2.0], "seed_space": "world", "k_std": 2.5, "connectivity": None, "iterations": 6}
    assert parse_params("multiotsu", ["classes=4"]) == {"classes": 4} and isinstance(parse_params("multiotsu", ["classes=4.0"])["classes"], int)


@pytest.mark.parametrize("pairs, message", [
    (["seeds=1,2"], "method region-growing has no parameter 'seeds'; valid: seed, seed_space, tolerance, k_std"),
    (["seed=1,2", "seed=3,4"], "-p seed is given twice"),
    (["seed"], "-p expects NAME=VALUE"),
    (["seed=left"], "-p seed (method region-growing) expects a number, got 'left'"),
    (["seed_space=mm"], "expects one of: voxel, world"),
    (["iterations=2.5"], "expects an integer"),
    (["tolerance=nan"], "finite number"),
])
def test_what_would_be_ignored_or_misread_is_an_error_naming_the_valid_parameters(pairs, message):
    with pytest.raises(ConfigError) as err:
        parse_params("region-growing", pairs)
    assert message in str(err.value)
    with pytest.raises(ConfigError, match="expects true or false, got 'maybe'"):
        parse_params("watershed", ["instances_out=maybe"])
    with pytest.raises(ConfigError, match="set from Python"):
        parse_params("watershed", ["markers=1,2"])


def test_a_parsed_false_is_false_for_the_method(nuclei_pair):
    img, _ = nuclei_pair
    img = Image.from_spatial(img.scalar()[:160, :160])
    semantic = run_method("watershed", img, **parse_params("watershed", ["instances_out=False", "sigma_mm=1"]))
    assert set(np.unique(semantic.array).tolist()) == {0, 1}  # the text "False" would have meant one label per object
    with pytest.raises(ConfigError, match="needs seed: give -p seed="):
        run_method("region-growing", img, tolerance=3)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_long_steps_show_on_a_terminal_and_nowhere_else(t1_slab):
    shown = _Terminal()
    with Progress("watershed", stream=shown) as progress:
        watershed(t1_slab, sigma_mm=1.0, progress=progress)
    assert progress.steps[0].startswith("smoothing") and "gradient magnitude" in progress.steps
    assert any(s.startswith("flooding from") for s in progress.steps)
    assert "watershed: flooding from" in shown.getvalue()
    piped = io.StringIO()
    with Progress("watershed", stream=piped) as quiet:
        watershed(t1_slab, sigma_mm=1.0, progress=quiet)
    assert piped.getvalue() == "" and quiet.steps == progress.steps
    with Progress("watershed", show=False, stream=_Terminal()) as off:
        off.step("x")
    assert off.stream.getvalue() == ""
