"""Fixed mask pairs shared by the evaluation tests (seeded, small, fast). Unique module name on purpose."""

from __future__ import annotations

import numpy as np
import pytest


def ellipsoid(shape, centre, radii) -> np.ndarray:
    """Boolean ellipsoid (or ellipse in 2D) with centre and radii in voxels."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r = sum(((g - c) / rad) ** 2 for g, c, rad in zip(grids, centre, radii))
    return r <= 1.0


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    rng = np.random.default_rng(1234)
    pairs: dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]] = {}

    shape = (18, 40, 36)
    truth = ellipsoid(shape, (9, 20, 18), (6, 12, 10))
    pred = ellipsoid(shape, (10, 18, 19), (5.5, 13, 9))
    pred[8:11, 30:34, 5:9] = True  # a false-positive island
    pairs["anisotropic_3d"] = (pred, truth, (2.0, 0.8, 0.8))

    truth = np.zeros((12, 20, 16), bool)
    truth[:6, :10, :] = True  # touches three image borders
    pred = np.zeros_like(truth)
    pred[:7, 2:12, 1:] = True
    pairs["border_3d"] = (pred, truth, (2.0, 0.8, 0.8))

    truth = np.zeros((9, 11, 13), bool)
    truth[4, 5, 6] = True
    pred = np.zeros_like(truth)
    pred[1, 9, 2] = True
    pairs["single_voxels_3d"] = (pred, truth, (2.0, 0.8, 0.8))

    truth = rng.random((14, 22, 20)) < 0.04
    pred = rng.random((14, 22, 20)) < 0.05
    pairs["speckle_3d"] = (pred, truth, (1.5, 0.7, 0.9))

    truth = np.zeros((16, 32, 32), bool)
    pred = np.zeros_like(truth)
    for _ in range(7):
        c = rng.integers((3, 4, 4), (13, 28, 28))
        r = rng.uniform(1.5, 3.5, size=3)
        truth |= ellipsoid(truth.shape, c, r)
        pred |= ellipsoid(truth.shape, c + rng.integers(-1, 2, size=3), r * rng.uniform(0.8, 1.2, size=3))
    pairs["many_components_3d"] = (pred, truth, (2.0, 0.8, 0.8))

    truth = ellipsoid((60, 50), (30, 24), (18, 14))
    pred = ellipsoid((60, 50), (28, 27), (20, 12)) | ellipsoid((60, 50), (5, 45), (4, 4))  # island at the border
    pairs["ellipse_2d"] = (pred, truth, (0.5, 1.3))

    truth = rng.random((40, 40)) < 0.06
    pred = truth.copy()
    pred[rng.random((40, 40)) < 0.03] ^= True
    pairs["speckle_2d"] = (pred, truth, (0.9, 0.9))
    return pairs


PAIRS = _pairs()


@pytest.fixture(params=sorted(PAIRS))
def mask_pair(request):
    """(name, pred, truth, spacing) for every fixed pair."""
    pred, truth, spacing = PAIRS[request.param]
    return request.param, pred, truth, spacing


# ----------------------------------------------------------------------------- added for the peer and agreement tests
# (kept out of PAIRS on purpose: the tests over PAIRS expect two non-empty masks)


def _extra_pairs() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    pairs: dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]] = {}
    shape = (20, 64, 64)
    truth = ellipsoid(shape, (5, 10, 10), (3, 6, 5))
    pred = ellipsoid(shape, (15, 54, 52), (3.5, 5, 6))  # no overlap, ~60 mm away
    pairs["large_offset_3d"] = (pred, truth, (2.0, 0.8, 0.8))

    truth = np.zeros((30, 40), bool)
    truth[:12, :9] = True  # corner object touching two borders
    truth[20:, 30:] = True  # and the opposite corner
    pred = np.zeros_like(truth)
    pred[:10, :11] = True
    pred[22:, 28:] = True
    pairs["border_corners_2d"] = (pred, truth, (0.7, 1.1))
    return pairs


EXTRA_PAIRS = _extra_pairs()


def _empty_pairs() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    shape, spacing = (10, 16, 14), (2.0, 0.8, 0.8)
    obj = ellipsoid(shape, (5, 8, 7), (3, 5, 4))
    zero = np.zeros(shape, bool)
    return {
        "empty_prediction_3d": (zero, obj, spacing),
        "empty_truth_3d": (obj, zero.copy(), spacing),
        "both_empty_3d": (zero.copy(), zero.copy(), spacing),
    }


EMPTY_PAIRS = _empty_pairs()
