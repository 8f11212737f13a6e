"""``medannot simulate`` (issue 12 item 5), kept short: 8 real 64x64 tiles of the stardist nuclei sample, rounds of 3
steps of a 2-level U-Net. Checks the loop's bookkeeping (effort per case, the fixed split, gated versions, the
learning curve on the held-out part, the summary's figures), not how well the model learns (the README's full run)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medannot import samples
from medannot.errors import InputError
from medannot.workflows.learning.settings import parse_settings
from medannot.workflows.learning.simulate import SimulationOptions, simulate

MEDANNOT = str(Path(sys.executable).with_name("medannot"))
TINY = {"recipe": {"epochs": 1, "iterations_per_epoch": 3, "batch_size": 2, "channels": [8, 16], "num_threads": 1},
        "min_cases": 3, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    """An nnU-Net v2 dataset of 8 real tiles (TIFF) with binary nucleus masks."""
    from medannot.training.federated_data import tile_pairs, write_dataset

    inst = samples.nuclei_instances()
    label = inst.with_array((inst.array > 0).astype(np.uint8))
    pairs = tile_pairs(samples.nuclei_image(), label, (64, 64), "nuclei", region=[(128, 256), (0, 256)])
    return write_dataset(pairs, tmp_path_factory.mktemp("sim") / "Dataset900_NucleiTiles", {0: "background", 1: "nucleus"},
                         file_ending=".tif")


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_simulation_writes_effort_curves_versions_and_summary(tiles, tmp_path):
    out = tmp_path / "out"
    lines: list[str] = []
    options = SimulationOptions(strategies=["random", "uncertainty", "diversity"], retrain_every=3, holdout_fraction=0.25,
                                settings=parse_settings(TINY), embedding_model=None)
    summary = simulate(tiles, out, options, say=lines.append)
    assert (summary["pool"], summary["holdout"]) == (6, 2)
    arms = summary["arms"]
    assert set(arms) == {"none", "random", "uncertainty", "diversity"}
    none = arms["none"]
    assert none["effort_ratio_voxels"] == 1.0 and none["rounds"] == 0 and none["clicks"] > 0  # painting everything by hand
    for name in ("random", "uncertainty", "diversity"):
        assert arms[name]["rounds"] == 2 and arms[name]["versions_activated"] >= 1 and arms[name]["cases"] == 6
    cases = _rows(out / "cases.csv")
    assert len(cases) == 4 * 6 and {r["strategy"] for r in cases} == set(arms)
    random_rows = [r for r in cases if r["strategy"] == "random"]
    assert [r["side"] for r in random_rows] == ["val", "train", "train", "train", "val", "train"]  # fixed split, 25 %
    assert [r["proposed_by"] for r in random_rows[:3]] == ["none"] * 3 and random_rows[3]["proposed_by"] == "v1"
    assert all(int(r["voxels_changed"]) <= int(r["manual_voxels"]) + 64 * 64 for r in cases)
    # uncertainty picks by the model's score once there is a model (before that: the random order)
    unc = [r for r in cases if r["strategy"] == "uncertainty"]
    assert [r["case"] for r in unc[:3]] == [r["case"] for r in random_rows[:3]]
    scored = [float(r["score"]) for r in unc[3:6]]  # picked with v1's proposals: the most uncertain left each time
    assert scored == sorted(scored, reverse=True) and unc[3]["proposed_by"] == "v1"
    curve = _rows(out / "curve.csv")
    rnd = [r for r in curve if r["strategy"] == "random"]
    assert [int(r["labelled"]) for r in rnd] == [0, 3, 6] and rnd[1]["gate_passed"] == "1"
    assert float(rnd[0]["heldout_dice"]) == pytest.approx(summary["arms"]["none"]["final_heldout_dice"])
    versions = json.loads((out / "runs" / "random" / "versions.json").read_text())
    assert [v["number"] for v in versions] == [1, 2] and all(len(v["bundle_sha256"]) == 64 for v in versions)
    for v in versions:
        assert not set(v["train_cases"]) & set(v["val_cases"])  # validation cases never train
    assert set(versions[0]["val_cases"]) <= set(versions[1]["val_cases"])  # and stay validation cases
    assert versions[1]["parent_model"] == versions[0]["bundle"]  # fine-tuned from v1
    assert summary["full_data"]["train"] + summary["full_data"]["val"] == 6
    for name in ("learning_curves.png", "effort.png", "summary.md", "summary.json"):
        assert (out / name).stat().st_size > 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "labels to 95 %" in html
    assert any("round 1" in line for line in lines)
    goals = summary["goals"]
    assert set(goals) == {"labels", "effort"} and set(goals["effort"]["ratios"]) == {"random", "uncertainty", "diversity"}


def test_simulate_cli_and_bad_datasets(tiles, tmp_path):
    out = tmp_path / "cli"
    sets = [f"--set=recipe.{k}={json.dumps(v)}" for k, v in TINY["recipe"].items()] + ["--set=val_fraction=0.25"]
    done = subprocess.run([MEDANNOT, "simulate", str(tiles), "--out", str(out), "--strategy", "random", "--retrain-every", "3",
                           "--no-full-data", "-q", *sets], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| random |" in done.stdout and "| no learning |" in done.stdout
    assert json.loads((out / "summary.json").read_text())["reference"] == "best final Dice of the strategies"
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([MEDANNOT, "simulate", str(empty), "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "images/ and labels/" in bad.stderr and "Traceback" not in bad.stderr
    typo = subprocess.run([MEDANNOT, "simulate", str(tiles), "--out", str(tmp_path / "y"), "--strategy", "clever"],
                          capture_output=True, text=True, timeout=120)
    assert typo.returncode != 0 and "random, uncertainty, diversity, mix" in typo.stderr
    with pytest.raises(InputError, match="at least 4"):
        from medannot.workflows.learning.simdata import load_sim_dataset

        few = tmp_path / "few"
        (few / "images").mkdir(parents=True)
        (few / "labels").mkdir()
        load_sim_dataset(few)
