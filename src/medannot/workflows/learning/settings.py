"""A project's learning settings: when and how it trains, how a candidate is gated, in which order cases are offered.

One typed object (pydantic), stored with the project (the review server keeps it as JSON in the project row) and
used as is by ``medannot simulate``. Unknown keys are errors that name the valid ones.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medannot.errors import ConfigError

__all__ = ["DEFAULT_ENGINE", "GateRule", "LearningSettings", "Strategy", "TrainingRecipe", "parse_settings"]

DEFAULT_ENGINE = "auto"
"""The promptable engine a project uses unless it names another: ``auto``, the default of the case's dimensionality
(:func:`medannot.tasks.promptable.default_engine`, as ``medannot segment`` without ``--engine``): a bundled network
where its held-out run needed fewer clicks than every classical engine with a first mask as good, else GrowCut. GrowCut needed the fewest clicks
to bring the 32 tiles (64x64) of the held-out right half of the stardist nuclei sample from nothing to Dice 0.90
with the simulated annotator of :mod:`.effort`: GrowCut 546 clicks for 98 nuclei (6 gave up at 20 clicks), region
growing 597 (9), random walker 718 (6); GrowCut was also the fastest (1.3 s in the engine for all, against 4.7 s
and 12.8 s)."""


class Strategy(enum.StrEnum):
    """The order in which unreviewed cases are offered.

    ``random``: a fixed random order per project; ``uncertainty``: highest mean softmax entropy inside the proposal
    first (Monte-Carlo dropout variance when the project asks for it); ``diversity``: farthest-first in the retrieval
    embedding from the cases reviewed so far; ``mix``: the mean of the uncertainty and diversity ranks.
    """

    RANDOM = "random"
    UNCERTAINTY = "uncertainty"
    DIVERSITY = "diversity"
    MIX = "mix"

    @classmethod
    def parse(cls, value: str | Strategy) -> Strategy:
        """Convert a string once; a typo lists the valid names."""
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConfigError(f"unknown strategy {value!r}; expected one of: {', '.join(s.value for s in cls)}") from None


class GateRule(BaseModel):
    """When a candidate model replaces the active one (both measured on the project's validation cases).

    Attributes:
        min_gain: The candidate's mean Dice must be at least the active one's plus this (0: not worse).
        max_label_drop: No label's Dice may fall by more than this.
    """

    model_config = ConfigDict(extra="forbid")
    min_gain: float = Field(0.0, ge=-1.0, le=1.0)
    max_label_drop: float = Field(0.02, ge=0.0, le=1.0)


class TrainingRecipe(BaseModel):
    """How one training round runs (the one training loop, :mod:`medannot.training.loop`).

    Attributes:
        epochs: Epochs per round.
        iterations_per_epoch: Optimiser steps per epoch.
        batch_size: Patches per step.
        patch_size: Training and sliding-window patch (voxels per axis); None: chosen from the cases (up to 128
            in 2D and 64 in 3D, a multiple of the network's size divisor).
        lr: Learning rate (AdamW, constant).
        fine_tune: Start from the active model's weights (transfer learning); False: from scratch every round.
        time_budget_s: Wall-clock bound of a round (s): once spent, the remaining steps are skipped and the weights
            as they are then are measured and shipped (3D rounds on a CPU are bounded by it).
        num_threads: CPU threads of the round.
        channels: Feature maps per level of the default network (a MONAI U-Net) when a round starts from scratch.
        res_units: Residual units per level of that network (1 trains about twice as fast as 2 on a CPU).
        seed: Seed of the round (patch draws, initial weights).
    """

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(6, ge=1, le=1000)
    iterations_per_epoch: int = Field(20, ge=1, le=10000)
    batch_size: int = Field(8, ge=1, le=256)
    patch_size: list[int] | None = None
    lr: float = Field(2e-3, gt=0, le=1.0)
    fine_tune: bool = True
    time_budget_s: float = Field(600.0, gt=0)
    num_threads: int = Field(2, ge=1, le=256)
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    res_units: int = Field(1, ge=0, le=4)
    seed: int = 0


class LearningSettings(BaseModel):
    """Everything a project decides about learning from its reviewers.

    Attributes:
        retrain_every: Queue a training round by itself after this many newly accepted cases (0: only when asked).
        min_cases: Fewest accepted cases a round needs (at least one validates, the rest train).
        val_fraction: Share of accepted cases kept for validation; each case's side is fixed when it is first
            accepted and never changes (a validation case never trains).
        strategy: Order of the unreviewed cases (:class:`Strategy`).
        mc_dropout: Monte-Carlo dropout passes for the uncertainty score (0: softmax entropy; needs dropout).
        gate: :class:`GateRule`.
        repropose_on_activate: When a version becomes active, queue new proposals for the cases nobody edited yet.
        engine: Promptable engine of the review page's Smart tool: ``auto`` (see :data:`DEFAULT_ENGINE`), a classical
            engine by name, or a promptable bundle.
        recipe: :class:`TrainingRecipe`.
    """

    model_config = ConfigDict(extra="forbid")
    retrain_every: int = Field(0, ge=0, le=100000)
    min_cases: int = Field(3, ge=2, le=100000)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    strategy: Strategy = Strategy.RANDOM
    mc_dropout: int = Field(0, ge=0, le=64)
    gate: GateRule = Field(default_factory=GateRule)
    repropose_on_activate: bool = True
    engine: str = Field(DEFAULT_ENGINE, min_length=1, max_length=500)
    recipe: TrainingRecipe = Field(default_factory=TrainingRecipe)


def parse_settings(data: dict[str, Any] | LearningSettings | None, base: LearningSettings | None = None) -> LearningSettings:
    """Validate settings, or a partial update of ``base`` (nested sections merged key by key).

    Raises:
        ConfigError: One line naming the first invalid field and why.
    """
    if isinstance(data, LearningSettings):
        return data
    merged: dict[str, Any] = (base or LearningSettings()).model_dump(mode="json")
    for key, value in (data or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        return LearningSettings.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            valid = ", ".join(LearningSettings.model_fields)
            raise ConfigError(f"unknown learning setting {where!r}; valid settings: {valid}") from None
        raise ConfigError(f"learning setting {where}: {err['msg']}") from None
