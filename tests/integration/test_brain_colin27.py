"""brain-mri on a real head it has never seen: Colin27, against its hand-edited brain mask.

Colin27 ("ch2", Debian ``mricron-data``) is a single-subject T1 with skull, scalp, face and neck;
``ch2better`` is the same head with everything but brain tissue removed by hand (0.5 mm). The head
is re-acquired on other grids (thick slices, other storage orientations, oblique, 2 mm) and the
mask is resampled onto each. Issue #2 asks for a brain-region Dice of at least 0.85 on brains the
model has never seen, at other resolutions and orientations. ``make test`` installs mricron-data
(scripts/system_deps.txt); without it these tests fail with the install command.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medannot import samples
from medannot.evaluation import dice
from medannot.inference import Predictor
from medannot.transforms.spatial import resample_to_grid

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MIN_BRAIN_DICE = 0.85

#: spacing (mm) or None for the native 1 mm RAS file, storage axcodes, oblique rotation (deg)
GRIDS = {
    "native-1mm-RAS": (None, "RAS", (0, 0, 0)),
    "axial-1x1x4mm-LPS": ((1.0, 1.0, 4.0), "LPS", (0, 0, 0)),
    "sagittal-1.2mm-ASL": ((1.2, 1.2, 1.2), "ASL", (0, 0, 0)),
    "oblique15-1.5mm-LPS": ((1.5, 1.5, 1.5), "LPS", (15, 0, 10)),
}


@pytest.fixture(scope="module")
def colin27():
    torch.set_num_threads(2)
    return samples.colin27_head(), samples.colin27_brain_mask(), Predictor.from_bundle("brain-mri")


@pytest.mark.parametrize("grid", list(GRIDS))
def test_brain_region_dice_on_colin27(colin27, grid: str) -> None:
    head, mask, predictor = colin27
    spacing, axcodes, rotation = GRIDS[grid]
    image = head if spacing is None else samples.reacquire(head, spacing, axcodes, rotation)
    truth = resample_to_grid(mask, image.geometry, image.spatial_shape, order=0).array[0] > 0
    pred = predictor.predict(image).labels
    assert pred.same_grid(image)
    brain = pred.array[0] > 0
    score = dice(brain, truth)
    assert score >= MIN_BRAIN_DICE, f"{grid}: brain Dice {score:.3f} < {MIN_BRAIN_DICE}"
    # Both tissues are found, white matter inside the brain mask.
    wm = pred.array[0] == 2
    assert wm.sum() > 0.2 * truth.sum()
    assert np.mean(truth[wm]) > 0.97


def test_reacquire_keeps_world_positions(colin27) -> None:
    # A re-acquired head puts the same anatomy at the same world point: the mask resampled onto
    # the new grid and back overlaps itself almost perfectly (nearest neighbour, 1.5 mm oblique).
    head, mask, _ = colin27
    grid = samples.reacquire(head, (1.5, 1.5, 1.5), "LPS", (15, 0, 10))
    assert grid.geometry.axcodes() != head.geometry.axcodes()
    on_grid = resample_to_grid(mask, grid.geometry, grid.spatial_shape, order=0)
    back = resample_to_grid(on_grid, head.geometry, head.spatial_shape, order=0).array[0] > 0
    direct = resample_to_grid(mask, head.geometry, head.spatial_shape, order=0).array[0] > 0
    assert dice(back, direct) > 0.93
