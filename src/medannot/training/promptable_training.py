"""Training hooks of the promptable network for the one training loop (simulated iterative prompting, RITM-style).

:class:`PromptableConfig` is the task's config model; :class:`PromptableTraining` its hooks:

- ``loss``: a batch of crops around TRAIN-split objects (real ones by source, balanced, and SYNTHETIC ones,
  :mod:`medannot.training.promptable_synth`), each starting from a click, a box or a corrupted previous mask
  (:func:`medannot.training.promptable_data.initial_state`); then the network itself predicts without gradients
  0..``max_iterations`` times, the simulated user clicking at the centre of the largest error after each and the
  prediction becoming the previous mask (so refinement is learned from the network's own mistakes); the loss
  (binary cross-entropy weighted up near the clicks + soft Dice) is taken on the last state;
- ``validate``: the simulated user (:func:`medannot.evaluation.interactive.simulate`) through the inference engine
  (:class:`medannot.inference.promptable.NetworkEngine`) on TRAIN-split objects only (SYNTHETIC objects of another
  seed and a few real training objects): every choice made while training sees no held-out object;
- ``measure_shipped``: the shipped bundle, loaded back, on every HELD-OUT real object of its dimensionality
  against the classical engines in the same run; per-case curves (``held_out_interactive.csv``) and the
  clicks-vs-Dice plot are written into the bundle folder;
- ``card``: the model card (:mod:`medannot.training.promptable_card`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medannot.classical.interactive import create_engine as create_classical_engine
from medannot.classical.interactive import list_engines as list_classical_engines
from medannot.data.task import Task
from medannot.evaluation.interactive import (
    InteractiveAccumulator,
    first_click,
    plot_clicks_vs_dice,
    simulate,
    write_interactive_csv,
)
from medannot.inference.promptable import CHANNELS, NetworkEngine, PromptableSettings
from medannot.models.bundle import Bundle
from medannot.models.registry import create_network
from medannot.training.config import LoopConfig
from medannot.training.loop import Shipped, Validation
from medannot.training.promptable_data import CropState, ExampleSpec, click_weights, initial_state, sample_crop
from medannot.training.promptable_sources import ObjectCase, Split, object_cases, object_sources
from medannot.training.promptable_synth import SyntheticObjects

__all__ = ["HELD_OUT_CSV", "HELD_OUT_PLOT", "PromptableConfig", "PromptableTraining", "held_out_cases"]

HELD_OUT_CSV = "held_out_interactive.csv"
HELD_OUT_PLOT = "held_out_clicks_vs_dice.png"


class PromptableData(BaseModel):
    """Where training examples come from and how they are prompted.

    Attributes:
        sources: TRAIN-split object sources of the run's dimensionality (None: all of them); a held-out source is refused.
        p_synthetic: Share of SYNTHETIC objects in a batch (the rest: real objects, each source equally often).
        synthetic_patch: Side (voxels) of the real background patch a synthetic object is pasted into.
        rel_size: Object extent relative to the crop's field of view (log-uniform range).
        p_box, p_corrupt, p_centre_click: See :class:`~medannot.training.promptable_data.ExampleSpec`.
        max_iterations: Most no-gradient refinement rounds of the network itself before the loss (uniform 0..max).
        click_weight: Extra loss weight at a click (falls linearly to 0 at ``click_weight_radius`` crop voxels).
        click_weight_radius: See ``click_weight``.
    """

    model_config = ConfigDict(extra="forbid")
    sources: list[str] | None = None
    p_synthetic: float = Field(0.4, ge=0, le=1)
    synthetic_patch: int = Field(160, ge=16)
    rel_size: tuple[float, float] = (0.15, 1.3)
    p_box: float = Field(0.15, ge=0, le=1)
    p_corrupt: float = Field(0.15, ge=0, le=1)
    p_centre_click: float = Field(0.5, ge=0, le=1)
    max_iterations: int = Field(3, ge=0, le=10)
    click_weight: float = Field(2.0, ge=0)
    click_weight_radius: float = Field(8.0, gt=0)


class PromptableValidationConfig(BaseModel):
    """TRAIN-split validation: SYNTHETIC objects of another seed and a few real TRAIN objects."""

    model_config = ConfigDict(extra="forbid")
    synthetic: int = Field(12, ge=0)
    real: int = Field(8, ge=0)
    clicks: int = Field(8, ge=1, le=20)
    seed: int = 12345


class PromptableHeldOut(BaseModel):
    """How the shipped bundle is measured: HELD-OUT real objects, the simulated user, classical engines beside it.

    Attributes:
        sources: HELD-OUT sources of the run's dimensionality (None: all of them); a TRAIN source is refused.
        max_clicks: Interactions per object (and the NoC cap).
        engines: Classical engines measured in the same run (``medannot.classical.interactive.list_engines``).
        limit: At most this many objects, evenly spaced (None: all; for quick test runs).
    """

    model_config = ConfigDict(extra="forbid")
    sources: list[str] | None = None
    max_clicks: int = Field(20, ge=1, le=50)
    engines: list[str] = Field(default_factory=lambda: ["region-growing", "random-walker", "growcut"])
    limit: int | None = Field(None, ge=1)


class PromptableConfig(LoopConfig):
    """A promptable-network run (task ``promptable``).

    Attributes:
        crop: Training crop in voxels (one value per spatial axis).
        promptable: The bundle's inference settings (:class:`~medannot.inference.promptable.PromptableSettings`;
            ``crop`` defaults to the training crop, encoding radii must match ``data``'s).
        data: Training examples.
        validation: TRAIN-split validation.
        held_out: The measurement of the shipped bundle.
    """

    task: Task = Task.PROMPTABLE
    in_channels: int = Field(len(CHANNELS), ge=1)
    crop: list[int]
    promptable: dict[str, Any] = Field(default_factory=dict)
    data: PromptableData = Field(default_factory=PromptableData)
    validation: PromptableValidationConfig = Field(default_factory=PromptableValidationConfig)
    held_out: PromptableHeldOut = Field(default_factory=PromptableHeldOut)

    @model_validator(mode="after")
    def _consistent(self) -> PromptableConfig:
        if len(self.crop) != self.spatial_dims or min(self.crop) < 8:
            raise ValueError(f"crop must have {self.spatial_dims} sides of at least 8 voxels, got {self.crop}")
        if self.in_channels != len(CHANNELS):
            raise ValueError(f"in_channels must be {len(CHANNELS)} ({', '.join(CHANNELS)}), got {self.in_channels}")
        settings = self.settings
        if len(settings.crop) != self.spatial_dims:
            raise ValueError(f"promptable.crop must have {self.spatial_dims} values, got {settings.crop}")
        for name, split in (("data.sources", Split.TRAIN), ("held_out.sources", Split.HELD_OUT)):
            chosen = self.data.sources if split is Split.TRAIN else self.held_out.sources
            allowed = {s.name for s in object_sources(split, self.spatial_dims)}
            wrong = sorted(set(chosen or []) - allowed)
            if wrong:
                raise ValueError(f"{name}: {wrong} are not {split.value} sources of {self.spatial_dims}D objects; "
                                 f"choose from {sorted(allowed)}")
        unknown = sorted(set(self.held_out.engines) - set(list_classical_engines()))
        if unknown:
            raise ValueError(f"held_out.engines: unknown {unknown}; choose from {list_classical_engines()}")
        return self

    @property
    def settings(self) -> PromptableSettings:
        """The bundle's ``promptable`` section (inference crop defaults to the training crop)."""
        return PromptableSettings.model_validate({"crop": list(self.crop), **self.promptable})

    @property
    def spec(self) -> ExampleSpec:
        """How training examples are drawn (encoding radii from :attr:`settings`)."""
        s, d = self.settings, self.data
        return ExampleSpec(crop=tuple(self.crop), disc_radius=s.disc_radius, distance_radius=s.distance_radius, p_box=d.p_box,
                           p_corrupt=d.p_corrupt, p_centre_click=d.p_centre_click, rel_size=(d.rel_size[0], d.rel_size[1]))


def _evenly(items: list[Any], n: int | None) -> list[Any]:
    if n is None or n >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def held_out_cases(ndim: int, sources: list[str] | None = None, limit: int | None = None) -> list[ObjectCase]:
    """The HELD-OUT real objects a promptable bundle is measured on (evenly spaced ``limit`` of them)."""
    return _evenly(object_cases(Split.HELD_OUT, ndim, sources), limit)


class PromptableTraining:
    """The promptable task's hooks for :func:`medannot.training.loop.run_training` (see the module docstring)."""

    def __init__(self, cfg: PromptableConfig) -> None:
        self.cfg = cfg
        self.spec = cfg.spec
        self.settings = cfg.settings
        nd = cfg.spatial_dims
        self.network = create_network(cfg.network.name, nd, cfg.in_channels, 1, **cfg.network.params)
        self.real: dict[str, list[tuple[np.ndarray, np.ndarray, tuple[float, ...], tuple[int, ...]]]] = {}
        for case in object_cases(Split.TRAIN, nd, cfg.data.sources):
            arr = case.image.array[0].astype(np.float32)
            hint = first_click(case.mask, case.image.spacing).index
            self.real.setdefault(case.source, []).append((arr, case.mask, case.image.spacing, hint))
        self.synth = SyntheticObjects(nd, patch=cfg.data.synthetic_patch, seed=cfg.seed + 1)
        v = cfg.validation
        held = SyntheticObjects(nd, patch=cfg.data.synthetic_patch, seed=v.seed)
        self.val_cases = [held.draw(i) for i in range(v.synthetic)]
        real = object_cases(Split.TRAIN, nd, cfg.data.sources)
        by_source: dict[str, list[ObjectCase]] = {}
        for c in real:
            by_source.setdefault(c.source, []).append(c)
        per = -(-v.real // max(1, len(by_source))) if v.real else 0
        picked = [c for cs in by_source.values() for c in _evenly(cs, per)]
        self.val_cases += _evenly(picked, v.real) if v.real else []

    # -- the loop's hooks ---------------------------------------------------------------------------
    def train_mode(self) -> None:
        """The network trains (BasicUNet has instance norm and no dropout: no-gradient rounds see the same network)."""
        self.network.train()

    def _draw(self, rng: np.random.Generator) -> CropState:
        while True:
            if not self.real or rng.random() < self.cfg.data.p_synthetic:
                c = self.synth.draw()
                image, mask, spacing, hint = c.image.array[0], c.mask, c.image.spacing, None
            else:
                pool = self.real[list(self.real)[int(rng.integers(len(self.real)))]]
                image, mask, spacing, hint = pool[int(rng.integers(len(pool)))]
            crop = sample_crop(image, mask, spacing, self.spec, rng, hint)
            if crop is not None:
                return initial_state(*crop, self.spec, rng)

    def _inputs(self, states: list[CropState]) -> torch.Tensor:
        return torch.from_numpy(np.stack([s.inputs(self.spec) for s in states]))

    def loss(self, rng: np.random.Generator) -> torch.Tensor:
        """One batch: draw, refine with the network's own predictions (no gradient), then the weighted loss."""
        states = [self._draw(rng) for _ in range(self.cfg.batch_size)]
        x = self._inputs(states)
        for _ in range(int(rng.integers(0, self.cfg.data.max_iterations + 1))):
            with torch.no_grad():
                prob = torch.sigmoid(self.network(x))[:, 0].numpy()
            for s, p in zip(states, prob):
                s.refine(p > self.settings.threshold)
            x = self._inputs(states)
        target = torch.from_numpy(np.stack([s.truth.astype(np.float32)[None] for s in states]))
        d = self.cfg.data
        weight = torch.from_numpy(np.stack([click_weights(s.clicks, s.truth.shape, d.click_weight_radius, d.click_weight)[None]
                                            for s in states]))
        logits = self.network(x)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / weight.sum()
        prob_t = torch.sigmoid(logits)
        dims = tuple(range(2, logits.ndim))
        dice = 1 - (2 * (prob_t * target).sum(dims) + 1) / (prob_t.sum(dims) + target.sum(dims) + 1)
        return bce + dice.mean()

    def engine(self, network: torch.nn.Module | None = None, name: str = "network") -> NetworkEngine:
        """The inference engine of ``network`` (default: the one training) with the run's settings."""
        return NetworkEngine(network if network is not None else self.network, self.settings, name=name)

    def validate(self) -> Validation | None:
        """Simulated-user sessions on TRAIN-split validation objects; the score is the mean Dice over the clicks."""
        if not self.val_cases:
            return None
        acc = InteractiveAccumulator()
        engine = self.engine()
        for c in self.val_cases:
            acc.update(simulate(engine, c.image, c.mask, max_clicks=self.cfg.validation.clicks, case=c.name))
        s = acc.compute()["network"]
        numbers = s.to_dict(at=(1, 3, 5))
        score = float(np.mean(s.mean_dice))
        metrics = {"score": round(score, 4), **numbers}
        scalars = {"score": score, "dice1": numbers["dice1"], "dice_last": numbers["dice_last"], "noc85": numbers["noc85"]}
        line = (f"val (TRAIN split, {s.cases} objects, {len(s.mean_dice)} clicks): Dice@1 {numbers['dice1']:.3f} "
                f"Dice@{len(s.mean_dice)} {numbers['dice_last']:.3f} NoC@85 {numbers['noc85']:.2f} mean Dice {score:.3f}")
        return Validation(score, metrics, scalars, line)

    def bundle(self, state_dict: dict[str, torch.Tensor], metrics: dict[str, Any], training: dict[str, Any]) -> Bundle:
        """An in-memory promptable bundle (labels 0 background, 1 object; the ``promptable`` section)."""
        cfg = self.cfg
        return Bundle.from_dict({
            "name": cfg.name, "version": cfg.version, "task": Task.PROMPTABLE, "spatial_dims": cfg.spatial_dims,
            "in_channels": cfg.in_channels, "network": {"name": cfg.network.name, "params": cfg.network.params},
            "labels": {"0": {"name": "background"}, "1": {"name": "object"}},
            "inference": {"patch_size": list(self.settings.crop)},
            "promptable": self.settings.model_dump(mode="json"),
            "training": training, "metrics": {"validation": metrics},
        }, state_dict=state_dict)

    def measure_shipped(self, bundle: Bundle, selected: dict[str, Any]) -> Shipped:
        """HELD-OUT objects: the shipped network and the classical engines, simulated user, same run (see module)."""
        from medannot.training.promptable_card import held_out_notes

        cfg = self.cfg
        ho = cfg.held_out
        cases = held_out_cases(cfg.spatial_dims, ho.sources, ho.limit)
        engines: dict[str, Any] = {bundle.name: NetworkEngine(bundle.build_network(), PromptableSettings.parse(bundle.spec.promptable),
                                                              name=bundle.name)}
        engines.update({n: create_classical_engine(n) for n in ho.engines})
        results = []
        for c in cases:
            for e in engines.values():
                results.append(simulate(e, c.image, c.mask, max_clicks=ho.max_clicks, case=c.name))
        metrics = summarise(results, {c.name: c.source for c in cases}, bundle.name)
        metrics["validation"] = selected
        if bundle.path is not None and results:
            write_interactive_csv(results, bundle.path / HELD_OUT_CSV, groups={c.name: c.source for c in cases})
            acc = InteractiveAccumulator()
            for r in results:
                acc.update(r)
            plot_clicks_vs_dice(acc.compute(), bundle.path / HELD_OUT_PLOT,
                                title=f"{len(cases)} held-out real {cfg.spatial_dims}D objects")
        return Shipped(metrics, card_notes=held_out_notes(metrics, bundle.name))

    def card(self, metrics: dict[str, Any], run: dict[str, Any]) -> str:
        """The model card."""
        from medannot.training.promptable_card import model_card

        return model_card(self.cfg, metrics, run)

    def data_record(self) -> dict[str, Any]:
        """Objects per TRAIN source, validation objects and the held-out sources."""
        return {"train_objects": {k: len(v) for k, v in self.real.items()}, "p_synthetic": self.cfg.data.p_synthetic,
                "validation_objects": {"synthetic": self.cfg.validation.synthetic,
                                       "real_train": len(self.val_cases) - self.cfg.validation.synthetic},
                "held_out_sources": self.cfg.held_out.sources or [s.name for s in object_sources(Split.HELD_OUT, self.cfg.spatial_dims)]}


def summarise(results: list[Any], groups: dict[str, str], network: str) -> dict[str, Any]:
    """Held-out metrics: the network's headline numbers at the top, every engine overall and per source below."""
    acc = InteractiveAccumulator()
    for r in results:
        acc.update(r)
    overall = {k: v.to_dict() for k, v in acc.compute().items()}
    per_source: dict[str, dict[str, Any]] = {}
    for source in dict.fromkeys(groups.values()):
        sub = InteractiveAccumulator()
        for r in results:
            if groups.get(r.case) == source:
                sub.update(r)
        per_source[source] = {k: v.to_dict() for k, v in sub.compute().items()}
    own = overall.get(network, {})
    top: dict[str, Any] = {k: own[k] for k in ("dice1", "dice3", "dice5", "dice_last", "noc80", "noc85", "noc90", "fail85", "fail90") if k in own}
    return {**top, "cases": len(groups), "engines": overall, "per_source": per_source}
