"""Annotating with a detection bundle: boxes (voxel and world mm, score, label name), no label map.

:class:`medannot.annotate.ModelAnnotator` hands detection bundles to :class:`DetectionAnnotator`, so
``medannot annotate IMG --model nuclei-detect`` writes ``annotation.json`` with boxes,
``boxes.coco.json`` (2D) and ``overlay_boxes*.png`` through the same batch path as segmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medannot.annotate import Labelled
from medannot.annotations import LabelMap, Provenance
from medannot.annotations.boxes import boxes_from_detections
from medannot.data import Image
from medannot.errors import ConfigError

__all__ = ["DetectionAnnotator"]


class DetectionAnnotator:
    """Annotator backed by a detection bundle and :class:`medannot.inference.detector.Detector`.

    Args:
        model: Bundled model name or bundle folder (``task: detection``).
        tta: Must be None or False: flip TTA is not defined for boxes here.
        progress: Show the sliding-window progress bar.

    Raises:
        ConfigError: If TTA is asked for.
    """

    def __init__(self, model: str | Path, tta: bool | None = None, progress: bool = False) -> None:
        from medannot.inference.detector import Detector

        if tta:
            raise ConfigError("--tta is not available for detection models; run without it")
        self.detector = Detector.from_bundle(model, progress=progress)
        self.bundle = self.detector.bundle
        self.label_map = LabelMap.parse({k: v.model_dump() for k, v in self.bundle.spec.labels.items()})

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        spec = self.bundle.spec
        return Provenance(
            source="model",
            name=spec.name,
            version=spec.version,
            sha256=spec.sha256 or "",
            parameters={
                "task": "detection",
                "detection": spec.detection.model_dump(mode="json") if spec.detection else {},
                "inference": spec.inference.model_dump(),
                "preprocessing": spec.preprocessing,
                "bundle_path": str(self.bundle.path) if self.bundle.path else "",
            },
            input=input_info,
        )

    def __call__(self, image: Image) -> Labelled:
        found = self.detector.detect(image)
        boxes = boxes_from_detections(found.boxes, found.scores, found.labels, image.geometry, self.label_map)
        threshold = self.bundle.spec.detection.overlay_threshold if self.bundle.spec.detection else 0.0
        return Labelled(None, timings_s=dict(found.timings), boxes=boxes, overlay_threshold=threshold)
