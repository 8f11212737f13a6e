"""Typed training configuration (pydantic), loaded from YAML or JSON.

Errors name the file and the field (e.g. ``configs/nuclei.yaml: loss: Input should be
'dice', 'ce', ...``). The resolved config is saved with every run and into the bundle.
"""

from __future__ import annotations

import copy
import enum
import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medannot.data.task import Task
from medannot.errors import ConfigError
from medannot.models.bundle import LabelSpec, NetworkRef, check_label_keys, check_spatial_dims, check_task_sections
from medannot.models.detection_spec import DetectionSpec

__all__ = ["FreezeMode", "InitConfig", "LoopConfig", "LossName", "TrainConfig", "config_data", "config_task", "format_validation_error",
           "load_config", "validate_config"]


class LossName(enum.StrEnum):
    """Training losses (MONAI implementations)."""

    DICE = "dice"
    CE = "ce"
    DICE_CE = "dice_ce"
    FOCAL = "focal"
    DICE_FOCAL = "dice_focal"


class LRSchedule(enum.StrEnum):
    """Learning-rate schedules over all optimiser steps of the run."""

    CONSTANT = "constant"
    COSINE = "cosine"  # half cosine from lr down to 0
    POLY = "poly"  # nnU-Net's (1 - t)^0.9


class OptimizerConfig(BaseModel):
    """AdamW settings and the learning-rate schedule.

    The schedule is a pure function of the step number (see :func:`lr_at`), so a resumed
    run continues on exactly the same curve.
    """

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    schedule: LRSchedule = LRSchedule.CONSTANT
    warmup_steps: int = Field(0, ge=0)


def lr_at(opt: OptimizerConfig, step: int, total_steps: int) -> float:
    """Learning rate at optimiser step ``step`` (0-based) of ``total_steps``: linear warm-up, then the schedule."""
    if opt.warmup_steps and step < opt.warmup_steps:
        return opt.lr * (step + 1) / opt.warmup_steps
    span = max(1, total_steps - opt.warmup_steps)
    t = min(1.0, max(0.0, (step - opt.warmup_steps) / span))
    if opt.schedule is LRSchedule.COSINE:
        return opt.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if opt.schedule is LRSchedule.POLY:
        return opt.lr * (1.0 - t) ** 0.9
    return opt.lr


class DataConfig(BaseModel):
    """The registered data source (see :mod:`medannot.training.sources`) and its parameters."""

    model_config = ConfigDict(extra="forbid")
    source: str
    params: dict[str, Any] = Field(default_factory=dict)


class InferenceConfig(BaseModel):
    """Sliding-window settings stored in the bundle; ``patch_size`` defaults to the training patch."""

    model_config = ConfigDict(extra="forbid")
    patch_size: list[int] | None = None
    overlap: float = Field(0.25, ge=0.0, lt=1.0)
    sw_batch_size: int = Field(1, ge=1)
    tta_flips: bool = False


class CardConfig(BaseModel):
    """Free text for the model card."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    training_data: str = ""
    licence: str = ""
    intended_use: str = ""
    limitations: str = ""
    after_training: str = ""  # commands that complete the card after training (e.g. an evaluation on real data)


class FreezeMode(enum.StrEnum):
    """Which weights taken from a parent bundle stay fixed while training starts.

    ``none``: every weight trains; ``loaded``: every weight copied from the parent is frozen, so only the layers
    that did not fit (a new head for other labels) train, until ``unfreeze_epoch``.
    """

    NONE = "none"
    LOADED = "loaded"


class InitConfig(BaseModel):
    """Transfer learning: start from another bundle's weights.

    Every tensor of the parent whose name and shape fit the new network is copied; the others (e.g. the output
    layer when the labels differ) keep their fresh initialisation. The model card records the parent's name,
    version and weights sha256, and how many tensors were copied.

    Attributes:
        bundle: Parent bundle: a bundled model name or a bundle folder.
        freeze: ``none``, ``loaded`` (see :class:`FreezeMode`), or a list of parameter-name prefixes to freeze
            (e.g. ``["model.0", "model.1.submodule.0"]`` for the first levels of a MONAI UNet encoder).
        unfreeze_epoch: From this epoch on (1-based) the frozen weights train too; None keeps them frozen.
        inflate: Start a 3D network from a 2D parent of the same architecture: its 2D kernels are repeated along
            depth and scaled (:mod:`medannot.training.inflate`); a parent that is already 3D is copied as usual.
    """

    model_config = ConfigDict(extra="forbid")
    bundle: str
    freeze: FreezeMode | list[str] = FreezeMode.NONE
    unfreeze_epoch: int | None = Field(None, ge=1)
    inflate: bool = False


class LoopConfig(BaseModel):
    """What the one training loop (:mod:`medannot.training.loop`) needs, shared by every task's config.

    Attributes:
        iterations_per_epoch: Optimiser steps per epoch.
        val_every: Validate every this many epochs (and after the last).
        early_stopping_patience: Stop after this many validations without a better score (None = never).
        select_best: Ship the weights of the best validation (True), or the last weights (False: the validation data
            then stays an honest held-out test of what is shipped).
        num_threads: ``torch.set_num_threads`` for the run.
        out: Bundle folder written at the end (atomically: a killed run leaves the previous bundle in place).
        log_dir: TensorBoard folder and the checkpoint's home (None = no TensorBoard; the checkpoint then lives
            beside ``out`` as ``.<out>.checkpoint.pt``).
        resume: Continue from the checkpoint if there is one.
        weights_half: Store the bundle's weights as float16 (half the size; loaded back as float32).
        init: Start from another bundle's weights (transfer learning).
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str = "0.1.0"
    task: Task = Task.SEGMENTATION
    spatial_dims: int
    in_channels: int = Field(1, ge=1)
    network: NetworkRef
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    epochs: int = Field(10, ge=1)
    iterations_per_epoch: int = Field(50, ge=1)
    batch_size: int = Field(4, ge=1)
    val_every: int = Field(1, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    select_best: bool = True
    seed: int = 0
    num_threads: int = Field(2, ge=1)
    out: Path
    log_dir: Path | None = None
    resume: bool = False
    weights_half: bool = False
    init: InitConfig | None = None
    card: CardConfig = Field(default_factory=CardConfig)

    _dims = field_validator("spatial_dims")(check_spatial_dims)

    def resolved(self) -> dict[str, Any]:
        """The full config as a JSON-ready dict (saved with the run and into the bundle)."""
        return self.model_dump(mode="json")


class TrainConfig(LoopConfig):
    """A segmentation or detection run (patches from a registered data source); unknown keys are errors.

    Attributes:
        patch_size: Training patch size in voxels (one value per spatial axis).
        labels: Label map keyed '0'..'K-1' (background first).
        detection: Task ``detection``: anchors, thresholds, matcher, sampler, how boxes come from label patches.
    """

    labels: dict[str, LabelSpec]
    loss: LossName = LossName.DICE_CE
    patch_size: list[int]
    data: DataConfig
    preprocessing: list[dict[str, Any]] = Field(default_factory=list)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    postprocessing: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    instances: dict[str, Any] = Field(default_factory=dict)
    detection: DetectionSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if len(self.patch_size) != self.spatial_dims or any(s < 1 for s in self.patch_size):
            raise ValueError(f"patch_size must have {self.spatial_dims} positive values, got {self.patch_size}")
        check_label_keys(self.labels)
        if self.inference.patch_size is not None and len(self.inference.patch_size) != self.spatial_dims:
            raise ValueError(f"inference.patch_size must have {self.spatial_dims} values, got {self.inference.patch_size}")
        check_task_sections(self, self.task, self.spatial_dims, self.network)
        return self

    @property
    def inference_patch_size(self) -> list[int]:
        """The sliding-window patch size (voxels): ``inference.patch_size`` or the training patch."""
        return list(self.inference.patch_size or self.patch_size)


def format_validation_error(exc: ValidationError) -> str:
    """``field.sub: message`` for each pydantic error, joined by ``; ``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON training config file.

    Raises:
        ConfigError: File missing or unreadable, not valid YAML/JSON, or not a mapping (naming the file).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found; give the path of a YAML or JSON training config", path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config ({exc.strerror or exc})", path) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {first}", path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"a training config must be a mapping of fields, got {type(data).__name__}", path)
    return data


def config_data(source: str | Path | dict[str, Any] | BaseModel) -> tuple[dict[str, Any], Path | None]:
    """A config as a fresh dict (from a validated config, a dict or a file) and the file it came from, if any."""
    if isinstance(source, BaseModel):
        return source.model_dump(mode="json"), None
    if isinstance(source, dict):
        return copy.deepcopy(source), None
    path = Path(source)
    return read_config_file(path), path


def config_task(source: str | Path | dict[str, Any] | BaseModel) -> Task:
    """The :class:`Task` a training config names (``segmentation`` when it names none), without validating the rest.

    Raises:
        ConfigError: Unreadable file, or an unknown task name.
    """
    if isinstance(source, BaseModel):
        return Task.parse(getattr(source, "task", Task.SEGMENTATION))
    data = source if isinstance(source, dict) else read_config_file(Path(source))
    return Task.parse(data.get("task", Task.SEGMENTATION))


def validate_config(model: type[LoopConfig], source: str | Path | dict[str, Any] | BaseModel,
                    overrides: dict[str, Any] | None = None) -> LoopConfig:
    """Load and validate a training config with the config model of its task.

    Args:
        model: The task's config model (:class:`TrainConfig`, the classification config, ...).
        source: A YAML (``.yaml``/``.yml``) or JSON file, a dict, or a validated config.
        overrides: Values replacing config entries, keys dotted for nesting (``{"epochs": 1, "data.params.margin": 8}``).

    Raises:
        ConfigError: Unreadable file, not a mapping, or invalid fields (each named).
    """
    if isinstance(source, model) and not overrides:
        return source
    data, path = config_data(source)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid training config: {format_validation_error(exc)}", path) from None


def load_config(source: str | Path | dict[str, Any] | TrainConfig, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load and validate a segmentation or detection training config (:class:`TrainConfig`).

    Raises:
        ConfigError: Unreadable file, not a mapping, or invalid fields (each named).
    """
    cfg = validate_config(TrainConfig, source, overrides)
    if not isinstance(cfg, TrainConfig):  # pragma: no cover - validate_config returns the model asked for
        raise ConfigError(f"expected a segmentation/detection config, got {type(cfg).__name__}")
    return cfg
