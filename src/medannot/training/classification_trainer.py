"""Training loop for image classification: ``train_classification(config) -> bundle folder``.

Seeded; every sample prepared once by :mod:`medannot.inference.classifier_input`; training batches drawn with
replacement from the training groups and augmented (MONAI: flips, 90-degree rotations, zoom, gamma contrast,
Gaussian noise); weighted cross-entropy (``balanced``: N / (K * count_k)); AdamW with the learning-rate schedule
of :mod:`medannot.training.config`. The final weights are kept (no model selection on the validation groups, so
they stay an honest held-out test). At the end: logits on the validation groups -> temperature scaling (ECE
before / after / cross-fitted) -> metrics per class and per source group -> bundle folder (``bundle.json``
with a ``classification`` section, ``weights.pt``, ``MODEL_CARD.md``).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medannot.errors import ConfigError
from medannot.inference.classifier_input import prepare_array
from medannot.models.bundle import Bundle
from medannot.training.classification_config import ClassificationConfig, load_classification_config
from medannot.training.classification_data import ClassSample, load_samples, split_by_group
from medannot.training.config import lr_at

__all__ = ["train_classification", "classification_bundle", "class_weights"]

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def class_weights(y: np.ndarray, k: int, mode: str) -> np.ndarray:
    """Cross-entropy weights: ``balanced`` = N / (K * count_k) (a missing class gets weight 0), else all ones.

    Raises:
        ConfigError: A class without any training sample under ``balanced`` weights.
    """
    if mode == "none":
        return np.ones(k, np.float32)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    if (counts == 0).any():
        raise ConfigError(f"classes {np.flatnonzero(counts == 0).tolist()} have no training sample; add data or hold out fewer groups")
    return (len(y) / (k * counts)).astype(np.float32)


def classification_bundle(cfg: ClassificationConfig, state_dict: dict[str, torch.Tensor] | None = None, calibration: dict[str, Any] | None = None,
                          metrics: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> Bundle:
    """An in-memory classification :class:`Bundle` for ``cfg``."""
    from medannot.models.classification import classifier_params

    data = {
        "name": cfg.name, "version": cfg.version, "task": "classification", "spatial_dims": cfg.spatial_dims,
        "in_channels": cfg.in_channels,
        "network": {"name": cfg.network.name, "params": json.loads(json.dumps(classifier_params(cfg.network.name, cfg.network.params), default=list))},
        "labels": {str(i): {"name": c, "color": _COLOURS[i % len(_COLOURS)]} for i, c in enumerate(cfg.classes)},
        "inference": {"patch_size": list(cfg.input.input_size)},
        "classification": {"input": cfg.input.model_dump(mode="json"), "calibration": calibration or {}},
        "training": training if training is not None else cfg.resolved(),
        "metrics": metrics or {},
    }
    return Bundle.from_dict(data, state_dict=state_dict)


def _groups_text(groups: list[str], limit: int = 12) -> str:
    """``validation groups: a, b, c`` (at most ``limit`` named, then ``and N more``)."""
    more = f" and {len(groups) - limit} more" if len(groups) > limit else ""
    return f"{len(groups)} validation groups: " + ", ".join(groups[:limit]) + more


def _augmenter(cfg: ClassificationConfig, seed: int) -> Any:
    from monai.transforms import Compose, RandAdjustContrast, RandFlip, RandGaussianNoise, RandRotate90, RandZoom

    a = cfg.augment
    steps: list[Any] = []
    if a.flip:
        steps += [RandFlip(prob=0.5, spatial_axis=i) for i in range(cfg.spatial_dims)]
    if a.rotate90:
        steps.append(RandRotate90(prob=0.5, max_k=3))
    if a.zoom != (1.0, 1.0):
        steps.append(RandZoom(prob=0.5, min_zoom=a.zoom[0], max_zoom=a.zoom[1], keep_size=True, padding_mode="constant"))
    steps.append(RandAdjustContrast(prob=0.5, gamma=a.contrast_gamma))
    if a.noise_std > 0:
        steps.append(RandGaussianNoise(prob=0.5, std=a.noise_std))
    return Compose(steps).set_random_state(seed=seed)


def _prepare_all(cfg: ClassificationConfig, samples: list[ClassSample]) -> tuple[np.ndarray, np.ndarray]:
    index = {c: i for i, c in enumerate(cfg.classes)}
    unknown = sorted({s.label for s in samples} - set(index))
    if unknown:
        raise ConfigError(f"the data has classes {unknown} that are not in the config's classes {cfg.classes}")
    x = np.stack([prepare_array(s.array, cfg.spatial_dims, cfg.input, cfg.in_channels, s.name) for s in samples])
    return x, np.array([index[s.label] for s in samples], dtype=np.int64)


def _evaluate(cfg: ClassificationConfig, logits: np.ndarray, y: np.ndarray, groups: list[str]) -> dict[str, Any]:
    from medannot.evaluation.classification import classification_metrics
    from medannot.training.calibration import calibration_summary, temperature_probabilities

    calib = calibration_summary(logits, y, groups)
    prob = temperature_probabilities(logits, calib["temperature"] if cfg.calibrate else 1.0)
    k = len(cfg.classes)
    m = classification_metrics([cfg.classes[i] for i in y], y_prob=prob, labels=cfg.classes)
    pred = prob.argmax(axis=1)
    per_group = {}
    for g in sorted(set(groups)):
        idx = [i for i, gg in enumerate(groups) if gg == g]
        votes = np.bincount(pred[idx], minlength=k)
        per_group[g] = {"truth": cfg.classes[int(y[idx[0]])], "n": len(idx), "accuracy": float(np.mean(pred[idx] == y[idx])),
                        "majority": cfg.classes[int(votes.argmax())]}
    keep = ("n", "labels", "accuracy", "balanced_accuracy", "per_class", "macro_f1", "confusion_matrix", "roc_auc", "brier", "ece")
    return {**{key: m[key] for key in keep}, "per_group": per_group, "calibration": calib}


def train_classification(config: ClassificationConfig | str | Path | dict[str, Any], overrides: dict[str, Any] | None = None,
                         progress: bool | None = None) -> Path:
    """Train a classifier and write its bundle folder.

    Args:
        config: A :class:`ClassificationConfig`, a dict, or a YAML/JSON file.
        overrides: Dotted-key replacements (``{"epochs": 1}``).
        progress: Show progress bars (None = only on a terminal).

    Returns:
        The bundle folder (``config.out``).

    Raises:
        ConfigError: Invalid config, unknown classes, a class without training data. InputError: unreadable data.
    """
    from medannot.models.classification import create_classifier_network

    cfg = load_classification_config(config, overrides)
    t_start = time.perf_counter()
    torch.set_num_threads(cfg.num_threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    samples = load_samples(cfg.data.source, cfg.data.params, cfg.spatial_dims)
    x_all, y_all = _prepare_all(cfg, samples)
    train_idx, val_idx = split_by_group(samples, cfg.data.validation_groups, cfg.data.validation_fraction, cfg.seed)
    k = len(cfg.classes)
    weights = class_weights(y_all[train_idx], k, cfg.class_weights.value)
    model = create_classifier_network(cfg.network.name, cfg.spatial_dims, cfg.in_channels, k, **cfg.network.params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights))
    augment = _augmenter(cfg, cfg.seed)
    total = cfg.epochs * cfg.steps_per_epoch
    train_idx_arr = np.asarray(train_idx)
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        bar = tqdm(range(cfg.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None if progress is None else not progress, leave=False)
        for it in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg.optimizer, epoch * cfg.steps_per_epoch + it, total)
            pick = rng.choice(train_idx_arr, size=cfg.batch_size, replace=True)
            xb = torch.stack([torch.as_tensor(augment(x_all[i])).float() for i in pick])
            yb = torch.from_numpy(y_all[pick])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append(round(float(np.mean(losses)), 4))
    seconds = time.perf_counter() - t_start
    state = {kk: v.detach().clone() for kk, v in model.state_dict().items()}
    groups_val = [samples[i].group for i in val_idx]
    run: dict[str, Any] = {"epochs_run": cfg.epochs, "seconds": round(seconds, 1), "train_loss": history,
                           "train_groups": sorted({samples[i].group for i in train_idx}), "val_groups": sorted(set(groups_val)),
                           "n_train": len(train_idx), "n_val": len(val_idx)}
    if isinstance(config, (str, Path)):
        run["config_path"] = Path(config).as_posix()
    metrics: dict[str, Any] = {}
    calibration: dict[str, Any] = {"temperature": 1.0, "calibrated": False}
    if val_idx:
        from medannot.inference.classifier import Classifier

        probe = Classifier(classification_bundle(cfg, state), network=model.eval(), calibrated=False)
        logits, _ = probe.logits_and_features(x_all[val_idx])
        metrics = _evaluate(cfg, logits, y_all[val_idx], groups_val)
        c = metrics["calibration"]
        if cfg.calibrate:
            calibration = {"temperature": round(c["temperature"], 5), "calibrated": True, "ece_before": round(c["ece_before"], 5),
                           "ece_after": round(c["ece_after"], 5), "fitted_on": _groups_text(sorted(set(groups_val)))}
    training = dict(cfg.resolved(), run=run)
    bundle = classification_bundle(cfg, state, calibration, metrics, training)
    from medannot.training.classification_card import render_classification_card

    bundle.save(cfg.out, card=render_classification_card(cfg, metrics, run, samples, train_idx, val_idx), half=cfg.weights_half)
    return Path(cfg.out)
