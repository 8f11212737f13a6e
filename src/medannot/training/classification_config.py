"""Typed configuration of a classification training run (``task: classification``), loaded from YAML or JSON.

A classification config shares the loop settings, card and override rules of :mod:`medannot.training.config`;
it differs in the data (labelled images split by source group), the input rules and the calibration.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medannot.data.task import Task
from medannot.models.classification_spec import ClassifierInput
from medannot.training.config import LoopConfig

__all__ = ["AugmentConfig", "ClassDataConfig", "ClassWeights", "ClassificationConfig"]


class ClassWeights(enum.StrEnum):
    """Cross-entropy class weights: ``balanced`` = N / (K * count_k) over the training samples, or none."""

    BALANCED = "balanced"
    NONE = "none"


class ClassDataConfig(BaseModel):
    """Data source (``folder``, ``csv`` or ``modality-samples``) and the validation split by group."""

    model_config = ConfigDict(extra="forbid")
    source: str
    params: dict[str, Any] = Field(default_factory=dict)
    validation_groups: list[str] | None = None  # whole source groups held out for validation
    validation_fraction: float = Field(0.25, ge=0.0, lt=1.0)  # per class, when no groups are named


class AugmentConfig(BaseModel):
    """Random augmentation of each training sample (MONAI array transforms), after :mod:`classifier_input`."""

    model_config = ConfigDict(extra="forbid")
    flip: bool = True
    rotate90: bool = True
    zoom: tuple[float, float] = (0.8, 1.2)
    contrast_gamma: tuple[float, float] = (0.6, 1.6)
    noise_std: float = Field(0.03, ge=0.0)


class ClassificationConfig(LoopConfig):
    """Everything a classification run needs; unknown keys are errors.

    The loop settings (optimiser, epochs, ``iterations_per_epoch``, checkpoints, resume, transfer learning) are
    those of :class:`~medannot.training.config.LoopConfig`. By default the last weights are shipped
    (``select_best: false``) and there is no early stopping, so the validation groups stay an honest held-out test.

    Attributes:
        classes: Class names in network output order (each must appear in the data).
        input: Input size (voxels) and intensity percentiles (:class:`ClassifierInput`).
        class_weights: ``balanced`` (default) or ``none``.
        calibrate: Fit a temperature on the validation data and store it in the bundle.
    """

    task: Literal[Task.CLASSIFICATION] = Task.CLASSIFICATION
    classes: list[str]
    input: ClassifierInput
    data: ClassDataConfig
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    class_weights: ClassWeights = ClassWeights.BALANCED
    calibrate: bool = True
    epochs: int = Field(20, ge=1)
    iterations_per_epoch: int = Field(20, ge=1)
    batch_size: int = Field(16, ge=1)
    select_best: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ClassificationConfig:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must list at least two distinct names, got {self.classes}")
        if len(self.input.input_size) != self.spatial_dims:
            raise ValueError(f"input.input_size must have {self.spatial_dims} values, got {self.input.input_size}")
        return self
