"""The contract of a task plug-in and of the predictors it makes.

A task (:class:`TaskPlugin`) supplies, for one :class:`~medannot.data.Task`:

- ``config_model``: the pydantic model of its training config (a :class:`~medannot.training.config.LoopConfig`);
- its networks: those registered for it in :mod:`medannot.models.registry` (``list_networks(task)``);
- ``training(config)``: its :class:`~medannot.training.loop.TrainingHooks` for the one training loop;
- ``predictor(bundle, options)``: a :class:`CasePredictor` whose ``predict(image)`` returns the task's typed result
  (:mod:`medannot.annotations.results`) and whose ``write_case`` writes its case folder;
- ``evaluate(pred, truth, out, options)``: its evaluation, a typed result with ``summary_line()``, ``to_dict()`` and
  ``to_json()`` (:class:`medannot.evaluation.results.TaskEvaluation`).

Everything that differs by task asks the registry (:mod:`medannot.tasks.registry`); nothing compares task names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.results import ExtraWriter, Result
from medannot.annotations.schema import Annotation, Provenance
from medannot.data import Image, Task
from medannot.evaluation.results import TaskEvaluation as Evaluation
from medannot.models.bundle import Bundle
from medannot.training.config import LoopConfig
from medannot.training.loop import TrainingHooks

__all__ = ["CasePredictor", "EvaluateOptions", "Evaluation", "PredictOptions", "TaskPlugin"]


@dataclass(frozen=True)
class PredictOptions:
    """Options of ``medannot annotate --model``; a task refuses those that mean nothing for it.

    Attributes:
        tta: Flip test-time augmentation (None: the bundle's default).
        progress: Show the sliding-window progress bar.
        uncertainty: Also write the softmax-entropy map and its summary.
        mc_dropout: Monte-Carlo dropout passes for the uncertainty (0 = none).
        explain: Write saliency maps (classification).
        calibrated: Use the bundle's temperature (None: when it has one; classification).
        engine: Runtime of the network: ``pytorch`` (default), ``onnxruntime`` (the bundle's ``model.onnx``) or
            ``onnxruntime-int8`` (``model.int8.onnx``); see :mod:`medannot.inference.engines`.
    """

    tta: bool | None = None
    progress: bool = False
    uncertainty: bool = False
    mc_dropout: int = 0
    explain: bool = True
    calibrated: bool | None = None
    engine: str = "pytorch"


@dataclass(frozen=True)
class EvaluateOptions:
    """Options of ``medannot evaluate`` (each task uses those that apply to it).

    Attributes:
        labels: Label value -> name (segmentation).
        resample: Resample predictions onto the truth grid when the grids differ.
        tolerance_mm: Surface Dice tolerance (mm).
        lesions: Also lesion-wise metrics.
        match: Lesion matching rule (``iou`` or ``overlap``) and its threshold (``match_threshold``).
        manifest: CSV with a ``case`` column and columns to break results down by.
        workers: Worker processes (None: all cores).
        missing_as_empty: Score truth cases without a prediction as empty predictions (segmentation; else not scored).
        include_absent: Count labels absent from both masks in the means as perfect (segmentation; else left out).
    """

    labels: dict[int, str] | None = None
    resample: bool = False
    tolerance_mm: float = 1.0
    lesions: bool = False
    match: str = "iou"
    match_threshold: float = 0.5
    manifest: Path | None = None
    workers: int | None = None
    missing_as_empty: bool = False
    include_absent: bool = False


class CasePredictor(Protocol):
    """A trained bundle or a classical method, ready to annotate images one at a time.

    Attributes:
        task: The task it serves.
        label_map: Names and colours of its output values (or classes).
    """

    task: Task
    label_map: LabelMap

    def predict(self, image: Image) -> Result:
        """The typed result of one image."""

    def provenance(self, input_info: dict[str, Any]) -> Provenance:
        """What made the result (name, version, weights hash, settings) for ``input_info`` (path, source, UIDs)."""

    def write_case(self, out_dir: Path, case_name: str, image: Image, result: Result, provenance: Provenance,
                   extra_files: Sequence[ExtraWriter] = ()) -> Annotation:
        """Write ``out_dir/case_name/`` atomically and return what ``annotation.json`` holds."""

    def finish(self, out_dir: Path, annotations: Sequence[tuple[str, Annotation]]) -> list[Path]:
        """Batch-level outputs after every case (e.g. ``classifications.csv``); the paths written."""


class TaskPlugin(Protocol):
    """One registered task (see the module docstring).

    Attributes:
        task: Its name.
        description: One line for listings.
        config_model: Its training config model.
        has_background: Label value 0 is background (segmentation, detection), not a class (classification).
        writes_label_maps: Its case folders hold a label map (so DICOM SEG / RTSTRUCT can be derived from them).
    """

    task: ClassVar[Task]
    description: ClassVar[str]
    config_model: ClassVar[type[LoopConfig]]
    has_background: ClassVar[bool]
    writes_label_maps: ClassVar[bool]

    def training(self, config: LoopConfig) -> TrainingHooks:
        """The training hooks of a validated config (its ``config_model``)."""

    def predictor(self, bundle: Bundle, options: PredictOptions) -> CasePredictor:
        """A predictor of one of its bundles; options that mean nothing for the task are refused (ConfigError)."""

    def evaluate(self, pred: Path, truth: Path, out: Path, options: EvaluateOptions) -> Evaluation:
        """Score predictions against truth and write the report files under ``out``."""
