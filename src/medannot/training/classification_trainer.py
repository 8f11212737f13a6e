"""Classification training hooks for the one loop (:mod:`medannot.training.loop`).

Every sample is prepared once by :mod:`medannot.inference.classifier_input`; training batches are drawn with
replacement from the training groups and augmented (MONAI: flips, 90-degree rotations, zoom, gamma contrast,
Gaussian noise); weighted cross-entropy (``balanced``: N / (K * count_k)). By default the last weights are shipped
(``select_best: false``: no model selection on the validation groups, so they stay an honest held-out test). At the
end the loop hands the shipped bundle to :meth:`ClassificationTraining.measure_shipped`: logits on the validation
groups -> temperature scaling (ECE before / after / cross-fitted) -> metrics per class and per source group, and the
temperature is written into the bundle's ``classification`` section.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from medannot.errors import ConfigError
from medannot.evaluation.classification import classification_metrics
from medannot.inference.classifier import Classifier
from medannot.inference.classifier_input import prepare_array
from medannot.models.bundle import Bundle
from medannot.models.classification_spec import CalibrationSpec, ClassificationSection
from medannot.models.registry import create_network, resolved_params
from medannot.training.calibration import calibration_summary, temperature_probabilities
from medannot.training.classification_card import render_classification_card
from medannot.training.classification_config import ClassificationConfig
from medannot.training.classification_data import ClassSample, load_samples, split_by_group
from medannot.training.loop import Shipped, Validation

__all__ = ["ClassificationTraining", "classification_bundle", "class_weights"]


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
    data = {
        "name": cfg.name, "version": cfg.version, "task": "classification", "spatial_dims": cfg.spatial_dims,
        "in_channels": cfg.in_channels,
        "network": {"name": cfg.network.name, "params": json.loads(json.dumps(resolved_params(cfg.network.name, cfg.network.params), default=list))},
        "labels": {str(i): {"name": c} for i, c in enumerate(cfg.classes)},
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
    picked: dict[str, Any] = {key: m[key] for key in keep}  # type: ignore[literal-required]  # keys of the TypedDict
    return {**picked, "per_group": per_group, "calibration": calib}


class ClassificationTraining:
    """The classification task's :class:`~medannot.training.loop.TrainingHooks`.

    Every sample is prepared once (:mod:`medannot.inference.classifier_input`); a batch draws training samples with
    replacement and augments them; the loss is class-weighted cross-entropy. Validation (for the log and, when the
    config asks, for choosing the weights) scores accuracy on the validation groups. The shipped bundle is
    calibrated (temperature scaling on the validation groups, ECE before / after / cross-fitted) and scored per
    class and per source group.

    Args:
        cfg: A validated :class:`ClassificationConfig`.

    Raises:
        ConfigError: Unknown classes, or a class without training data. InputError: unreadable data.
    """

    def __init__(self, cfg: ClassificationConfig) -> None:
        self.cfg = cfg
        self.samples = load_samples(cfg.data.source, cfg.data.params, cfg.spatial_dims)
        self.x, self.y = _prepare_all(cfg, self.samples)
        self.train_idx, self.val_idx = split_by_group(self.samples, cfg.data.validation_groups, cfg.data.validation_fraction, cfg.seed)
        k = len(cfg.classes)
        weights = class_weights(self.y[self.train_idx], k, cfg.class_weights.value)
        self.network = create_network(cfg.network.name, cfg.spatial_dims, cfg.in_channels, k, **cfg.network.params)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights))
        self.augment = _augmenter(cfg, cfg.seed)
        self._train = np.asarray(self.train_idx)
        self.groups_val = [self.samples[i].group for i in self.val_idx]

    def train_mode(self) -> None:
        """The network trains."""
        self.network.train()

    def loss(self, rng: np.random.Generator) -> torch.Tensor:
        """Weighted cross-entropy of one augmented batch drawn with replacement."""
        pick = rng.choice(self._train, size=self.cfg.batch_size, replace=True)
        self.augment.set_random_state(seed=int(rng.integers(2**31)))  # driven by the loop's generator: resumable
        xb = torch.stack([torch.as_tensor(self.augment(self.x[i])).float() for i in pick])
        return self.loss_fn(self.network(xb), torch.from_numpy(self.y[pick]))

    def _probe(self, state: dict[str, torch.Tensor] | None = None, network: torch.nn.Module | None = None) -> Classifier:
        return Classifier(classification_bundle(self.cfg, state), network=network, calibrated=False)

    def validate(self) -> Validation | None:
        """Accuracy and macro F1 (uncalibrated) on the validation groups; accuracy is the score."""
        if not self.val_idx:
            return None
        logits, _ = self._probe(network=self.network.eval()).logits_and_features(self.x[self.val_idx])
        pred = logits.argmax(axis=1)
        truth = self.y[self.val_idx]
        acc = float(np.mean(pred == truth))
        return Validation(acc, {"accuracy": acc}, {"accuracy": acc}, f"val accuracy {acc:.4f}")

    def bundle(self, state_dict: dict[str, torch.Tensor], metrics: dict[str, Any], training: dict[str, Any]) -> Bundle:
        """The (not yet calibrated) bundle of these weights."""
        return classification_bundle(self.cfg, state_dict, None, metrics, training)

    def measure_shipped(self, bundle: Bundle, selected: dict[str, Any]) -> Shipped:
        """Temperature scaling and per-class / per-group metrics of the shipped weights on the validation groups."""
        if not self.val_idx:
            return Shipped({})
        logits, _ = Classifier(bundle, calibrated=False).logits_and_features(self.x[self.val_idx])
        metrics = _evaluate(self.cfg, logits, self.y[self.val_idx], self.groups_val)
        c = metrics["calibration"]
        calibration: dict[str, Any] = {"temperature": 1.0, "calibrated": False}
        if self.cfg.calibrate:
            calibration = {"temperature": round(c["temperature"], 5), "calibrated": True, "ece_before": round(c["ece_before"], 5),
                           "ece_after": round(c["ece_after"], 5), "fitted_on": _groups_text(sorted(set(self.groups_val)))}
        section = ClassificationSection(input=self.cfg.input, calibration=CalibrationSpec.model_validate(calibration))
        return Shipped(metrics, spec_updates={"classification": section})

    def data_record(self) -> dict[str, Any]:
        """Training and validation source groups and sample counts."""
        return {"train_groups": sorted({self.samples[i].group for i in self.train_idx}), "val_groups": sorted(set(self.groups_val)),
                "n_train": len(self.train_idx), "n_val": len(self.val_idx)}

    def card(self, metrics: dict[str, Any], run: dict[str, Any]) -> str:
        """The classification model card (split by source, per-class results, calibration)."""
        return render_classification_card(self.cfg, metrics, run, self.samples, self.train_idx, self.val_idx)
