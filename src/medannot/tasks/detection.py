"""The detection task: boxes (voxel and world mm, score, class) and no label map.

- config: :class:`~medannot.training.config.TrainConfig` with a ``detection`` section (anchors, thresholds, NMS);
- networks: those registered with task ``detection`` (MONAI RetinaNet);
- training: :class:`~medannot.training.detection_trainer.DetectionTraining` in the one loop;
- predictor: :class:`BoxDetector` (:class:`~medannot.inference.detector.Detector`: sliding window, box selection, NMS);
- case writer: :func:`medannot.annotations.writer.write_case` (``annotation.json`` boxes, ``boxes.coco.json`` in 2D,
  box overlays);
- evaluation: :func:`medannot.evaluation.boxes_eval.evaluate_boxes` (COCO AP, AR, FROC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from medannot.annotations.boxes import boxes_from_detections
from medannot.annotations.results import DetectionResult
from medannot.annotations.schema import Provenance
from medannot.data import Image, Task
from medannot.errors import ConfigError
from medannot.evaluation.boxes_eval import BoxEvaluation, evaluate_boxes
from medannot.inference.detector import Detector
from medannot.models.bundle import Bundle
from medannot.tasks.base import EvaluateOptions, PredictOptions
from medannot.tasks.registry import register_task
from medannot.tasks.segmentation import CaseFolderWriter, bundle_label_map, engine_parameters, model_provenance
from medannot.training.config import LoopConfig, TrainConfig
from medannot.training.detection_trainer import DetectionTraining

__all__ = ["BoxDetector", "DetectionTask"]


class BoxDetector(CaseFolderWriter):
    """A detection bundle and :class:`~medannot.inference.detector.Detector`.

    Args:
        bundle: A detection bundle.
        options: Only ``progress`` applies.

    Raises:
        ConfigError: TTA, uncertainty, MC dropout or calibration asked for (they mean nothing for boxes here).
    """

    task = Task.DETECTION

    def __init__(self, bundle: Bundle, options: PredictOptions) -> None:
        if options.tta:
            raise ConfigError("--tta is not available for detection models; run without it")
        if options.uncertainty or options.mc_dropout:
            raise ConfigError("--uncertainty and --mc-dropout are for segmentation models; a detection model's boxes carry their scores")
        if options.calibrated is not None:
            raise ConfigError("calibration is a classifier's option; a detection model has none")
        self.detector = Detector(bundle, progress=options.progress, engine=options.engine)
        self.bundle = bundle
        self.label_map = bundle_label_map(bundle)

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        """Bundle, detection (thresholds, NMS), inference and preprocessing settings."""
        spec = self.bundle.spec
        return model_provenance(self.bundle, {
            "detection": spec.detection.model_dump(mode="json") if spec.detection else {},
            "inference": spec.inference.model_dump(),
            "preprocessing": spec.preprocessing,
            **engine_parameters(self.detector.engine),
        }, input_info)

    def predict(self, image: Image) -> DetectionResult:
        """The boxes above the bundle's score threshold, by descending score."""
        found = self.detector.detect(image)
        boxes = boxes_from_detections(found.boxes, found.scores, found.labels, image.geometry, self.label_map)
        threshold = self.bundle.spec.detection.overlay_threshold if self.bundle.spec.detection else 0.0
        return DetectionResult(boxes=boxes, overlay_threshold=threshold, label_map=self.label_map, timings_s=dict(found.timings))


@register_task
class DetectionTask:
    """Boxes per image (see the module docstring)."""

    task: ClassVar[Task] = Task.DETECTION
    description: ClassVar[str] = "boxes with scores and classes"
    config_model: ClassVar[type[LoopConfig]] = TrainConfig
    has_background: ClassVar[bool] = True
    writes_label_maps: ClassVar[bool] = False

    def training(self, config: LoopConfig) -> DetectionTraining:
        """Detection hooks for the one loop."""
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"a detection run needs a TrainConfig with a detection section, got {type(config).__name__}")
        return DetectionTraining(config)

    def predictor(self, bundle: Bundle, options: PredictOptions) -> BoxDetector:
        """:class:`BoxDetector` of ``bundle``."""
        return BoxDetector(bundle, options)

    def evaluate(self, pred: Path, truth: Path, out: Path, options: EvaluateOptions) -> BoxEvaluation:
        """COCO AP / AR and FROC of the boxes in ``annotation.json`` files against a COCO file or instance masks."""
        return evaluate_boxes(pred, truth, out)
