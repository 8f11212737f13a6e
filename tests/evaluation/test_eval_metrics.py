"""Metric functions against MedPy 0.5.2 and MONAI 1.6.1 on fixed mask pairs, plus the empty rules.

Where definitions match we require agreement within 1e-6 relative. MONAI
returns float32 distances (hence 1e-6, not 1e-12); MedPy computes in float64.
Surface extraction is matched on purpose: ours and MedPy's ``connectivity=1``
and MONAI's ``get_mask_edges`` with ``use_subvoxels=False`` all erode with
the face-connected structuring element and treat outside-the-image as
background; distances are exact Euclidean with spacing (MONAI
``distance_metric="euclidean"``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_masks import PAIRS
from medpy.metric import binary as medpy
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)

from medannot.errors import InputError
from medannot.evaluation import metrics as M

REL = 1e-6

# MONAI 1.6.1 itself passes its own deprecated ``always_return_as_numpy`` argument
# to get_mask_edges, which raises a FutureWarning inside every surface metric.
monai_warning = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy.*:FutureWarning")


def _t(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask[None, None].astype(np.float32))


def _close(ours: float, theirs: float) -> None:
    assert ours == pytest.approx(float(theirs), rel=REL, abs=1e-9)


# ----------------------------------------------------------------------------- MedPy


def test_overlap_metrics_match_medpy(mask_pair):
    _, pred, truth, _ = mask_pair
    _close(M.dice(pred, truth), medpy.dc(pred, truth))
    _close(M.iou(pred, truth), medpy.jc(pred, truth))
    _close(M.precision(pred, truth), medpy.precision(pred, truth))
    _close(M.recall(pred, truth), medpy.recall(pred, truth))
    _close(M.specificity(pred, truth), medpy.specificity(pred, truth))


def test_surface_metrics_match_medpy(mask_pair):
    _, pred, truth, spacing = mask_pair
    out = M.segmentation_metrics(pred, truth, spacing)
    _close(out["hausdorff"], medpy.hd(pred, truth, voxelspacing=spacing, connectivity=1))
    # MedPy's hd95 pools both directions before the percentile: our hd95_pooled.
    _close(out["hd95_pooled"], medpy.hd95(pred, truth, voxelspacing=spacing, connectivity=1))
    # MedPy 0.5's assd is the mean of the pooled distances (0.4 averaged the directed means).
    _close(out["assd"], medpy.assd(pred, truth, voxelspacing=spacing, connectivity=1))
    # Each directed set equals MedPy's directed average surface distance.
    sd = M.surface_distances(pred, truth, spacing)
    _close(sd.pred_to_truth.mean(), medpy.asd(pred, truth, voxelspacing=spacing, connectivity=1))
    _close(sd.truth_to_pred.mean(), medpy.asd(truth, pred, voxelspacing=spacing, connectivity=1))


# ----------------------------------------------------------------------------- MONAI


@monai_warning
def test_metrics_match_monai(mask_pair):
    _, pred, truth, spacing = mask_pair
    out = M.segmentation_metrics(pred, truth, spacing, tolerance_mm=1.0)
    P, T = _t(pred), _t(truth)
    common = dict(include_background=True, distance_metric="euclidean", spacing=list(spacing))
    _close(out["dice"], compute_dice(P, T, include_background=True).item())
    # MONAI's percentile HD (directed=False) is the larger of the two directed 95th percentiles: our hd95.
    _close(out["hd95"], compute_hausdorff_distance(P, T, percentile=95, directed=False, **common).item())
    _close(out["hausdorff"], compute_hausdorff_distance(P, T, directed=False, **common).item())
    _close(out["assd"], compute_average_surface_distance(P, T, symmetric=True, **common).item())
    nsd = compute_surface_dice(P, T, [1.0], use_subvoxels=False, **common).item()
    _close(out["surface_dice"], nsd)
    for tol in (0.5, 2.5):  # away from attainable distances, so float32 vs float64 cannot flip a comparison
        nsd = compute_surface_dice(P, T, [tol], use_subvoxels=False, **common).item()
        _close(M.surface_dice(pred, truth, spacing, tolerance_mm=tol), nsd)


def test_hd95_definitions_differ_where_expected():
    """MONAI's hd95 (max of directed percentiles) >= MedPy's pooled hd95; they differ on asymmetric errors."""
    pred, truth, spacing = PAIRS["ellipse_2d"]
    sd = M.surface_distances(pred, truth, spacing)
    assert sd.hd95() > sd.hd95_pooled()
    expected = max(np.percentile(sd.pred_to_truth, 95), np.percentile(sd.truth_to_pred, 95))
    assert sd.hd95() == pytest.approx(expected, rel=1e-12)
    for p, t, s in PAIRS.values():
        d = M.surface_distances(p, t, s)
        assert d.hd95() >= d.hd95_pooled() - 1e-12


# ----------------------------------------------------------------------------- crop is exact


def test_crop_changes_no_distance(mask_pair):
    _, pred, truth, spacing = mask_pair
    cropped = M.surface_distances(pred, truth, spacing, crop=True)
    full = M.surface_distances(pred, truth, spacing, crop=False)
    np.testing.assert_array_equal(cropped.pred_to_truth, full.pred_to_truth)
    np.testing.assert_array_equal(cropped.truth_to_pred, full.truth_to_pred)


def test_crop_exact_for_small_objects_in_a_large_image():
    """Objects far from the border and at the border of a large image: crop box is tiny, distances unchanged."""
    shape = (30, 64, 64)
    truth = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    truth[10:14, 20:30, 20:26] = True
    pred[11:15, 22:31, 19:25] = True
    pred[0, 63, 0:3] = True  # far-away island in a corner
    spacing = (2.0, 0.8, 0.8)
    c = M.surface_distances(pred, truth, spacing)
    f = M.surface_distances(pred, truth, spacing, crop=False)
    np.testing.assert_array_equal(c.pred_to_truth, f.pred_to_truth)
    np.testing.assert_array_equal(c.truth_to_pred, f.truth_to_pred)
    assert c.hausdorff() == pytest.approx(medpy.hd(pred, truth, voxelspacing=spacing))


# ----------------------------------------------------------------------------- hand-computed values


def test_known_values_3d_anisotropic():
    truth = np.zeros((5, 5, 5), bool)
    truth[2, 2, 2] = True
    pred = np.zeros_like(truth)
    pred[4, 2, 3] = True
    spacing = (2.0, 0.8, 0.8)
    d = math.hypot(2 * 2.0, 1 * 0.8)
    out = M.segmentation_metrics(pred, truth, spacing)
    for key in ("hausdorff", "hd95", "hd95_pooled", "assd"):
        assert out[key] == pytest.approx(d, rel=1e-12)
    assert out["dice"] == 0.0 and out["surface_dice"] == 0.0
    assert out["truth_volume"] == pytest.approx(2.0 * 0.8 * 0.8)
    assert out["empty"] == ""


def test_identical_masks_are_perfect():
    pred, _, spacing = PAIRS["anisotropic_3d"]
    out = M.segmentation_metrics(pred, pred.copy(), spacing)
    assert out["dice"] == out["iou"] == out["precision"] == out["recall"] == out["surface_dice"] == 1.0
    assert out["hausdorff"] == out["hd95"] == out["hd95_pooled"] == out["assd"] == 0.0
    assert out["volume_difference"] == 0.0


def test_volumes_2d_in_mm2_and_signed_difference():
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 px
    pred = np.zeros_like(truth)
    pred[2:7, 2:6] = True  # 20 px
    out = M.segmentation_metrics(pred, truth, (0.5, 2.0))
    assert out["truth_volume"] == pytest.approx(16.0)
    assert out["pred_volume"] == pytest.approx(20.0)
    assert out["volume_difference"] == pytest.approx(4.0)
    assert M.volume_difference(pred, truth, (0.5, 2.0)) == pytest.approx(4.0)


# ----------------------------------------------------------------------------- empty rules


@pytest.mark.parametrize("ndim", [2, 3])
def test_both_empty(ndim):
    z = np.zeros((6,) * ndim, bool)
    out = M.segmentation_metrics(z, z, (1.0,) * ndim)
    assert out["empty"] == "both"
    for key in ("dice", "iou", "precision", "recall", "specificity", "surface_dice"):
        assert out[key] == 1.0, key
    for key in ("hausdorff", "hd95", "hd95_pooled", "assd", "volume_difference", "truth_volume", "pred_volume"):
        assert out[key] == 0.0, key


@pytest.mark.parametrize("which", ["truth", "prediction"])
def test_one_empty_is_finite_worst_case_and_flagged(which):
    shape, spacing = (8, 10, 12), (2.0, 0.8, 0.8)
    mask = np.zeros(shape, bool)
    mask[2:5, 3:6, 4:8] = True
    zero = np.zeros(shape, bool)
    pred, truth = (mask, zero) if which == "truth" else (zero, mask)
    out = M.segmentation_metrics(pred, truth, spacing)
    worst = math.sqrt((8 * 2.0) ** 2 + (10 * 0.8) ** 2 + (12 * 0.8) ** 2)
    assert out["empty"] == which
    for key in ("hausdorff", "hd95", "hd95_pooled", "assd"):
        assert out[key] == pytest.approx(worst, rel=1e-12), key
        assert math.isfinite(out[key])
    for key in ("dice", "iou", "precision", "recall", "surface_dice"):
        assert out[key] == 0.0, key
    # The worst case is larger than any real distance inside the image.
    corner = np.zeros(shape, bool)
    corner[0, 0, 0] = True
    far = np.zeros(shape, bool)
    far[-1, -1, -1] = True
    assert M.hausdorff(corner, far, spacing) < worst


@monai_warning
def test_monai_returns_nan_where_we_return_a_flagged_worst_case():
    """MONAI gives NaN for an empty prediction (and warns); averages that skip NaN then flatter the model."""
    truth = np.zeros((8, 8, 8), bool)
    truth[2:5, 2:5, 2:5] = True
    pred = np.zeros_like(truth)
    with pytest.warns(UserWarning, match="all 0"):
        theirs = compute_hausdorff_distance(_t(pred), _t(truth), include_background=True, percentile=95).item()
    ours = M.hd95(pred, truth, (1.0, 1.0, 1.0))
    assert math.isnan(theirs) or math.isinf(theirs)
    assert math.isfinite(ours) and ours == M.worst_distance(truth.shape, (1.0, 1.0, 1.0))


def test_medpy_cannot_do_empty_masks_we_can():
    z = np.zeros((5, 5), bool)
    m = z.copy()
    m[2, 2] = True
    with pytest.raises(RuntimeError):
        medpy.hd95(z, m)
    assert M.hd95_pooled(z, m, (1.0, 1.0)) == M.worst_distance((5, 5), (1.0, 1.0))


# ----------------------------------------------------------------------------- input errors


def test_input_errors():
    a = np.zeros((4, 4), bool)
    with pytest.raises(InputError, match="same shape"):
        M.dice(a, np.zeros((4, 5), bool))
    with pytest.raises(InputError, match="2D or 3D"):
        M.dice(np.zeros(4, bool), np.zeros(4, bool))
    with pytest.raises(InputError, match="spacing"):
        M.hd95(a, a, (1.0, -1.0))
    with pytest.raises(InputError, match="spacing"):
        M.hd95(a, a, (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="tolerance"):
        M.surface_dice(a, a, (1.0, 1.0), tolerance_mm=float("nan"))


def test_integer_masks_count_nonzero_as_foreground():
    pred, truth, spacing = PAIRS["anisotropic_3d"]
    a = M.segmentation_metrics(pred.astype(np.uint8) * 3, truth.astype(np.int16), spacing)
    b = M.segmentation_metrics(pred, truth, spacing)
    assert a == b
