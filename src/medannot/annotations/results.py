"""What a predictor returns for one image: one typed result per task.

Every result carries its label map (names and colours of the values it uses), the seconds per stage, the
``explanations`` block of ``annotation.json`` and extra writers (e.g. uncertainty maps) that the case writer
calls inside the case's staging folder. The task registry (:mod:`medannot.tasks`) maps each task to its result
and to the writer of its case folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.schema import Box, Classification
from medannot.data import Image

__all__ = ["ClassificationResult", "DetectionResult", "ExtraWriter", "Result", "SegmentationResult"]

#: Writes more files into a case's staging folder and returns ``{key: file name}`` for ``annotation.json``'s ``files``.
ExtraWriter = Callable[[Path], dict[str, str]]


@dataclass(kw_only=True)
class Result:
    """What every task's result holds.

    Attributes:
        label_map: Names and colours of the values the result uses.
        timings_s: Seconds per stage (preprocess, network, ..., total).
        explanations: ``annotation.json`` ``explanations`` (uncertainty or saliency summaries).
        extra_files: More writers called in the case's staging folder (maps, overlays).
    """

    label_map: LabelMap
    timings_s: dict[str, float] = field(default_factory=dict)
    explanations: dict[str, Any] = field(default_factory=dict)
    extra_files: list[ExtraWriter] = field(default_factory=list)


@dataclass(kw_only=True)
class SegmentationResult(Result):
    """A label map on the input's own grid (segmentation, classical methods, promptable segmentation).

    Attributes:
        labels: Label image (unsigned integers) on the input image's grid.
        instance_maps: Label value -> instance ids (int, 1..N) on the same grid, for labels split into instances.
        probabilities: ``(K, *spatial)`` float32 model probabilities on the labels' grid (instance scores), or None.
    """

    labels: Image
    instance_maps: dict[int, np.ndarray] | None = None
    probabilities: np.ndarray | None = None


@dataclass(kw_only=True)
class DetectionResult(Result):
    """Boxes found in the input (voxel and world mm, score, class).

    Attributes:
        boxes: The boxes, on the input image's grid.
        overlay_threshold: Boxes scoring below this are not drawn on overlays (all are written to the JSON files).
    """

    boxes: list[Box]
    overlay_threshold: float = 0.0


@dataclass(kw_only=True)
class ClassificationResult(Result):
    """One class for the whole image, with explanation maps.

    Attributes:
        classification: The class, its probabilities and calibration.
        maps: Explanation maps (float32 in [0, 1]) on the input's own grid, by name (``gradcam``, ``occlusion``).
    """

    classification: Classification
    maps: dict[str, np.ndarray] = field(default_factory=dict)
