"""Instance matching, lesion-wise metrics, panoptic quality and FROC.

Peers: panoptic quality against a straightforward loop implementation of Kirillov et al. 2019;
FROC against MONAI's CAMELYON16 code (``monai.metrics.froc``), whose hit rule (a point inside a
truth region) is our ``overlap`` criterion with threshold 0 when each prediction is one voxel.
"""

from __future__ import annotations

import numpy as np
import pytest
from monai.metrics.froc import compute_fp_tp_probs_nd, compute_froc_curve_data, compute_froc_score

from medannot.errors import ConfigError, InputError
from medannot.evaluation.instances import froc, froc_from_hits, lesion_metrics, match_instances, panoptic_quality, to_instances


def _random_instances(rng: np.random.Generator, shape: tuple[int, ...], n: int, max_r: int = 5) -> np.ndarray:
    """Instance map of n random boxes (later ones overwrite earlier ones), ids 1..n (some may vanish)."""
    out = np.zeros(shape, dtype=np.int32)
    for i in range(1, n + 1):
        lo = [int(rng.integers(0, s - 2)) for s in shape]
        hi = [min(s, lo_ + int(rng.integers(1, max_r + 1))) for s, lo_ in zip(shape, lo)]
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] = i
    return out


def _perturb(rng: np.random.Generator, inst: np.ndarray) -> np.ndarray:
    """A prediction: each instance shifted by up to one voxel, some dropped, some spurious added."""
    out = np.zeros_like(inst)
    for i in np.unique(inst[inst > 0]):
        if rng.uniform() < 0.2:
            continue
        out[np.roll(inst == i, int(rng.integers(-1, 2)), axis=int(rng.integers(0, inst.ndim)))] = i + 100
    spurious = _random_instances(rng, inst.shape, 3, 3)
    out[(spurious > 0) & (out == 0)] = spurious[(spurious > 0) & (out == 0)] + 200
    return out


def _pq_reference(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Kirillov et al. 2019, literally: pairs with IoU > 0.5 are matches."""
    p_ids = [int(i) for i in np.unique(pred) if i]
    t_ids = [int(i) for i in np.unique(truth) if i]
    ious = []
    matched_p, matched_t = set(), set()
    for p in p_ids:
        for t in t_ids:
            a, b = pred == p, truth == t
            iou = np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
            if iou > 0.5:
                ious.append(iou)
                matched_p.add(p)
                matched_t.add(t)
    tp = len(ious)
    fp, fn = len(p_ids) - len(matched_p), len(t_ids) - len(matched_t)
    den = tp + fp / 2 + fn / 2
    return {"pq": sum(ious) / den, "sq": sum(ious) / tp if tp else 0.0, "rq": tp / den, "tp": tp, "fp": fp, "fn": fn}


@pytest.mark.parametrize("seed", range(6))
def test_panoptic_quality_equals_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (24, 24, 12) if seed % 2 else (48, 48)
    truth = _random_instances(rng, shape, 8, 8)
    pred = _perturb(rng, truth)
    ours, ref = panoptic_quality(pred, truth), _pq_reference(pred, truth)
    for key in ("pq", "sq", "rq"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-12)
    assert (ours["tp"], ours["fp"], ours["fn"]) == (ref["tp"], ref["fp"], ref["fn"])
    assert ours["tp"] > 0 and ours["empty"] == ""


def test_panoptic_quality_empty_rules() -> None:
    z = np.zeros((8, 8), dtype=np.int32)
    one = z.copy()
    one[2:4, 2:4] = 1
    assert panoptic_quality(z, z) == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 0, "fp": 0, "fn": 0, "empty": "both"}
    assert panoptic_quality(z, one)["pq"] == 0.0 and panoptic_quality(z, one)["empty"] == "prediction"
    assert panoptic_quality(one, z)["fp"] == 1 and panoptic_quality(one, z)["empty"] == "truth"
    assert panoptic_quality(one, one)["pq"] == 1.0


def test_match_unique_above_half_and_counts() -> None:
    truth = np.zeros((10, 20), dtype=np.int32)
    truth[1:5, 1:5] = 3
    truth[1:5, 10:14] = 7
    truth[7:9, 17:19] = 9  # missed
    pred = np.zeros_like(truth)
    pred[1:5, 2:6] = 1  # IoU 12/20 = 0.6 with 3
    pred[1:5, 10:12] = 2  # IoU 0.5 with 7: not strictly above 0.5
    pred[8:10, 1:3] = 4  # false positive
    m = match_instances(pred, truth)
    assert m.pairs == [(1, 3, pytest.approx(0.6))]
    assert m.unmatched_pred == [2, 4] and m.unmatched_truth == [7, 9]
    assert (m.tp, m.fp, m.fn) == (1, 2, 2)
    m = match_instances(pred, truth, threshold=0.49)
    assert (m.tp, m.fp, m.fn) == (2, 1, 1)
    # overlap criterion: fraction of the truth covered (pred 2 covers half of truth 7)
    m = match_instances(pred, truth, criterion="overlap", threshold=0.0)
    assert [(p, t) for p, t, _ in m.pairs] == [(1, 3), (2, 7)]
    with pytest.raises(ConfigError):
        match_instances(pred, truth, criterion="dice")
    with pytest.raises(InputError, match="same shape"):
        match_instances(pred, truth[:, :5])


def test_low_threshold_uses_optimal_assignment() -> None:
    """Greedy best-IoU-first would match P-A (0.4) only; the optimal assignment matches P-B and Q-A."""
    truth = np.zeros((1, 30), dtype=np.int32)
    truth[0, 0:10] = 1  # A
    truth[0, 10:20] = 2  # B
    pred = np.zeros_like(truth)
    pred[0, 4:15] = 5  # P: IoU with A 6/15 = 0.4, with B 5/16 = 0.3125
    pred[0, 0:3] = 6  # Q: IoU with A 3/10 = 0.3
    m = match_instances(pred, truth, threshold=0.2)
    assert sorted((p, t) for p, t, _ in m.pairs) == [(5, 2), (6, 1)]
    assert sum(v for _, _, v in m.pairs) == pytest.approx(5 / 16 + 3 / 10)
    # above 0.5 nothing qualifies; at 0.35 only P-A does
    assert match_instances(pred, truth, threshold=0.35).pairs == [(5, 1, pytest.approx(0.4))]


def test_binary_mask_split_with_full_connectivity() -> None:
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # corner neighbours: one lesion with 26-connectivity
    mask[4, 4, 4] = True
    inst = to_instances(mask)
    assert len(np.unique(inst[inst > 0])) == 2
    assert len(np.unique(to_instances(mask, connectivity=6))) - 1 == 3
    m2 = np.zeros((5, 5), dtype=np.uint8)
    m2[0, 0] = m2[1, 1] = 1  # 8-connected in 2D
    assert to_instances(m2).max() == 1


def test_lesion_metrics_values_and_sizes() -> None:
    truth = np.zeros((20, 20, 10), dtype=bool)
    truth[2:6, 2:6, 2:6] = True
    truth[10:14, 10:14, 2:6] = True
    truth[17, 17, 8] = True  # single voxel lesion
    pred = np.zeros_like(truth)
    pred[2:6, 2:6, 3:7] = True  # IoU 48/80 = 0.6
    pred[0:2, 15:18, 0:2] = True  # false positive, 12 voxels
    r = lesion_metrics(pred, truth, spacing=(1.0, 1.0, 2.0))
    assert (r["tp"], r["fp"], r["fn"], r["n_truth"], r["n_pred"]) == (1, 1, 2, 3, 2)
    assert r["lesion_sensitivity"] == pytest.approx(1 / 3) and r["lesion_precision"] == 0.5
    assert r["lesion_f1"] == pytest.approx(2 / (2 + 1 + 2)) and r["false_positives"] == 1
    assert r["mean_iou"] == pytest.approx(0.6) and r["empty"] == ""
    assert sorted(x["size_mm"] for x in r["truth_lesions"]) == [2.0, 128.0, 128.0]
    # min_size_mm drops the single-voxel truth (2 mm^3) and nothing else
    r = lesion_metrics(pred, truth, spacing=(1.0, 1.0, 2.0), min_size_mm=3.0)
    assert (r["n_truth"], r["fn"]) == (2, 1)
    # any-overlap detection
    r = lesion_metrics(pred, truth, spacing=1.0, criterion="overlap", threshold=0.0)
    assert r["tp"] == 1 and r["truth_lesions"][0]["matched"] is not None


def test_lesion_metrics_scores_and_empty_rules() -> None:
    z = np.zeros((6, 6), dtype=np.int32)
    one = z.copy()
    one[1:3, 1:3] = 4
    both = lesion_metrics(z, z, (1.0, 1.0))
    assert both["empty"] == "both" and both["lesion_sensitivity"] == both["lesion_precision"] == both["lesion_f1"] == 1.0
    none_pred = lesion_metrics(z, one > 0, (1.0, 1.0))
    assert none_pred["empty"] == "prediction" and none_pred["lesion_precision"] == 0.0 and none_pred["lesion_sensitivity"] == 0.0
    none_truth = lesion_metrics(one > 0, z, (1.0, 1.0))
    assert none_truth["empty"] == "truth" and none_truth["false_positives"] == 1 and none_truth["lesion_sensitivity"] == 0.0
    pred = one.copy()
    pred[4, 4] = 9
    r = lesion_metrics(pred, one, (0.5, 0.5), scores={4: 0.9, 9: 0.1})
    assert {x["id"]: x["score"] for x in r["pred_lesions"]} == {4: 0.9, 9: 0.1}
    with pytest.raises(InputError, match="missing"):
        lesion_metrics(pred, one, (0.5, 0.5), scores={4: 0.9})
    with pytest.raises(InputError, match="spacing"):
        lesion_metrics(pred, one, (0.5, 0.5, 1.0))
    with pytest.raises(InputError, match="bool or integer"):
        lesion_metrics(pred.astype(float), one, (1.0, 1.0))


def _point_cases(seed: int) -> list[tuple[np.ndarray, np.ndarray, dict[int, float], np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(6):
        truth = _random_instances(rng, (40, 40), int(rng.integers(0, 6)), 8)
        n = int(rng.integers(0, 9))
        coords = rng.integers(0, 40, (n, 2))
        coords = np.unique(coords, axis=0)  # one voxel per predicted instance
        rng.shuffle(coords)
        pred = np.zeros_like(truth)
        pred[coords[:, 0], coords[:, 1]] = np.arange(1, len(coords) + 1)
        probs = rng.integers(1, 64, len(coords)) / 64.0  # exact in float32 (MONAI stores float32), with ties
        cases.append((pred, truth, {i + 1: float(p) for i, p in enumerate(probs)}, coords, probs))
    return cases


@pytest.mark.parametrize("seed", range(4))
def test_froc_equals_monai_camelyon(seed: int) -> None:
    cases = _point_cases(seed)
    fps, tps, n_targets = [], [], 0
    for _, truth, _, coords, probs in cases:
        # MONAI counts labels 1..max; relabel truth ids to be contiguous.
        ids = np.unique(truth[truth > 0])
        lut = np.zeros(int(truth.max()) + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        fp, tp, n = compute_fp_tp_probs_nd(probs, coords, lut[truth])
        fps.append(fp)
        tps.append(tp)
        n_targets += n
    fp_all, tp_all = np.concatenate(fps), np.concatenate(tps)
    assert np.any(tp_all == 0) and n_targets > 0  # MONAI's curve skips its lowest threshold: needs a missed lesion
    rates = (0.125, 0.25, 0.5, 1, 2, 4, 8)
    fpi, sens = compute_froc_curve_data(fp_all, tp_all, n_targets, len(cases))
    ours = froc([(p, t, s) for p, t, s, _, _ in cases], fp_rates=rates, criterion="overlap", threshold=0.0)
    np.testing.assert_allclose(ours["fp_per_case"], fpi[::-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["sensitivity"], sens[::-1], rtol=0, atol=1e-12)
    assert ours["score"] == pytest.approx(float(compute_froc_score(fpi, sens, rates)), abs=1e-12)
    assert ours["n_truth"] == n_targets


def test_froc_hand_example_and_empty() -> None:
    # 2 cases, 4 lesions; hits at 0.9, 0.6, 0.3; false positives at 0.8, 0.5, 0.5, 0.2
    r = froc_from_hits([0.9, 0.6, 0.3], [0.8, 0.5, 0.5, 0.2], n_truth=4, n_cases=2, fp_rates=(0.5, 1, 2, 4))
    assert r["thresholds"] == [float("inf"), 0.9, 0.8, 0.6, 0.5, 0.3, 0.2]
    assert r["sensitivity"] == [0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75]
    assert r["fp_per_case"] == [0, 0, 0.5, 0.5, 1.5, 1.5, 2.0]
    # at 0.5 FP/case the polyline passes (0.5, 0.25) then (0.5, 0.5): the last point counts
    assert r["sensitivity_at"] == {0.5: 0.5, 1.0: 0.5, 2.0: 0.75, 4.0: 0.75}
    assert r["score"] == pytest.approx((0.5 + 0.5 + 0.75 + 0.75) / 4)
    r = froc_from_hits([], [0.3], n_truth=0, n_cases=1)
    assert r["score"] is None and "undefined" in r
    with pytest.raises(InputError):
        froc([])
