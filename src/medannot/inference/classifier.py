"""Classifier: a classification bundle loaded for inference; ``predict(image) -> ClassPrediction``.

The path an image takes: :mod:`medannot.inference.classifier_input` (grey, middle slice for a 2D model given a
volume, percentile scaling to [0, 1], pad to square, resize) -> the network under ``torch.inference_mode`` ->
logits divided by the bundle's temperature (temperature scaling fitted on validation data; 1 when the bundle
is not calibrated) -> softmax. The pooled features entering the final layer are kept as the image's embedding
(used by :mod:`medannot.retrieval`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medannot.data.image import Image
from medannot.errors import ModelError
from medannot.inference.classifier_input import prepare_image
from medannot.inference.engines import Engine, onnx_network
from medannot.models.bundle import Bundle
from medannot.models.classification_spec import CalibrationSpec, ClassifierInput

__all__ = ["ClassPrediction", "Classifier", "classification_section"]


@dataclass
class ClassPrediction:
    """One image's class.

    Attributes:
        label: Predicted class name (arg-max of the probabilities).
        index: Its class index (the bundle's label key).
        probabilities: Class name -> probability (calibrated when ``calibrated``), summing to 1.
        calibrated: Whether temperature scaling was applied.
        temperature: The temperature used (1.0 when not calibrated).
        embedding: Pooled features (float32, ``(D,)``) of the network's last layer input.
        timings: Seconds per stage (preprocess, network, total).
    """

    label: str
    index: int
    probabilities: dict[str, float]
    calibrated: bool
    temperature: float
    embedding: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``classification`` block of ``annotation.json``."""
        return {
            "label": self.label,
            "index": self.index,
            "probability": self.probabilities[self.label],
            "probabilities": self.probabilities,
            "calibrated": self.calibrated,
            "temperature": self.temperature,
        }


def classification_section(bundle: Bundle) -> tuple[ClassifierInput, CalibrationSpec]:
    """The input rules and calibration of a classification bundle (``bundle.json`` ``classification``).

    Raises:
        ModelError: A bundle without a ``classification`` section (not a classifier), or a label map not numbered 0..K-1.
    """
    section = bundle.spec.classification
    if section is None:
        raise ModelError(f"model {bundle.name!r} is a {bundle.task} model, not a classifier", bundle.path)
    if sorted(bundle.labels) != list(range(len(bundle.labels))) or len(bundle.labels) < 2:
        raise ModelError(f"a classifier's label map must number its classes 0..K-1 (K >= 2), got values {sorted(bundle.labels)}", bundle.path)
    return section.input, section.calibration


class Classifier:
    """Runs a classification bundle on images.

    Args:
        bundle: The bundle (task ``classification``).
        network: An already built network (e.g. the one being trained); its weights are used as they are.
        calibrated: Apply the bundle's temperature (None: when the bundle has one).
        engine: ``pytorch``, or ``onnxruntime`` / ``onnxruntime-int8`` for the class and embedding (the bundle's ONNX
            export returns both); ``network`` (PyTorch) still serves the explanation maps, which need gradients.

    Raises:
        ModelError: Not a classifier, or the engine's ONNX export is missing or stale.
    """

    def __init__(self, bundle: Bundle, network: torch.nn.Module | None = None, calibrated: bool | None = None,
                 engine: Engine | str = Engine.PYTORCH) -> None:
        self.bundle = bundle
        self.input_spec, self.calibration = classification_section(bundle)
        self.engine = Engine.PYTORCH if network is not None else Engine.parse(engine)
        self.onnx = None if self.engine is Engine.PYTORCH else onnx_network(bundle, self.engine)
        self.network = network if network is not None else bundle.build_network()
        self.class_names = [bundle.labels[i] for i in range(len(bundle.labels))]
        use = self.calibration.calibrated if calibrated is None else bool(calibrated)
        self.temperature = float(self.calibration.temperature) if use else 1.0
        self.calibrated = use and self.calibration.calibrated

    @classmethod
    def from_bundle(cls, bundle: Bundle | str | Path, calibrated: bool | None = None, engine: Engine | str = Engine.PYTORCH) -> Classifier:
        """Load a bundle (folder, bundled name or :class:`Bundle`).

        Raises:
            ModelError: Unknown/corrupt bundle or not a classifier.
        """
        b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        return cls(b, calibrated=calibrated, engine=engine)

    def prepare(self, image: Image) -> np.ndarray:
        """The network input ``(C, *input_size)`` float32 for one image."""
        return prepare_image(image, self.bundle.spatial_dims, self.input_spec, self.bundle.in_channels)

    def logits_and_features(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated logits ``(N, K)`` and embeddings ``(N, D)`` (float32) of prepared inputs ``(N, C, *input_size)``."""
        from medannot.models.classification import embed

        if self.onnx is not None:
            feats_np, logits_np = self.onnx.run(np.asarray(batch, dtype=np.float32))
            return logits_np.astype(np.float32, copy=False), feats_np.astype(np.float32, copy=False)
        x = torch.as_tensor(np.asarray(batch, dtype=np.float32))
        self.network.eval()
        with torch.inference_mode():
            feats, logits = embed(self.network, self.bundle.spec.network.name, x)
        return logits.float().numpy(), feats.float().numpy()

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """``softmax(logits / temperature)`` (float64, rows sum to 1)."""
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, image: Image) -> ClassPrediction:
        """Classify one image.

        Raises:
            InputError: Wrong channel count, a label map, or a 2D image for a 3D model.
        """
        t0 = time.perf_counter()
        x = self.prepare(image)[None]
        t1 = time.perf_counter()
        logits, feats = self.logits_and_features(x)
        t2 = time.perf_counter()
        prob = self.probabilities(logits)[0]
        k = int(np.argmax(prob))
        return ClassPrediction(
            label=self.class_names[k], index=k,
            probabilities={n: round(float(p), 6) for n, p in zip(self.class_names, prob)},
            calibrated=self.calibrated, temperature=self.temperature, embedding=feats[0],
            timings={"preprocess": t1 - t0, "network": t2 - t1, "total": time.perf_counter() - t0},
        )
