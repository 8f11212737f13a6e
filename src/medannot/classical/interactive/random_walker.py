"""Random walker (Grady 2006) from clicks and scribbles: scikit-image's ``random_walker`` on the crop.

Object seeds are the positive clicks (small balls) and scribbles; background seeds the negative ones,
the outside of boxes and the crop's sides inside the image. Each unknown voxel takes the label whose
random walk reaches it first with the higher probability; edge weights ``exp(-beta * gradient^2)`` on
the crop normalised to its 1st..99th percentiles. Solved by conjugate gradients with a Jacobi
preconditioner (``mode="cg_j"``); the crop's size is bounded (:class:`CropSettings.max_voxels`, 500k by
default), so memory is too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from medannot.classical.interactive.base import CropEngine, CropSettings
from medannot.classical.interactive.roi import BACKGROUND, OBJECT
from medannot.errors import ConfigError

__all__ = ["RandomWalkerEngine"]


@dataclass
class RandomWalkerEngine(CropEngine):
    """scikit-image random walker behind the promptable interface.

    Args:
        beta: Edge-weight sharpness (scikit-image's ``beta``; larger = edges matter more). 500 was best of
            30 / 130 / 500 on 40 TRAIN objects (``scripts/promptable_eval.py --split train``).
        tol: Conjugate-gradient tolerance.
    """

    name = "random-walker"
    crop: CropSettings = field(default_factory=lambda: CropSettings(max_voxels=500_000))
    beta: float = 500.0
    tol: float = 1e-3

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.tol <= 0:
            raise ConfigError("random-walker: beta and tol must be > 0")

    def _segment_crop(self, values: np.ndarray, seeds: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        from skimage.segmentation import random_walker

        if not (seeds == OBJECT).any():
            return np.zeros(values.shape, bool)
        if not (seeds == BACKGROUND).any():
            return np.ones(values.shape, bool)
        rel = np.asarray(spacing, float) / min(spacing)
        with warnings.catch_warnings():
            # conjugate gradients stop at ``tol``, so probabilities may overshoot [0, 1] slightly; only the
            # label with the larger probability is used, which that does not change
            warnings.filterwarnings("ignore", message="The probability range is outside", category=UserWarning)
            labels = random_walker(values, seeds.astype(np.int32), beta=self.beta, mode="cg_j", tol=self.tol,
                                   spacing=tuple(rel), return_full_prob=False)
        return labels == OBJECT
