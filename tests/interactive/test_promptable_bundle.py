"""The shipped promptable bundles (2D and 3D): their stored held-out numbers recomputed from their weights (a small
subset), and the default engine of each dimensionality."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medannot.data import Task
from medannot.evaluation.interactive import simulate
from medannot.models import Bundle
from medannot.models.bundle import bundled_root
from medannot.tasks.promptable import CLASSICAL_DEFAULT, create_engine, default_engine, held_out_means
from medannot.training.promptable_training import HELD_OUT_CSV, held_out_cases

#: bundle -> (dimensionality, held-out sources, config that trains it last, the classical engines measured beside it)
SHIPPED = {
    "promptable-2d": (2, {"nuclei-right", "colin27-aal-2d", "mr-overlay-lesions"}, "configs/promptable_2d_stage2.yaml",
                      {"region-growing", "random-walker", "growcut"}),
    "promptable-3d": (3, {"colin27-aal"}, "configs/promptable_3d.yaml", {"region-growing", "growcut"}),
}


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
    name = request.param
    bundle = Bundle.load(name)
    with (bundled_root() / name / HELD_OUT_CSV).open() as fh:
        rows = list(csv.DictReader(fh))
    return name, bundle, rows


def test_the_bundle_names_its_held_out_split_and_its_numbers_add_up(shipped):
    name, bundle, rows = shipped
    nd, groups, config, classical = SHIPPED[name]
    assert bundle.task is Task.PROMPTABLE and bundle.spatial_dims == nd
    assert {r["group"] for r in rows} == groups
    assert {r["engine"] for r in rows} == {name} | classical
    metrics = bundle.spec.metrics
    mine = [r for r in rows if r["engine"] == name]
    sources = bundle.spec.training["held_out"]["sources"]
    assert metrics["cases"] == len(mine) == len(held_out_cases(nd, sources))
    assert np.isclose(metrics["dice1"], np.mean([float(r["dice_1"]) for r in mine]), atol=1e-3)
    assert np.isclose(metrics["noc85"], np.mean([int(r["noc85"]) for r in mine]), atol=1e-3)
    card = (bundled_root() / name / "MODEL_CARD.md").read_text()
    assert f"{metrics['noc85']:.3f}" in card and f"medannot train {config}" in card


def test_stored_held_out_curves_are_recomputed_from_the_shipped_weights(shipped):
    name, bundle, rows = shipped
    mine = {r["case"]: r for r in rows if r["engine"] == name}
    cases = {c.name: c for c in held_out_cases(bundle.spatial_dims, bundle.spec.training["held_out"]["sources"])}
    engine = create_engine(name)
    clicks = int(bundle.spec.training["held_out"]["max_clicks"])
    by_group: dict[str, list[str]] = {}
    for case, r in sorted(mine.items()):
        by_group.setdefault(r["group"], []).append(case)
    picked = [cs[0] for cs in by_group.values()]  # one object of each held-out source
    for case in picked:
        stored = [float(mine[case][f"dice_{k}"]) for k in range(1, clicks + 1)]
        got = simulate(engine, cases[case].image, cases[case].mask, max_clicks=5, case=case).dices
        assert np.allclose(got[:5], stored[:5], atol=0.02), (case, got[:5], stored[:5])


def test_the_default_engine_is_the_one_with_fewest_held_out_clicks(shipped):
    """A network is the default of its dimensionality only where its own held-out run shows it needs fewer clicks
    than every classical engine measured beside it and its first mask is as good; otherwise GrowCut is."""
    name, bundle, _ = shipped
    means = held_out_means(bundle)
    assert set(means) == {name} | SHIPPED[name][3]
    mine = means[name]
    wins = all(mine["noc85"] < v["noc85"] and mine["dice1"] >= v["dice1"] for k, v in means.items() if k != name)
    assert default_engine(bundle.spatial_dims) == (name if wins else CLASSICAL_DEFAULT)


def test_a_network_with_fewer_clicks_but_a_worse_first_mask_is_not_the_default(tmp_path, monkeypatch):
    """The rule on a made-up held-out table: fewer clicks and a better first mask -> the network; fewer clicks only
    (every engine near the cap, as the 3D network on the Colin27 nuclei) -> GrowCut."""
    import shutil

    from medannot.tasks import promptable as task

    folder = tmp_path / "promptable-3d"
    shutil.copytree(bundled_root() / "promptable-3d", folder)
    fake = Bundle.load(folder)
    monkeypatch.setattr(task, "_promptable_bundles", lambda: [fake])
    header = "case,group,engine,noc85,dice_1\n"
    for dice1, expected in ((0.6, "promptable-3d"), (0.4, CLASSICAL_DEFAULT)):
        (folder / HELD_OUT_CSV).write_text(header + f"a,g,promptable-3d,19,{dice1}\na,g,growcut,20,0.55\n")
        assert default_engine(3) == expected
    assert default_engine(2) == CLASSICAL_DEFAULT  # no 2D network among the bundles here
