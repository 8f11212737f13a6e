"""One training round: a project's accepted cases -> a candidate bundle, in the one training loop.

:func:`round_config` writes the segmentation training config of a round (the ``case-list`` source with the fixed
validation cases, the label values mapped to ``1..K``, transfer learning from the parent bundle when there is one,
the recipe's epochs and steps), and :func:`run_round` runs it with :func:`medannot.training.loop.run_training` and
the segmentation task's hooks, wrapped so that

* the round stops training once ``time_budget_s`` is spent (the remaining steps are skipped, the weights as they
  are then are measured and shipped: a 3D round on a CPU is bounded by the project's budget),
* progress (0..1, steps done of planned) and a message go to a callback while it runs,
* a killed round resumes from its checkpoint when it runs again with the same ``out`` (the job is re-queued),

and the bundle appears at ``out`` only complete (the loop's atomic folder), or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medannot.errors import ConfigError, InputError
from medannot.workflows.learning.settings import TrainingRecipe

__all__ = ["LabelledCase", "RoundResult", "RoundSpec", "auto_patch", "round_config", "run_round"]

PATCH_CAP = {2: 128, 3: 64}
"""Largest automatic patch per axis (voxels)."""
DEFAULT_PREPROCESSING = [{"name": "percentile_normalise", "params": {"lower": 1.0, "upper": 99.8}}]


@dataclass(frozen=True)
class LabelledCase:
    """An image and its accepted mask (files any medannot reader opens; masks hold the project's values)."""

    name: str
    image: Path
    label: Path


@dataclass
class RoundSpec:
    """What one round trains.

    Attributes:
        name: Bundle name (the project's).
        version: Bundle version (``v3``).
        spatial_dims: 2 or 3.
        labels: The project's labels ``[{"value", "name", "color": "#rrggbb"}]`` (background left out).
        train: Training cases.
        val: Validation cases (never train).
        min_shape: Smallest spatial shape over the cases (voxels), for the automatic patch.
        out: Bundle folder to write.
        parent: Bundle (name or folder) whose weights start the round, or None (from scratch).
        recipe: Epochs, steps, patch, budget.
        in_channels: Image channels.
        description: Model card text.
    """

    name: str
    version: str
    spatial_dims: int
    labels: list[dict[str, Any]]
    train: list[LabelledCase]
    val: list[LabelledCase]
    min_shape: Sequence[int]
    out: Path
    parent: str | None = None
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)
    in_channels: int = 1
    description: str = ""

    @property
    def label_values(self) -> list[int]:
        """The project's label values in output order (output i is ``label_values[i-1]``)."""
        return [int(lab["value"]) for lab in self.labels]


@dataclass
class RoundResult:
    """What a round produced.

    Attributes:
        bundle: The bundle folder.
        seconds: Wall time (s).
        steps_done: Optimiser steps trained.
        steps_planned: Steps of the recipe.
        budget_hit: True when the time budget cut the round short.
        parent: The parent bundle, or None.
        resumed_from: Steps already done by an earlier, interrupted try (read from its checkpoint; 0: a fresh start).
    """

    bundle: Path
    seconds: float
    steps_done: int
    steps_planned: int
    budget_hit: bool
    parent: str | None
    resumed_from: int = 0


def auto_patch(min_shape: Sequence[int], spatial_dims: int, divisor: int) -> list[int]:
    """The largest patch up to :data:`PATCH_CAP` that fits the smallest case, a multiple of ``divisor`` (at least one)."""
    cap = PATCH_CAP[spatial_dims]
    return [max(divisor, min(cap, int(s)) // divisor * divisor) for s in list(min_shape)[:spatial_dims]]


def _hex_rgb(color: Any) -> list[int] | None:
    if isinstance(color, str) and len(color.lstrip("#")) == 6:
        c = color.lstrip("#")
        return [int(c[i : i + 2], 16) for i in (0, 2, 4)]
    if isinstance(color, (list, tuple)) and len(color) == 3:
        return [int(v) for v in color]
    return None


def _network(spec: RoundSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Network reference and preprocessing: the parent's when fine-tuning, else a MONAI U-Net with the recipe's channels."""
    if spec.parent is not None:
        from medannot.models.bundle import Bundle

        parent = Bundle.load(spec.parent)
        if int(parent.spatial_dims) != spec.spatial_dims:
            raise ConfigError(f"cannot fine-tune the {parent.spatial_dims}D model {parent.name!r} on {spec.spatial_dims}D cases; "
                              "train this project from scratch (recipe.fine_tune false)")
        return {"name": parent.spec.network.name, "params": dict(parent.spec.network.params)}, list(parent.spec.preprocessing)
    levels = len(spec.recipe.channels)
    if levels < 2:
        raise ConfigError("recipe.channels needs at least 2 levels, e.g. [16, 32, 64, 128]")
    params = {"channels": list(spec.recipe.channels), "strides": [2] * (levels - 1), "num_res_units": spec.recipe.res_units}
    return {"name": "unet", "params": params}, list(DEFAULT_PREPROCESSING)


def round_config(spec: RoundSpec) -> dict[str, Any]:
    """The segmentation training config (a dict the one loop validates) of a round.

    Raises:
        InputError: No training or no validation case. ConfigError: a parent of another dimensionality.
    """
    from medannot.models.registry import size_divisor

    if not spec.train:
        raise InputError("no training case: accept more cases before training")
    if not spec.val:
        raise InputError("no validation case: accept more cases before training")
    network, preprocessing = _network(spec)
    recipe = spec.recipe
    patch = list(recipe.patch_size) if recipe.patch_size else auto_patch(spec.min_shape, spec.spatial_dims,
                                                                          size_divisor(network["name"], network["params"]))
    if len(patch) != spec.spatial_dims:
        raise ConfigError(f"recipe.patch_size {patch} needs {spec.spatial_dims} values for {spec.spatial_dims}D cases")
    labels: dict[str, Any] = {"0": {"name": "background", "color": [0, 0, 0]}}
    for i, lab in enumerate(spec.labels, 1):
        labels[str(i)] = {"name": str(lab["name"]), "color": _hex_rgb(lab.get("color"))}
    cases = [{"name": c.name, "image": str(c.image), "label": str(c.label)} for c in [*spec.train, *spec.val]]
    return {
        "name": spec.name,
        "version": spec.version,
        "task": "segmentation",
        "spatial_dims": spec.spatial_dims,
        "in_channels": spec.in_channels,
        "labels": labels,
        "network": network,
        "loss": "dice_ce",
        "optimizer": {"lr": recipe.lr, "weight_decay": 1e-5},
        "epochs": recipe.epochs,
        "iterations_per_epoch": recipe.iterations_per_epoch,
        "batch_size": recipe.batch_size,
        "patch_size": patch,
        "val_every": recipe.epochs,  # measured once, at the end: the validation cases stay an honest test of what ships
        "select_best": False,
        "seed": recipe.seed,
        "num_threads": recipe.num_threads,
        "data": {"source": "case-list", "params": {"cases": cases, "val_cases": [c.name for c in spec.val],
                                                    "label_values": spec.label_values, "fg_ratio": 0.6}},
        "preprocessing": preprocessing,
        "inference": {"patch_size": patch, "overlap": 0.25, "sw_batch_size": 1, "tta_flips": False},
        "out": str(spec.out),
        "resume": True,
        **({"init": {"bundle": str(spec.parent)}} if spec.parent is not None else {}),
        "card": {
            "description": spec.description or f"{spec.name} {spec.version}: trained from the project's accepted cases.",
            "training_data": (f"{len(spec.train)} accepted cases ({', '.join(c.name for c in spec.train[:20])}"
                              f"{', ...' if len(spec.train) > 20 else ''}); validated on {len(spec.val)} other accepted cases "
                              f"({', '.join(c.name for c in spec.val[:20])}{', ...' if len(spec.val) > 20 else ''})."),
            "intended_use": "Proposals for the reviewers of this project; every proposal is reviewed.",
            "limitations": "Trained on the few cases this project accepted so far; scores are on its validation cases only.",
        },
    }


class _Budgeted:
    """The task's training hooks, with a time budget and a progress callback on every step."""

    def __init__(self, inner: Any, deadline: float, planned: int, done_before: int,
                 on_progress: Callable[[float, str], None] | None) -> None:
        self._inner = inner
        self.network = inner.network
        self.deadline = deadline
        self.planned = max(1, planned)
        self.calls = done_before
        self.trained = 0
        self.skipped = 0
        self.on_progress = on_progress
        self._last = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def loss(self, rng: np.random.Generator) -> torch.Tensor:
        self.calls += 1
        now = time.monotonic()
        if self.on_progress is not None and (now - self._last > 0.5 or self.calls >= self.planned):
            self._last = now
            self.on_progress(min(1.0, self.calls / self.planned), f"training step {self.calls} of {self.planned}")
        if now > self.deadline:
            self.skipped += 1
            return torch.zeros(())  # no graph: the loop takes no step
        self.trained += 1
        return self._inner.loss(rng)

    def validate(self) -> Any:
        if self.on_progress is not None:
            self.on_progress(min(1.0, self.calls / self.planned), "validating")
        return self._inner.validate()


def run_round(spec: RoundSpec, on_progress: Callable[[float, str], None] | None = None) -> RoundResult:
    """Train one round and write its bundle to ``spec.out`` (atomically; resumed from its checkpoint if one exists).

    Args:
        spec: The round.
        on_progress: Called with (fraction 0..1, message) while it trains (from this thread).

    Raises:
        InputError: No training or validation case. ConfigError: a bad recipe. ModelError: a parent that does not fit.
        OutputError: The bundle cannot be written.
    """
    import medannot.training.case_list  # noqa: F401 - registers the case-list source
    from medannot.data import Task
    from medannot.tasks import get_task
    from medannot.training.config import validate_config
    from medannot.training.loop import checkpoint_path, run_training

    raw = round_config(spec)
    plugin = get_task(Task.SEGMENTATION)
    cfg = validate_config(plugin.config_model, raw)
    planned = cfg.epochs * cfg.iterations_per_epoch
    ckpt = checkpoint_path(cfg)
    done_before = 0
    if ckpt.is_file():
        try:
            done_before = (int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]) + 1) * cfg.iterations_per_epoch
        except Exception:  # noqa: BLE001 - a checkpoint cut by a kill: start the round again
            ckpt.unlink(missing_ok=True)
    start = time.monotonic()
    holder: dict[str, _Budgeted] = {}

    def build(c: Any) -> _Budgeted:
        holder["hooks"] = _Budgeted(plugin.training(c), start + spec.recipe.time_budget_s, planned, done_before, on_progress)
        return holder["hooks"]

    out = run_training(cfg, build, progress=False)
    ckpt.unlink(missing_ok=True)
    hooks = holder["hooks"]
    return RoundResult(Path(out), time.monotonic() - start, done_before + hooks.trained, planned, hooks.skipped > 0, spec.parent,
                       done_before)
