"""The segmentation task: a label map on the input's own grid, from a trained bundle or a classical method.

- config: :class:`~medannot.training.config.TrainConfig` (patches from a registered data source);
- networks: those registered with task ``segmentation`` (``medannot.models.list_networks("segmentation")``);
- training: :class:`~medannot.training.trainer.SegmentationTraining` in the one loop;
- predictor: :class:`BundleSegmenter` (sliding window, TTA, post-processing, instances, optional uncertainty)
  or :class:`ClassicalSegmenter` (thresholds, edges, region growing: no training);
- case writer: :func:`medannot.annotations.writer.write_case` (labels, instances, overlays, boxes, annotation.json);
- evaluation: :func:`medannot.evaluation.evaluate_paths` (Dice, IoU, HD95, ASSD, surface Dice, lesions).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medannot import classical
from medannot.annotations.labelmap import LabelMap
from medannot.annotations.results import DetectionResult, ExtraWriter, Result, SegmentationResult
from medannot.annotations.schema import Annotation, Provenance
from medannot.annotations.writer import write_case
from medannot.data import Image, Task
from medannot.errors import ConfigError, ModelError
from medannot.evaluation.results import EvaluationResult
from medannot.evaluation.runner import evaluate_paths
from medannot.explain.segmentation import segmentation_uncertainty, uncertainty_writer
from medannot.inference.engines import Engine, OnnxNetwork
from medannot.inference.predictor import Predictor
from medannot.models.bundle import Bundle
from medannot.models.classification import has_dropout
from medannot.tasks.base import EvaluateOptions, PredictOptions
from medannot.tasks.registry import register_task
from medannot.training.config import LoopConfig, TrainConfig
from medannot.training.trainer import SegmentationTraining

__all__ = ["BundleSegmenter", "ClassicalSegmenter", "SegmentationTask", "bundle_label_map"]


def bundle_label_map(bundle: Bundle) -> LabelMap:
    """The bundle's label map with its names and colours (the default palette where it gives none)."""
    return LabelMap.parse({k: {"name": name, "color": list(bundle.colors[k])} for k, name in bundle.labels.items()})


def model_provenance(bundle: Bundle, parameters: dict[str, Any], input_info: dict[str, Any]) -> Provenance:
    """Provenance of a bundle's output: name, version, weights sha256, task, settings and the bundle's folder."""
    spec = bundle.spec
    return Provenance(source="model", name=spec.name, version=spec.version, sha256=spec.sha256 or "", task=spec.task,
                      parameters={**parameters, "bundle_path": str(bundle.path) if bundle.path else ""}, input=input_info)


def engine_parameters(engine: Engine) -> dict[str, str]:
    """``{"engine": name}`` for provenance when the network ran outside PyTorch (nothing for the default)."""
    return {} if engine is Engine.PYTORCH else {"engine": engine.value}


class CaseFolderWriter:
    """Writes segmentation and detection results with :func:`medannot.annotations.writer.write_case`; no batch files."""

    def write_case(self, out_dir: Path, case_name: str, image: Image, result: Result, provenance: Provenance,
                   extra_files: Sequence[ExtraWriter] = ()) -> Annotation:
        """``out_dir/case_name/`` (labels, instances, overlays, boxes, ``annotation.json``)."""
        if not isinstance(result, (SegmentationResult, DetectionResult)):
            raise ModelError(f"case {case_name!r}: a {type(result).__name__} has no label map or boxes to write")
        return write_case(out_dir, case_name, image, result, provenance, extra_files)

    def finish(self, out_dir: Path, annotations: Sequence[tuple[str, Annotation]]) -> list[Path]:
        """Nothing beyond the case folders."""
        return []


class BundleSegmenter(CaseFolderWriter):
    """A segmentation bundle and :class:`~medannot.inference.Predictor`.

    Args:
        bundle: A segmentation bundle.
        options: ``tta``, ``progress``, ``uncertainty`` and ``mc_dropout`` apply.

    Raises:
        ModelError: ``mc_dropout`` asked of a network without dropout, or fewer than 2 passes (before anything is written).
        ConfigError: ``calibrated`` (a classifier's option).
    """

    task = Task.SEGMENTATION

    def __init__(self, bundle: Bundle, options: PredictOptions) -> None:
        if options.calibrated is not None:
            raise ConfigError("calibration is a classifier's option; a segmentation model has none")
        self.predictor = Predictor(bundle, tta=options.tta, progress=options.progress, engine=options.engine)
        self.bundle = bundle
        self.label_map = bundle_label_map(bundle)
        self.uncertainty, self.mc_dropout = options.uncertainty or options.mc_dropout > 0, int(options.mc_dropout)
        if self.mc_dropout:
            if self.predictor.engine is not Engine.PYTORCH:
                raise ModelError("--mc-dropout runs the network with dropout on, which an ONNX export has not; use --engine pytorch")
            if self.mc_dropout < 2:
                raise ModelError(f"--mc-dropout needs at least 2 passes, got {self.mc_dropout}")
            if isinstance(self.predictor.network, OnnxNetwork) or not has_dropout(self.predictor.network):
                raise ModelError(f"model {bundle.name!r} has no dropout layer, so Monte-Carlo dropout would repeat one answer; "
                                 "use --uncertainty alone (softmax entropy)")

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        """Bundle, TTA, inference, pre- and post-processing settings."""
        spec = self.bundle.spec
        return model_provenance(self.bundle, {
            "tta": self.predictor.tta,
            "inference": spec.inference.model_dump(),
            "preprocessing": spec.preprocessing,
            "postprocessing": spec.postprocessing,
            "instances": spec.instances,
            **engine_parameters(self.predictor.engine),
        }, input_info)

    def predict(self, image: Image) -> SegmentationResult:
        """Labels (and instances, scores, uncertainty when asked) on ``image``'s grid."""
        prediction = self.predictor.predict(image, keep_probabilities=True)
        extra: list[ExtraWriter] = []
        explanations: dict[str, Any] = {}
        if self.uncertainty:
            maps, summary = segmentation_uncertainty(self.predictor, image, prediction, self.mc_dropout)
            extra, explanations = [uncertainty_writer(image, maps, focus=prediction.labels.array[0] > 0)], {"uncertainty": summary}
        probs = prediction.probabilities
        if probs is not None and not probs.same_grid(image):
            probs = None  # scores only where the network saw the input's own grid (no second resampling pass)
        return SegmentationResult(labels=prediction.labels, instance_maps=prediction.instances or None,
                                  probabilities=None if probs is None else probs.array, label_map=self.label_map,
                                  timings_s=dict(prediction.timings or {}), explanations=explanations, extra_files=extra)


class ClassicalSegmenter(CaseFolderWriter):
    """A classical method of :mod:`medannot.classical` (no training) as a segmentation predictor.

    Args:
        method: Method name (``medannot methods`` lists them).
        params: Keyword parameters of the method (e.g. ``seed``, ``classes``).
        progress: Show the method's long steps on a terminal.

    Raises:
        InputError: Unknown method (the valid names are listed).
    """

    task = Task.SEGMENTATION

    def __init__(self, method: str, params: dict[str, Any] | None = None, progress: bool = False) -> None:
        self.method = classical.ClassicalMethod.parse(method).value
        self.params = dict(params or {})
        self.progress = progress
        self.label_map = LabelMap()

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        """Method name and parameters."""
        return Provenance(source="classical", name=str(self.method), parameters=self.params, input=input_info, task=self.task)

    def predict(self, image: Image) -> SegmentationResult:
        """The method's labels, named ``<method>_<value>``."""
        start = time.perf_counter()
        labels = classical.run_method(self.method, image, progress=self.progress, **self.params)
        values = [int(v) for v in np.unique(labels.array) if v != 0]
        return SegmentationResult(labels=labels, label_map=LabelMap.parse({v: f"{self.method}_{v}" for v in values}),
                                  timings_s={"method": time.perf_counter() - start})


@register_task
class SegmentationTask:
    """A label map per image (see the module docstring)."""

    task: ClassVar[Task] = Task.SEGMENTATION
    description: ClassVar[str] = "label map on the image's own grid (and instances of chosen labels)"
    config_model: ClassVar[type[LoopConfig]] = TrainConfig
    has_background: ClassVar[bool] = True
    writes_label_maps: ClassVar[bool] = True

    def training(self, config: LoopConfig) -> SegmentationTraining:
        """Segmentation hooks for the one loop."""
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"a segmentation run needs a TrainConfig, got {type(config).__name__}")
        return SegmentationTraining(config)

    def predictor(self, bundle: Bundle, options: PredictOptions) -> BundleSegmenter:
        """:class:`BundleSegmenter` of ``bundle``."""
        return BundleSegmenter(bundle, options)

    def evaluate(self, pred: Path, truth: Path, out: Path, options: EvaluateOptions) -> EvaluationResult:
        """Overlap, distance and lesion metrics of label maps (:func:`medannot.evaluation.evaluate_paths`)."""
        return evaluate_paths(pred, truth, out, labels=options.labels, resample=options.resample, tolerance_mm=options.tolerance_mm,
                              max_workers=options.workers, lesions=options.lesions, match=options.match,
                              match_threshold=options.match_threshold, manifest=options.manifest,
                              missing_as_empty=options.missing_as_empty, include_absent=options.include_absent)
