"""Reader agreement: kappa vs scikit-learn / statsmodels, majority vote and STAPLE vs SimpleITK, pairwise metrics.

Readers are simulated from the bundled real StarDist nuclei mask (125 nuclei,
512x512): each drops a seeded random subset of nuclei, and erodes, dilates or
adds false-positive blobs.

STAPLE tolerance: SimpleITK (ITK ``STAPLEImageFilter``) and ours run the same
fixed-point EM in float64 from the same start (mean of the readers, fixed
prior ``g`` = mean marked fraction x ConfidenceWeight) with the same stopping
rule (every squared change of p and q <= 1e-14). Only the summation order of
the M-step differs (ITK adds voxel by voxel, we add pattern counts), ~1e-13
relative, so sensitivities/specificities agree to 1e-9 and the iteration
counts are equal. Our probability map is float32 (ITK's is float64), so maps
agree to float32 rounding: 1e-7 absolute (values lie in 0..1, eps32/2 = 6e-8).
"""

from __future__ import annotations

import math
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from eval_masks import ellipsoid
from medpy.metric import binary as medpy
from scipy import ndimage
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats import inter_rater

from medannot.errors import InputError
from medannot.evaluation import agreement as A
from medannot.evaluation import staple as S
from medannot.evaluation.metrics import segmentation_metrics, worst_distance

MASK = Path(__file__).resolve().parents[2] / "src" / "medannot" / "data_samples" / "stardist" / "mask2d.tif"


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    return tifffile.imread(MASK)


def _reader(instances: np.ndarray, seed: int, n_drop: int, grow: int = 0, n_false: int = 0) -> np.ndarray:
    """A simulated reader's binary mask: drop nuclei, erode (grow<0) / dilate (grow>0), add blobs."""
    rng = np.random.default_rng(seed)
    ids = np.unique(instances)[1:]
    mask = (instances > 0) & ~np.isin(instances, rng.choice(ids, size=n_drop, replace=False))
    if grow > 0:
        mask = ndimage.binary_dilation(mask, iterations=grow)
    elif grow < 0:
        mask = ndimage.binary_erosion(mask, iterations=-grow)
    for _ in range(n_false):
        c = rng.integers(10, 502, size=2)
        mask |= ellipsoid(mask.shape, c, rng.uniform(2, 6, size=2))
    return mask.astype(np.uint8)


@pytest.fixture(scope="module")
def readers(nuclei) -> list[np.ndarray]:
    return [
        _reader(nuclei, 1, 5, grow=1),
        _reader(nuclei, 2, 12, grow=-1),
        _reader(nuclei, 3, 3, grow=0, n_false=6),
        _reader(nuclei, 4, 20, grow=2),
        _reader(nuclei, 5, 8, grow=0, n_false=2),
    ]


@pytest.fixture(scope="module")
def label_readers(nuclei, readers) -> list[np.ndarray]:
    """Multi-label maps: 1 = small nucleus, 2 = large nucleus (by the true instance area), per reader."""
    areas = np.bincount(nuclei.ravel())
    large = areas[nuclei] > np.median(areas[1:])
    return [np.where(r > 0, np.where(large, 2, 1), 0).astype(np.uint8) for r in readers]


def _sitk_staple(masks, max_iter=10_000, confidence=1.0):
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1.0)
    f.SetMaximumIterations(max_iter)
    f.SetConfidenceWeight(confidence)
    out = f.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks])
    return sitk.GetArrayFromImage(out), np.array(f.GetSensitivity()), np.array(f.GetSpecificity()), f.GetElapsedIterations()


def _assert_staple_equal(ours: S.StapleResult, masks, **kw) -> None:
    prob, sens, spec, elapsed = _sitk_staple(masks, **kw)
    assert ours.probability.dtype == np.float32 and ours.probability.shape == prob.shape
    np.testing.assert_allclose(ours.probability, prob, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.sensitivity, sens, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.specificity, spec, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(ours.consensus, prob >= 0.5)
    assert ours.iterations == elapsed + 1  # ITK reports the 0-based index of its last iteration


# ============================================================================ Cohen's kappa


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_equals_sklearn_image_labels(weights):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 5, 300)
    b = np.where(rng.random(300) < 0.6, a, rng.integers(0, 5, 300))
    ours = A.cohen_kappa(a, b, weights=weights)
    assert ours.kappa == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)
    # Categories nobody used change the weighted kappa (index distances): same as sklearn's labels=.
    labels = [0, 1, 2, 3, 4, 5, 6]
    assert A.cohen_kappa(a, b, labels=labels, weights=weights).kappa == pytest.approx(cohen_kappa_score(a, b, labels=labels, weights=weights), abs=1e-12)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_equals_sklearn_on_voxels(label_readers, weights):
    a, b = label_readers[0], label_readers[3]
    ours = A.cohen_kappa(a, b, weights=weights)
    assert ours.n_items == a.size and ours.categories == (0, 1, 2)
    assert ours.kappa == pytest.approx(cohen_kappa_score(a.ravel(), b.ravel(), weights=weights), abs=1e-12)
    assert 0.5 < ours.kappa < 1.0


def test_cohen_kappa_known_values():
    assert A.cohen_kappa([0, 0, 1, 1], [1, 1, 0, 0]).kappa == -1.0
    k = A.cohen_kappa([0, 1, 0, 1], [0, 1, 0, 1])
    assert k.kappa == 1.0 and not k.degenerate and k.observed == 1.0 and k.expected == 0.5
    assert float(k) == 1.0


def test_cohen_kappa_degenerate_single_category():
    a = np.full(20, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = cohen_kappa_score(a, a, labels=[3])
    assert math.isnan(theirs)  # 0/0: sklearn's NaN (replace_undefined_by=nan), with warnings
    assert any("single label" in str(w.message) for w in caught)
    for weights in (None, "linear", "quadratic"):
        ours = A.cohen_kappa(a, a, weights=weights)
        assert ours.kappa == 1.0 and ours.degenerate and "category 3" in ours.reason
    # Two raters each using one *different* category is not degenerate: kappa 0.
    assert A.cohen_kappa(np.zeros(5, int), np.ones(5, int)).kappa == pytest.approx(cohen_kappa_score(np.zeros(5), np.ones(5)))


def test_cohen_kappa_input_errors():
    with pytest.raises(InputError, match="same items"):
        A.cohen_kappa([0, 1], [0, 1, 1])
    with pytest.raises(InputError, match="weights"):
        A.cohen_kappa([0, 1], [0, 1], weights="cubic")
    with pytest.raises(InputError, match=r"not among labels"):
        A.cohen_kappa([0, 1, 2], [0, 1, 1], labels=[0, 1])
    with pytest.raises(InputError, match="integer"):
        A.cohen_kappa([0.5, 1.0], [0.5, 1.0])
    with pytest.raises(InputError, match="no ratings"):
        A.cohen_kappa([], [])


# ============================================================================ Fleiss' kappa


def _statsmodels_fleiss(ratings: np.ndarray) -> float:
    table, _ = inter_rater.aggregate_raters(ratings)
    return float(inter_rater.fleiss_kappa(table, method="fleiss"))


def test_fleiss_kappa_equals_statsmodels_random_and_textbook():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 200)
    ratings = np.stack([np.where(rng.random(200) < 0.7, truth, rng.integers(0, 4, 200)) for _ in range(6)], axis=1)
    assert A.fleiss_kappa(ratings).kappa == pytest.approx(_statsmodels_fleiss(ratings), abs=1e-12)
    # Fleiss (1971) worked example as on Wikipedia: 10 items, 14 raters, 5 categories, kappa = 0.210.
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])  # fmt: skip
    ratings = np.stack([np.repeat(np.arange(5), row) for row in table])
    ours = A.fleiss_kappa(ratings)
    assert ours.kappa == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)
    assert round(ours.kappa, 3) == 0.210


def test_fleiss_kappa_on_voxels_and_two_raters(label_readers):
    ratings = np.stack([r.ravel() for r in label_readers], axis=1)
    ours = A.fleiss_kappa(ratings)
    assert ours.n_items == label_readers[0].size
    assert ours.kappa == pytest.approx(_statsmodels_fleiss(ratings), abs=1e-12)
    # Fleiss with two raters is Scott's pi, not Cohen's kappa: close, but not equal.
    two = ratings[:, :2]
    assert A.fleiss_kappa(two).kappa == pytest.approx(_statsmodels_fleiss(two), abs=1e-12)
    assert A.fleiss_kappa(two).kappa != pytest.approx(A.cohen_kappa(two[:, 0], two[:, 1]).kappa, abs=1e-9)


def test_fleiss_kappa_degenerate_and_errors():
    ratings = np.full((10, 3), 2)
    table, _ = inter_rater.aggregate_raters(ratings)
    with pytest.warns(RuntimeWarning):
        assert math.isnan(inter_rater.fleiss_kappa(table))
    ours = A.fleiss_kappa(ratings)
    assert ours.kappa == 1.0 and ours.degenerate and ours.expected == 1.0
    with pytest.raises(InputError, match="at least 2 raters"):
        A.fleiss_kappa(np.zeros((5, 1), int))
    with pytest.raises(InputError, match="n_items, n_raters"):
        A.fleiss_kappa(np.zeros(5, int))


# ============================================================================ majority vote


def _sitk_vote(masks, undecided):
    f = sitk.LabelVotingImageFilter()
    f.SetLabelForUndecidedPixels(undecided)
    return sitk.GetArrayFromImage(f.Execute([sitk.GetImageFromArray(m) for m in masks]))


@pytest.mark.parametrize("n", [3, 4, 5])
def test_majority_vote_equals_sitk_label_voting(label_readers, n):
    masks = label_readers[:n]
    ours = A.majority_vote(masks, tie="background")
    np.testing.assert_array_equal(ours, _sitk_vote(masks, 0))
    # "lowest" equals SimpleITK wherever SimpleITK decides; elsewhere it is the smallest tied label.
    lowest = A.majority_vote(masks, tie="lowest")
    theirs = _sitk_vote(masks, 255)
    decided = theirs != 255
    np.testing.assert_array_equal(lowest[decided], theirs[decided])
    if n == 4:
        assert (~decided).sum() > 100  # 2-2 ties exist with four readers


def test_majority_vote_brute_force_3d():
    rng = np.random.default_rng(11)
    masks = [rng.integers(0, 4, (6, 7, 8)).astype(np.int16) for _ in range(4)]
    background = A.majority_vote(masks, tie="background")
    lowest = A.majority_vote(masks, tie="lowest")
    rand = A.majority_vote(masks, tie="random-seeded", seed=5)
    assert background.dtype == np.int16 and background.shape == (6, 7, 8)
    stack = np.stack(masks).reshape(4, -1)
    for v in range(stack.shape[1]):
        counts = Counter(stack[:, v].tolist())
        top = max(counts.values())
        tied = sorted(k for k, c in counts.items() if c == top)
        assert lowest.flat[v] == tied[0]
        assert background.flat[v] == (tied[0] if len(tied) == 1 else 0)
        assert rand.flat[v] in tied


def test_majority_vote_random_ties_seeded_and_uniform():
    a = np.ones((100, 100), np.uint8)
    b = np.full((100, 100), 2, np.uint8)
    r1 = A.majority_vote([a, b], tie="random-seeded", seed=1)
    np.testing.assert_array_equal(r1, A.majority_vote([a, b], tie="random-seeded", seed=1))
    assert not np.array_equal(r1, A.majority_vote([a, b], tie="random-seeded", seed=2))
    assert set(np.unique(r1).tolist()) == {1, 2}
    assert 0.45 < (r1 == 1).mean() < 0.55  # 10,000 fair draws: 5 sigma = 0.025
    three = [a, b, np.full((100, 100), 3, np.uint8)]
    fractions = np.bincount(A.majority_vote(three, tie="random-seeded", seed=3).ravel(), minlength=4)[1:] / a.size
    assert np.all(np.abs(fractions - 1 / 3) < 0.03)


def test_majority_vote_errors():
    a = np.zeros((4, 4), np.uint8)
    with pytest.raises(InputError, match="at least 2"):
        A.majority_vote([a])
    with pytest.raises(InputError, match="same shape"):
        A.majority_vote([a, np.zeros((4, 5), np.uint8)])
    with pytest.raises(InputError, match="tie"):
        A.majority_vote([a, a], tie="highest")
    with pytest.raises(InputError, match="integer or boolean"):
        A.majority_vote([a.astype(float), a])


# ============================================================================ STAPLE


def test_staple_equals_sitk_on_nuclei(readers):
    ours = S.staple(readers, max_iter=10_000)
    assert ours.converged and not ours.degenerate
    _assert_staple_equal(ours, readers)
    # Sanity of the estimates: the eroded reader has the lowest sensitivity, the dilated the lowest specificity.
    assert np.argmin(ours.sensitivity) == 1
    assert np.argmin(ours.specificity) == 3
    assert ours.prior == pytest.approx(np.mean([r.mean() for r in readers]), rel=1e-12)


def test_staple_matches_sitk_with_prior_and_iteration_cap(readers):
    g = float(np.mean([r.mean() for r in readers]))
    _assert_staple_equal(S.staple(readers, prior=0.5 * g, max_iter=10_000), readers, confidence=0.5)
    capped = S.staple(readers, max_iter=3)
    assert capped.iterations == 3 and not capped.converged
    prob, sens, spec, elapsed = _sitk_staple(readers, max_iter=3)
    assert elapsed == 3
    np.testing.assert_allclose(capped.probability, prob, atol=1e-7)
    np.testing.assert_allclose(capped.sensitivity, sens, atol=1e-9)


def test_staple_3d_chunked_equals_unchunked_and_sitk():
    shape = (12, 40, 44)
    base = ellipsoid(shape, (6, 20, 22), (5, 14, 15))
    rng = np.random.default_rng(2)
    masks = [ndimage.binary_dilation(base, iterations=1), ndimage.binary_erosion(base), base ^ (rng.random(shape) < 0.02), base.copy()]
    masks[3][:, :, :5] = True  # a reader who marks a slab touching the border
    whole = S.staple(masks, max_iter=10_000)
    chunked = S.staple(masks, max_iter=10_000, chunk_voxels=999)
    np.testing.assert_array_equal(whole.probability, chunked.probability)
    np.testing.assert_array_equal(whole.sensitivity, chunked.sensitivity)
    _assert_staple_equal(chunked, masks)


def test_staple_many_readers_sparse_patterns(nuclei):
    """More than 20 readers: pattern counting switches from bincount to np.unique; still equal to SimpleITK."""
    crop = nuclei[:128, :128]
    masks = [_reader(crop, 100 + i, n_drop=2, grow=int(i % 3) - 1) for i in range(22)]
    ours = S.staple(masks, max_iter=10_000)
    assert len(ours.sensitivity) == 22
    _assert_staple_equal(ours, masks)


def test_staple_degenerate_inputs():
    z = np.zeros((8, 9), np.uint8)
    empty = S.staple([z, z, z])
    assert empty.degenerate == "all empty" and not empty.consensus.any() and empty.probability.max() == 0.0
    np.testing.assert_array_equal(empty.sensitivity, 1.0)
    full = S.staple([z + 1, z + 1])
    assert full.degenerate == "all full" and full.consensus.all()
    m = z.copy()
    m[2:5, 3:7] = 1
    same = S.staple([m, m, m])
    np.testing.assert_array_equal(same.probability, m.astype(np.float32))
    np.testing.assert_array_equal(same.sensitivity, 1.0)
    np.testing.assert_array_equal(same.specificity, 1.0)
    with pytest.raises(InputError, match="prior"):
        S.staple([m, m], prior=1.0)
    with pytest.raises(InputError, match="at least 2"):
        S.staple([m])


def test_staple_memory_is_a_float32_map_plus_chunks():
    """No (readers, *shape) float64 arrays: peak traced memory below one float64 map of the image."""
    shape = (40, 96, 96)
    base = ellipsoid(shape, (20, 48, 48), (15, 40, 38))
    masks = [np.ascontiguousarray(np.roll(base, s, axis=2)) for s in range(-3, 4)]
    tracemalloc.start()
    try:
        S.staple(masks, chunk_voxels=1 << 15)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = base.size
    assert peak < 5 * n + 8 * (1 << 15) * 4 + (1 << 20)  # float32 + bool outputs, a few chunk-sized temporaries
    assert peak < 8 * n  # one float64 map would already exceed this


def test_staple_labels_one_vs_rest(label_readers):
    res = S.staple_labels(label_readers, max_iter=10_000)
    assert sorted(res.per_label) == [1, 2]
    for value, r in res.per_label.items():
        binary = [(m == value).astype(np.uint8) for m in label_readers]
        _assert_staple_equal(r, binary)
    assert res.consensus.dtype == np.uint8
    for value in (1, 2):
        np.testing.assert_array_equal(res.consensus == value, res.per_label[value].consensus & (res.consensus == value))
    # Labels are disjoint per reader here, so at most one label reaches 0.5 at any voxel of the nuclei.
    either = res.per_label[1].consensus | res.per_label[2].consensus
    np.testing.assert_array_equal(res.consensus > 0, either)


# ============================================================================ pairwise metrics


def test_pairwise_agreement_rows_equal_metrics_and_medpy(label_readers):
    masks = {f"r{i}": m for i, m in enumerate(label_readers[:3])}
    spacing = (0.5, 0.5)
    rows = A.pairwise_agreement(masks, spacing, labels={1: "small", 2: "large"})
    assert len(rows) == 3 * 2
    assert [(r["reader_a"], r["reader_b"]) for r in rows[::2]] == [("r0", "r1"), ("r0", "r2"), ("r1", "r2")]
    assert set(rows[0]) == set(A.AGREEMENT_FIELDS)
    for row in rows:
        a, b = masks[row["reader_a"]] == row["label"], masks[row["reader_b"]] == row["label"]
        expected = segmentation_metrics(a, b, spacing)
        for key in ("dice", "iou", "hd95", "hd95_pooled", "assd", "surface_dice"):
            assert row[key] == expected[key]
        assert row["dice"] == pytest.approx(medpy.dc(a, b), rel=1e-12)
        assert row["hd95_pooled"] == pytest.approx(medpy.hd95(a, b, voxelspacing=spacing), rel=1e-12)
        assert row["label_name"] == {1: "small", 2: "large"}[row["label"]]
        # Symmetric: swapping the readers changes nothing reported.
        swapped = segmentation_metrics(b, a, spacing)
        assert row["hd95"] == swapped["hd95"] and row["assd"] == pytest.approx(swapped["assd"], rel=1e-12)


def test_pairwise_agreement_empty_labels_are_kept_and_summarised():
    a = np.zeros((20, 20), np.uint8)
    a[2:8, 2:8] = 1
    b = a.copy()
    b[12:15, 12:15] = 2  # only reader b drew label 2
    rows = A.pairwise_agreement({"a": a, "b": b, "c": a.copy()}, (1.0, 1.0), labels={1: "organ", 2: "lesion", 3: "never drawn"})
    by = {(r["reader_a"], r["reader_b"], r["label"]): r for r in rows}
    assert by[("a", "b", 2)]["empty"] == "prediction" and by[("a", "b", 2)]["dice"] == 0.0
    assert by[("a", "b", 2)]["hd95"] == worst_distance((20, 20), (1.0, 1.0))
    assert by[("b", "c", 2)]["empty"] == "truth"
    assert by[("a", "c", 2)]["empty"] == "both" and by[("a", "c", 2)]["dice"] == 1.0
    assert all(by[(x, y, 3)]["empty"] == "both" for x, y in (("a", "b"), ("a", "c"), ("b", "c")))
    summary = {s["label"]: s for s in A.agreement_summary(rows)}
    assert summary[1]["mean_dice"] == 1.0 and summary[1]["n_empty"] == 0
    assert summary[2]["n_pairs"] == 3 and summary[2]["n_empty"] == 3
    assert summary[2]["mean_dice"] == pytest.approx(1 / 3)  # the two pairs that disagree count, as 0.0
    assert summary[2]["worst_pair"] == "a|b"
    assert summary[2]["max_hd95"] == worst_distance((20, 20), (1.0, 1.0))


def test_pairwise_agreement_errors_and_default_labels():
    a = np.zeros((6, 6), np.uint8)
    a[1:3, 1:3] = 4
    rows = A.pairwise_agreement({"x": a, "y": a}, (1.0, 1.0))
    assert [r["label"] for r in rows] == [4] and rows[0]["label_name"] == "4"
    with pytest.raises(InputError, match=r"label values \[4\]"):
        A.pairwise_agreement({"x": a, "y": a}, (1.0, 1.0), labels={1: "organ"})
    with pytest.raises(InputError, match="at least 2"):
        A.pairwise_agreement({"x": a}, (1.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        A.pairwise_agreement({"x": a, "y": a}, (1.0, -1.0))
