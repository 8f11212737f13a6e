"""Segmentation training hooks for the one loop (:mod:`medannot.training.loop`).

Patches come from a registered data source (:mod:`medannot.training.sources`); the loss is the config's MONAI
loss; validation segments the held-out cases of the source through the real inference path
(:class:`~medannot.inference.Predictor` on an in-memory bundle) and scores the mean foreground Dice (the
early-stopping score) and, where the truth has instances, instance F1.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from medannot.errors import ConfigError, ModelError
from medannot.inference.predictor import Predictor
from medannot.models.bundle import Bundle
from medannot.models.registry import create_network, resolved_params, size_divisor
from medannot.training.card import render_card
from medannot.training.config import TrainConfig
from medannot.training.loop import Shipped, Validation
from medannot.training.losses import build_loss
from medannot.training.sources import build_source
from medannot.training.validation import validate

__all__ = ["SegmentationTraining", "bundle_from_config", "check_patch"]


def bundle_from_config(config: TrainConfig, state_dict: dict[str, torch.Tensor] | None = None, metrics: dict[str, Any] | None = None,
                       training: dict[str, Any] | None = None) -> Bundle:
    """An in-memory :class:`Bundle` describing the model a segmentation or detection ``config`` trains."""
    data = {
        "name": config.name,
        "version": config.version,
        "task": config.task,
        "spatial_dims": config.spatial_dims,
        "in_channels": config.in_channels,
        "network": {"name": config.network.name, "params": _jsonable(resolved_params(config.network.name, config.network.params))},
        "labels": {k: v.model_dump(mode="json") for k, v in config.labels.items()},
        "preprocessing": config.preprocessing,
        "inference": {
            "patch_size": config.inference_patch_size,
            "overlap": config.inference.overlap,
            "sw_batch_size": config.inference.sw_batch_size,
            "tta_flips": config.inference.tta_flips,
        },
        "postprocessing": config.postprocessing,
        "instances": config.instances,
        **({"detection": config.detection.model_dump(mode="json")} if config.detection is not None else {}),
        "training": training if training is not None else config.resolved(),
        "metrics": metrics or {},
    }
    return Bundle.from_dict(data, state_dict=state_dict)


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=list))


def check_patch(config: TrainConfig) -> None:
    """Training and inference patches must be multiples of the network's size divisor on every axis.

    Raises:
        ConfigError: Naming the patch and the divisor.
    """
    div = size_divisor(config.network.name, config.network.params)
    for what, patch in (("patch_size", config.patch_size), ("inference.patch_size", config.inference_patch_size)):
        if any(int(p) % div for p in patch):
            raise ConfigError(f"{what} {patch} must be a multiple of {div} voxels on every axis for network {config.network.name!r}")


class SegmentationTraining:
    """The segmentation task's :class:`~medannot.training.loop.TrainingHooks`.

    Args:
        cfg: A validated segmentation :class:`TrainConfig`.

    Raises:
        ConfigError: Patches that do not fit the network, an unknown data source or bad source parameters.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        check_patch(cfg)
        self.cfg = cfg
        self.labels = {int(k): v.name for k, v in cfg.labels.items()}
        self.source = build_source(cfg.data.source, cfg.data.params, rng_seed=cfg.seed, patch_size=list(cfg.patch_size),
                                   preprocessing=list(cfg.preprocessing), spatial_dims=cfg.spatial_dims)
        self.val_cases = self.source.validation_cases()
        self.network = create_network(cfg.network.name, cfg.spatial_dims, cfg.in_channels, len(self.labels), **cfg.network.params)
        self.loss_fn = build_loss(cfg.loss)
        self._bundle = bundle_from_config(cfg)

    def train_mode(self) -> None:
        """The network trains."""
        self.network.train()

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` image and label patches from the source.

        Raises:
            ModelError: A source returning other shapes than the config's patch.
        """
        cfg = self.cfg
        imgs, labs = zip(*(self.source.sample(rng) for _ in range(cfg.batch_size)))
        x = torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) for i in imgs]))
        y = torch.from_numpy(np.stack([np.asarray(lab, dtype=np.int64) for lab in labs]))[:, None]
        want = (cfg.batch_size, cfg.in_channels, *cfg.patch_size)
        if tuple(x.shape) != want or tuple(y.shape) != (cfg.batch_size, 1, *cfg.patch_size):
            raise ModelError(f"data source returned image batch {tuple(x.shape)} and label batch {tuple(y.shape)}; "
                             f"expected {want} and {(cfg.batch_size, 1, *cfg.patch_size)}")
        return x, y

    def loss(self, rng: np.random.Generator) -> torch.Tensor:
        """The config's loss on one batch."""
        x, y = self.batch(rng)
        return self.loss_fn(self.network(x), y)

    def validate(self) -> Validation | None:
        """Mean foreground Dice (and instance F1) of the held-out cases, segmented by :class:`Predictor`."""
        if not self.val_cases:
            return None
        m = validate(Predictor(self._bundle, network=self.network), self.val_cases, self.labels)
        scalars = {"mean_dice": m["mean_dice"], **{f"dice_{k}": v for k, v in m["dice"].items()},
                   **{f"instance_f1_{k}": v for k, v in m.get("instance_f1", {}).items()}}
        inst = f"  instance F1 {m['instance_f1']}" if "instance_f1" in m else ""
        return Validation(m["mean_dice"], m, scalars, f"val mean Dice {m['mean_dice']:.4f}{inst}")

    def bundle(self, state_dict: dict[str, torch.Tensor], metrics: dict[str, Any], training: dict[str, Any]) -> Bundle:
        """The bundle of these weights."""
        return bundle_from_config(self.cfg, state_dict=state_dict, metrics=metrics, training=training)

    def measure_shipped(self, bundle: Bundle, selected: dict[str, Any]) -> Shipped:
        """Dice of exactly what is shipped (stored weights + this config's post-processing and instances)."""
        if not self.val_cases:
            return Shipped({})
        return Shipped(dict(validate(Predictor(bundle), self.val_cases, self.labels), epoch=selected.get("epoch")))

    def card(self, metrics: dict[str, Any], run: dict[str, Any]) -> str:
        """The segmentation model card."""
        return render_card(self.cfg, metrics, run)

    def data_record(self) -> dict[str, Any]:
        """The held-out validation cases by name."""
        return {"val_cases": [c.name for c in self.val_cases]}
