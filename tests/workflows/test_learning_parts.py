"""The parts of the learning loop (issue 12): settings, the fixed split, the gate, the strategies' orders, the case-list
training source, and the simulated annotator's effort on real nuclei masks (stardist sample)."""

from __future__ import annotations

import numpy as np
import pytest

from medannot import samples
from medannot.data import Image, ImageKind
from medannot.errors import ConfigError, InputError
from medannot.workflows.learning.gate import Scores, decide, score_masks
from medannot.workflows.learning.settings import GateRule, LearningSettings, Strategy, parse_settings
from medannot.workflows.learning.split import Side, assign_side
from medannot.workflows.learning.strategies import Candidate, order_cases, random_key


def test_settings_merge_sections_and_typos_name_the_valid_values():
    s = parse_settings({"gate": {"min_gain": 0.01}, "recipe": {"epochs": 2}, "strategy": "uncertainty"})
    assert (s.gate.min_gain, s.gate.max_label_drop, s.recipe.epochs, s.recipe.batch_size) == (0.01, 0.02, 2, 8)
    assert s.strategy is Strategy.UNCERTAINTY and s.engine == "auto"
    again = parse_settings({"retrain_every": 5}, s)
    assert again.gate.min_gain == 0.01 and again.retrain_every == 5
    with pytest.raises(ConfigError, match="unknown learning setting 'retrain'; valid settings: retrain_every"):
        parse_settings({"retrain": 3})
    with pytest.raises(ConfigError, match="strategy: .*'random', 'uncertainty', 'diversity' or 'mix'"):
        parse_settings({"strategy": "smart"})
    with pytest.raises(ConfigError, match="min_cases"):
        parse_settings({"min_cases": 1})


def test_the_split_keeps_the_validation_share_and_never_moves_a_case():
    sides: list[Side] = []
    for _ in range(20):
        sides.append(assign_side(len(sides), sum(s is Side.VAL for s in sides), 0.2))
    assert sides[0] is Side.VAL and sides[1] is Side.TRAIN
    assert [i for i, s in enumerate(sides) if s is Side.VAL] == [0, 5, 10, 15]  # ceil(0.2 n) at every n
    assert assign_side(4, 1, 0.5) is Side.VAL and assign_side(4, 3, 0.5) is Side.TRAIN


def test_the_gate_passes_only_a_candidate_not_worse_by_the_margin():
    rule = GateRule()
    active = Scores(0.80, {"1": 0.90, "2": 0.70})
    assert decide(Scores(0.80, {"1": 0.91, "2": 0.69}), active, rule).passed  # equal mean, a label 0.01 lower: fine
    worse_mean = decide(Scores(0.79, {"1": 0.90, "2": 0.68}), active, rule)
    assert not worse_mean.passed and "below the active model's 0.8000" in worse_mean.reason
    one_label = decide(Scores(0.81, {"1": 0.95, "2": 0.67}), active, rule)
    assert not one_label.passed and "label 2" in one_label.reason and "falls by 0.0300" in one_label.reason
    assert not decide(Scores(0.805, {"1": 0.91, "2": 0.70}), active, GateRule(min_gain=0.01)).passed
    first = decide(Scores(0.1, {"1": 0.1}), None, rule)
    assert first.passed and "no active model" in first.reason and first.to_dict()["active"] is None


def test_scores_follow_the_empty_rule():
    truth = np.zeros((8, 8), np.uint8)
    truth[2:5, 2:5] = 1
    missed = score_masks([("a", np.zeros_like(truth), truth)], [1, 2])
    assert missed.per_label == {"1": 0.0, "2": 1.0} and missed.mean_dice == 0.5  # label 2 absent from both: 1
    assert score_masks([], [1]).mean_dice == 0.0


def test_strategy_orders():
    rng = np.random.default_rng(0)
    cands = [Candidate(f"c{i}", u, rng.normal(size=8).astype(np.float32)) for i, u in enumerate([0.1, None, 0.5, 0.3])]
    rnd = order_cases("random", cands, seed=7)
    assert [k for k, _ in rnd] == sorted((c.key for c in cands), key=lambda k: random_key(7, k))
    assert order_cases("random", list(reversed(cands)), seed=7) == rnd  # the listing order does not matter
    unc = order_cases("uncertainty", cands, seed=7)
    assert [k for k, _ in unc] == ["c2", "c3", "c0", "c1"] and unc[-1][1] is None  # unknown scores last
    # diversity: farthest-first from what is labelled; an exact copy of a labelled case comes last
    labelled = [cands[0].embedding]
    twin = Candidate("twin", None, cands[0].embedding.copy())
    div = order_cases("diversity", [twin, *cands[1:]], labelled, seed=1)
    assert div[-1][0] == "twin" and div[-1][1] == pytest.approx(0.0, abs=1e-6)
    scores = [s for _, s in div]
    x = np.stack([c.embedding / np.linalg.norm(c.embedding) for c in cands[1:]])
    first = div[0][0]
    want = max(cands[1:], key=lambda c: 1 - float(c.embedding @ labelled[0]) / float(np.linalg.norm(c.embedding) * np.linalg.norm(labelled[0])))
    assert first == want.key and scores[0] >= scores[1] >= 0 and x.shape == (3, 8)
    mix = order_cases("mix", cands, labelled, seed=7)
    assert sorted(k for k, _ in mix) == sorted(c.key for c in cands) and all(s is not None for _, s in mix)
    with pytest.raises(ConfigError, match="random, uncertainty, diversity, mix"):
        order_cases("smart", cands)
    assert order_cases("diversity", []) == []


def nuclei_tile(row: int = 0, col: int = 4, size: int = 64) -> tuple[Image, np.ndarray]:
    box = (slice(row * size, (row + 1) * size), slice(col * size, (col + 1) * size))
    image = Image.from_spatial(np.ascontiguousarray(samples.nuclei_image().scalar()[box]))
    return image, (samples.nuclei_instances().scalar()[box] > 0).astype(np.uint8)


def test_effort_on_real_nuclei():
    from scipy import ndimage as ndi

    from medannot.classical.interactive import create_engine
    from medannot.workflows.learning.effort import correction_effort

    image, truth = nuclei_tile()
    engine = create_engine("growcut")
    perfect = correction_effort(image, truth, truth, [1], engine)
    assert (perfect.voxels_changed, perfect.clicks, perfect.dice) == (0, 0, 1.0) and perfect.manual_voxels == int(truth.sum())
    empty = correction_effort(image, np.zeros_like(truth), truth, [1], engine)
    assert empty.voxels_changed == empty.manual_voxels and empty.objects >= 2 and empty.clicks >= empty.objects_corrected >= 1
    assert empty.dice_after_clicks >= 0.9 or empty.objects_failed > 0
    stray = truth.copy()
    stray[:4, -4:] = 1  # a false alarm away from every nucleus
    if truth[:4, -4:].any():
        pytest.fail("the corner of this tile has a nucleus: pick another tile")
    fixed = correction_effort(image, ndi.binary_erosion(stray, iterations=2).astype(np.uint8) | (stray & ~truth.astype(bool)).astype(np.uint8),
                              truth, [1], engine)
    assert fixed.erase_strokes <= 1 and fixed.voxels_changed > 0
    assert correction_effort(image, stray, truth, [1], None).clicks == 0  # no engine: voxels only
    with pytest.raises(InputError, match="outside the label map"):
        correction_effort(image, truth * 3, truth, [1], engine)
    with pytest.raises(InputError, match="shape"):
        correction_effort(image, truth[:10], truth, [1], engine)


def test_case_list_source_maps_values_and_keeps_validation_cases_out(tmp_path):
    from medannot.io import write_image
    from medannot.training.case_list import CaseListSource

    cases = []
    for k in range(3):
        image, truth = nuclei_tile(col=4 + k)
        labels = truth * 7  # a project whose label value is 7
        ip, lp = tmp_path / f"c{k}_img.nii.gz", tmp_path / f"c{k}_lab.nii.gz"
        write_image(image.as_volume(), ip)  # stored as the server stores pictures: one-slice volumes
        write_image(Image(labels[None, ..., None], image.as_volume().geometry, ImageKind.LABEL), lp)
        cases.append({"name": f"c{k}", "image": str(ip), "label": str(lp)})
    src = CaseListSource(cases, patch_size=[32, 32], val_cases=["c1"], label_values=[7], spatial_dims=2)
    assert src.train_names == ["c0", "c2"] and src.val_names == ["c1"]
    patch, label = src.sample(np.random.default_rng(0))
    assert patch.shape == (1, 32, 32) and set(np.unique(label)) <= {0, 1}
    (val,) = src.validation_cases()
    assert val.name == "c1" and val.image.ndim == 2 and set(np.unique(val.truth.array)) == {0, 1}
    with pytest.raises(ConfigError, match="every listed case is a validation case"):
        CaseListSource(cases, [32, 32], val_cases=["c0", "c1", "c2"])
    with pytest.raises(ConfigError, match="not among the listed cases"):
        CaseListSource(cases, [32, 32], val_cases=["nope"])
    bad = CaseListSource(cases, [32, 32], val_cases=["c1"], label_values=[1], spatial_dims=2)
    with pytest.raises(InputError, match=r"case 'c[02]': label values \[7\] are not in the label map \[1\]"):
        bad.sample(np.random.default_rng(0))


def test_learning_settings_defaults_are_documented_values():
    s = LearningSettings()
    assert (s.retrain_every, s.min_cases, s.val_fraction, s.strategy, s.gate.max_label_drop) == (0, 3, 0.2, Strategy.RANDOM, 0.02)


def test_a_round_is_bounded_by_its_time_budget_and_reports_progress(tmp_path):
    """A round whose budget runs out skips its remaining steps, still ships a complete, measured bundle, and says so."""
    from medannot.io import write_image
    from medannot.models.bundle import Bundle
    from medannot.workflows.learning.rounds import LabelledCase, RoundSpec, run_round
    from medannot.workflows.learning.settings import TrainingRecipe

    cases = []
    for k in range(3):
        image, truth = nuclei_tile(col=k)
        ip, lp = tmp_path / f"c{k}_img.nii.gz", tmp_path / f"c{k}_lab.nii.gz"
        write_image(image, ip)
        write_image(image.with_array(truth[None], kind="label"), lp)
        cases.append(LabelledCase(f"c{k}", ip, lp))
    recipe = TrainingRecipe(epochs=2, iterations_per_epoch=400, batch_size=2, channels=[8, 16], num_threads=1, time_budget_s=2.0)
    seen: list[tuple[float, str]] = []
    spec = RoundSpec("budget", "v1", 2, [{"value": 1, "name": "nucleus", "color": "#ff0000"}], cases[:2], cases[2:], (64, 64),
                     tmp_path / "models" / "v1", None, recipe)
    result = run_round(spec, lambda f, m: seen.append((f, m)))
    assert result.budget_hit and 0 < result.steps_done < result.steps_planned == 800
    bundle = Bundle.load(result.bundle)
    assert bundle.spec.metrics["mean_dice"] >= 0.0 and bundle.spec.version == "v1"
    assert not list((tmp_path / "models").glob(".*")), "a checkpoint or staging folder was left behind"
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(m == "validating" for _, m in seen)


def test_a_dataset_of_one_slice_nifti_pictures_is_simulated_in_2d(tmp_path):
    """nnU-Net's 2D datasets store pictures as one-slice NIfTI; the simulation treats them as the 2D images they are,
    as the server does with an uploaded picture (they were simulated as volumes with a 3D network before)."""
    from medannot.io import write_image
    from medannot.workflows.learning.simdata import load_sim_dataset

    image, truth = samples.nuclei_image(), samples.nuclei_instances()
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for k in range(4):
        box = (slice(None), slice(64 * k, 64 * k + 64), slice(0, 64))
        tile = Image(image.array[box], image.geometry, image.kind).as_volume()
        mask = Image((truth.array[box] > 0).astype(np.uint8), truth.geometry, truth.kind).as_volume()
        write_image(tile, tmp_path / "imagesTr" / f"t{k}_0000.nii.gz")
        write_image(mask, tmp_path / "labelsTr" / f"t{k}.nii.gz")
    (tmp_path / "dataset.json").write_text('{"name": "tiles", "channel_names": {"0": "fluo"}, "labels": {"background": 0, "nucleus": 1}, '
                                           '"numTraining": 4, "file_ending": ".nii.gz"}')
    data = load_sim_dataset(tmp_path)
    assert data.spatial_dims == 2 and {c.image.ndim for c in data.cases} == {2} and data.cases[0].truth.shape == (64, 64)
