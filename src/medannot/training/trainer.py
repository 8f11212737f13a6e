"""The training loop: ``train(config) -> bundle folder``.

Seeded; AdamW; a progress bar with the loss; validation every ``val_every`` epochs through
the real inference path (:class:`~medannot.inference.Predictor` on the in-memory bundle);
early stopping on the mean foreground Dice with the best weights kept; TensorBoard scalars;
a checkpoint after every epoch (model, optimiser, epoch, best weights, RNG states) so that
``resume: true`` continues an interrupted run; at the end the bundle folder (bundle.json
with validation metrics and the resolved config, weights.pt, MODEL_CARD.md).
"""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medannot.errors import ConfigError, ModelError
from medannot.models.bundle import Bundle
from medannot.models.registry import create_network, resolved_params, size_divisor
from medannot.training.callbacks import EarlyStopping, TensorBoardLogger
from medannot.training.config import TrainConfig, load_config, lr_at
from medannot.training.losses import build_loss
from medannot.training.sources import build_source

__all__ = ["train", "bundle_from_config", "checkpoint_path"]


def checkpoint_path(config: TrainConfig) -> Path:
    """Where the per-epoch checkpoint lives: ``log_dir/checkpoint.pt``, else a hidden file beside ``out``."""
    if config.log_dir is not None:
        return Path(config.log_dir) / "checkpoint.pt"
    out = Path(config.out)
    return out.parent / f".{out.name}.checkpoint.pt"


def bundle_from_config(config: TrainConfig, state_dict: dict[str, torch.Tensor] | None = None, metrics: dict[str, Any] | None = None,
                       training: dict[str, Any] | None = None) -> Bundle:
    """An in-memory :class:`Bundle` describing the model ``config`` trains."""
    data = {
        "name": config.name,
        "version": config.version,
        "task": config.task,
        "spatial_dims": config.spatial_dims,
        "in_channels": config.in_channels,
        "network": {"name": config.network.name, "params": _jsonable(_network_params(config))},
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


def _network_params(config: TrainConfig) -> dict[str, Any]:
    if config.task == "detection":
        from medannot.models.detection import detection_params

        return detection_params(config.network.name, config.network.params)
    return resolved_params(config.network.name, config.network.params)


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=list))


def _check_patch(config: TrainConfig) -> None:
    div = size_divisor(config.network.name, config.network.params)
    for what, patch in (("patch_size", config.patch_size), ("inference.patch_size", config.inference_patch_size)):
        if any(int(p) % div for p in patch):
            raise ConfigError(f"{what} {patch} must be a multiple of {div} voxels on every axis for network {config.network.name!r}")


def _seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _batch(source: Any, rng: np.random.Generator, n: int, in_channels: int, patch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    imgs, labs = zip(*(source.sample(rng) for _ in range(n)))
    x = torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) for i in imgs]))
    y = torch.from_numpy(np.stack([np.asarray(l, dtype=np.int64) for l in labs]))[:, None]
    want = (n, in_channels, *patch)
    if tuple(x.shape) != want or tuple(y.shape) != (n, 1, *patch):
        raise ModelError(f"data source returned image batch {tuple(x.shape)} and label batch {tuple(y.shape)}; expected {want} and {(n, 1, *patch)}")
    return x, y


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    from medannot.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def train(config: TrainConfig | str | Path | dict[str, Any], overrides: dict[str, Any] | None = None, progress: bool | None = None) -> Path:
    """Train a segmentation model and write its bundle folder.

    Args:
        config: A :class:`TrainConfig`, a dict, or a YAML/JSON config file.
        overrides: Dotted-key replacements (``{"epochs": 1, "out": "runs/x"}``).
        progress: Show progress bars (None = only on a terminal).

    Returns:
        The bundle folder (``config.out``).

    Raises:
        ConfigError: Invalid config. ModelError: a data source returning wrong shapes.
    """
    from medannot.training.classification_config import config_task

    if config_task(config) == "classification":
        from medannot.training.classification_trainer import train_classification

        return train_classification(config, overrides, progress=progress)  # type: ignore[arg-type]
    cfg = load_config(config, overrides)
    if cfg.task == "detection":
        from medannot.training.detection_trainer import train_detection

        return train_detection(cfg, config_path=config if isinstance(config, (str, Path)) else None, progress=progress)
    _check_patch(cfg)
    torch.set_num_threads(cfg.num_threads)
    rng = _seed_everything(cfg.seed)
    labels = {int(k): v.name for k, v in cfg.labels.items()}
    source = build_source(cfg.data.source, cfg.data.params, rng_seed=cfg.seed, patch_size=list(cfg.patch_size),
                          preprocessing=list(cfg.preprocessing), spatial_dims=cfg.spatial_dims)
    val_cases = source.validation_cases()
    model = create_network(cfg.network.name, cfg.spatial_dims, cfg.in_channels, len(labels), **cfg.network.params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    loss_fn = build_loss(cfg.loss)
    stopper = EarlyStopping(cfg.early_stopping_patience)
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] = {}
    start_epoch = 0
    seconds = 0.0
    ckpt = checkpoint_path(cfg)
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        best_state, best_metrics = state["best_state"], state["best_metrics"]
        stopper.load_state_dict(state["stopper"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        seconds = float(state.get("seconds", 0.0))
    if cfg.log_dir is not None:
        from medannot.io.atomic import atomic_write_text

        atomic_write_text(Path(cfg.log_dir) / "config.json", json.dumps(cfg.resolved(), indent=2) + "\n")
    logger = TensorBoardLogger(cfg.log_dir)
    bundle = bundle_from_config(cfg)
    from medannot.inference.predictor import Predictor

    show = progress
    epoch = start_epoch - 1
    if stopper.should_stop:  # a resumed run that had already stopped early: only write the bundle
        start_epoch = cfg.epochs
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            losses = []
            bar = tqdm(range(cfg.iterations_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None if show is None else not show, leave=False)
            for it in bar:
                lr = lr_at(cfg.optimizer, epoch * cfg.iterations_per_epoch + it, cfg.epochs * cfg.iterations_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = _batch(source, rng, cfg.batch_size, cfg.in_channels, list(cfg.patch_size))
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.close()
            step = (epoch + 1) * cfg.iterations_per_epoch
            logger.scalar("train/loss", float(np.mean(losses)), step)
            logger.scalar("train/lr", lr, step)
            last = epoch + 1 == cfg.epochs
            if val_cases and ((epoch + 1) % cfg.val_every == 0 or last):
                from medannot.training.validation import validate

                metrics = validate(Predictor(bundle, network=model), val_cases, labels)
                model.train()
                logger.scalar("val/mean_dice", metrics["mean_dice"], step)
                for lname, d in metrics["dice"].items():
                    logger.scalar(f"val/dice_{lname}", d, step)
                for lname, f in metrics.get("instance_f1", {}).items():
                    logger.scalar(f"val/instance_f1_{lname}", f, step)
                if stopper.update(metrics["mean_dice"], epoch):
                    best_state, best_metrics = _state_copy(model), dict(metrics, epoch=epoch + 1)
                if show is not False:
                    inst = f"  instance F1 {metrics['instance_f1']}" if "instance_f1" in metrics else ""
                    tqdm.write(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  val mean Dice {metrics['mean_dice']:.4f}{inst}")
            seconds += time.perf_counter() - t0
            _save_checkpoint(ckpt, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "best_state": best_state, "best_metrics": best_metrics, "stopper": stopper.state_dict(),
                "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "seconds": seconds,
            })
            if stopper.should_stop:
                break
    finally:
        logger.close()
    final_state = best_state if best_state is not None else _state_copy(model)
    run = {"best_epoch": stopper.best_epoch + 1 if stopper.best_epoch >= 0 else epoch + 1, "epochs_run": epoch + 1, "seconds": round(seconds, 1)}
    if isinstance(config, (str, Path)):
        run["config_path"] = Path(config).as_posix()  # the exact re-training command names this file
    training = dict(cfg.resolved(), run=run)
    out_bundle = bundle_from_config(cfg, state_dict=final_state, metrics=best_metrics, training=training)
    if val_cases:
        # Score exactly what is shipped (kept weights + this config's post-processing and instances).
        from medannot.training.validation import validate

        best_metrics = dict(validate(Predictor(out_bundle), val_cases, labels), epoch=run["best_epoch"])
        out_bundle = bundle_from_config(cfg, state_dict=final_state, metrics=best_metrics, training=training)
    from medannot.training.card import render_card

    out_bundle.save(cfg.out, card=render_card(cfg, best_metrics, run), half=cfg.weights_half)
    return Path(cfg.out)
