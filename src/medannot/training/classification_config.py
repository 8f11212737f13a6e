"""Typed configuration of a classification training run (``task: classification``), loaded from YAML or JSON.

A classification config shares the optimiser, card and override rules of :mod:`medannot.training.config`;
it differs in the data (labelled images split by source group), the input rules and the calibration.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medannot.errors import ConfigError
from medannot.inference.classifier_input import ClassifierInput
from medannot.models.bundle import NetworkRef, check_spatial_dims
from medannot.training.config import CardConfig, OptimizerConfig, _set_dotted, config_data, format_validation_error, read_config_file

__all__ = ["ClassificationConfig", "load_classification_config", "config_task"]


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


class ClassificationConfig(BaseModel):
    """Everything a classification run needs; unknown keys are errors.

    Attributes:
        classes: Class names in network output order (each must appear in the data).
        input: Input size (voxels) and intensity percentiles (:class:`ClassifierInput`).
        class_weights: ``balanced`` (default) or ``none``.
        calibrate: Fit a temperature on the validation data and store it in the bundle.
        steps_per_epoch: Optimiser steps per epoch (batches drawn with replacement, each class equally often
            when ``balanced_sampling``).
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str = "0.1.0"
    task: str = "classification"
    spatial_dims: int
    in_channels: int = Field(1, ge=1)
    classes: list[str]
    network: NetworkRef
    input: ClassifierInput
    data: ClassDataConfig
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    class_weights: ClassWeights = ClassWeights.BALANCED
    calibrate: bool = True
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    epochs: int = Field(20, ge=1)
    steps_per_epoch: int = Field(20, ge=1)
    batch_size: int = Field(16, ge=1)
    seed: int = 0
    num_threads: int = Field(2, ge=1)
    out: Path
    weights_half: bool = False
    card: CardConfig = Field(default_factory=CardConfig)

    _dims = field_validator("spatial_dims")(check_spatial_dims)

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        if v != "classification":
            raise ValueError(f"a classification config needs task 'classification', got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ClassificationConfig":
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must list at least two distinct names, got {self.classes}")
        if len(self.input.input_size) != self.spatial_dims:
            raise ValueError(f"input.input_size must have {self.spatial_dims} values, got {self.input.input_size}")
        return self

    def resolved(self) -> dict[str, Any]:
        """The full config as a JSON-ready dict (saved into the bundle)."""
        return self.model_dump(mode="json")


def config_task(source: Any) -> str:
    """The ``task`` a training config names (``segmentation`` when it names none), without validating the rest."""
    if isinstance(source, BaseModel):
        return str(getattr(source, "task", "segmentation"))
    if isinstance(source, dict):
        return str(source.get("task", "segmentation"))
    return str(read_config_file(Path(source)).get("task", "segmentation"))


def load_classification_config(source: str | Path | dict[str, Any] | ClassificationConfig,
                               overrides: dict[str, Any] | None = None) -> ClassificationConfig:
    """Load and validate a classification config (YAML/JSON file, dict or config), with dotted overrides.

    Raises:
        ConfigError: Unreadable file or invalid fields (each named).
    """
    data, path = config_data(source)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return ClassificationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid classification config: {format_validation_error(exc)}", path) from None
