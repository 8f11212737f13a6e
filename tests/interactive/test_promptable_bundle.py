"""The shipped promptable-2d bundle: its stored held-out numbers recomputed from its weights (a small subset)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medannot.data import Task
from medannot.evaluation.interactive import simulate
from medannot.models import Bundle
from medannot.models.bundle import bundled_root
from medannot.tasks.promptable import CLASSICAL_DEFAULT, create_engine, default_engine, held_out_noc85
from medannot.training.promptable_training import HELD_OUT_CSV, held_out_cases

NAME = "promptable-2d"


@pytest.fixture(scope="module")
def shipped():
    bundle = Bundle.load(NAME)
    with (bundled_root() / NAME / HELD_OUT_CSV).open() as fh:
        rows = list(csv.DictReader(fh))
    return bundle, rows


def test_the_bundle_is_the_default_2d_engine_and_names_its_held_out_split(shipped):
    bundle, rows = shipped
    assert bundle.task is Task.PROMPTABLE and bundle.spatial_dims == 2
    groups = {r["group"] for r in rows}
    assert groups == {"nuclei-right", "colin27-aal-2d", "mr-overlay-lesions"}
    engines = {r["engine"] for r in rows}
    assert engines == {NAME, "region-growing", "random-walker", "growcut"}
    metrics = bundle.spec.metrics
    mine = [r for r in rows if r["engine"] == NAME]
    assert metrics["cases"] == len(mine) == len(held_out_cases(2))
    assert np.isclose(metrics["dice1"], np.mean([float(r["dice_1"]) for r in mine]), atol=1e-3)
    assert np.isclose(metrics["noc85"], np.mean([int(r["noc85"]) for r in mine]), atol=1e-3)
    card = (bundled_root() / NAME / "MODEL_CARD.md").read_text()
    assert f"{metrics['noc85']:.3f}" in card and "medannot train configs/promptable_2d.yaml" in card


def test_stored_held_out_curves_are_recomputed_from_the_shipped_weights(shipped):
    bundle, rows = shipped
    mine = {r["case"]: r for r in rows if r["engine"] == NAME}
    cases = {c.name: c for c in held_out_cases(2)}
    engine = create_engine(NAME)
    clicks = int(bundle.spec.training["held_out"]["max_clicks"])
    picked = [sorted(n for n in mine if n.startswith(p))[0] for p in ("nuclei/", "colin27/", "mr-overlay/")]
    for name in picked:
        stored = [float(mine[name][f"dice_{k}"]) for k in range(1, clicks + 1)]
        got = simulate(engine, cases[name].image, cases[name].mask, max_clicks=clicks, case=name).dices
        assert np.allclose(got[:5], stored[:5], atol=0.02), (name, got[:5], stored[:5])
        assert int(mine[name]["noc85"]) == pytest.approx(min([k for k, d in enumerate(got, 1) if d >= 0.85] or [clicks]), abs=1)


def test_the_default_engine_is_the_one_with_fewest_held_out_clicks(shipped):
    """The network is the default only where its own held-out run shows it needs fewer clicks than every classical
    engine; the shipped one does not (so GrowCut stays the default), and a card that said otherwise would switch it."""
    bundle, rows = shipped
    noc = held_out_noc85(bundle)
    assert set(noc) == {NAME, "region-growing", "random-walker", "growcut"}
    best = min(noc, key=noc.get)
    assert default_engine(2) == (NAME if best == NAME else CLASSICAL_DEFAULT)
    assert default_engine(3) == CLASSICAL_DEFAULT
