"""Feature vectors for similar-case retrieval: four blocks, each L2-normalised, weighted, concatenated.

Blocks (dimensions fixed, so 2D images and 3D volumes share one index):

- ``embedding``: a classification bundle's pooled features (the input of its final layer, see
  :func:`medannot.models.classification.embed`); default the bundled ``modality`` model;
- ``intensity``: 32-bin histogram of the intensities after clipping to the 1st-99th percentiles and scaling to
  [0, 1] (over all voxels);
- ``orientation``: HOG (scikit-image, 9 orientations, 16x16-pixel cells, 2x2-cell blocks, L2-Hys) of the image
  padded to square and resized to 64x64;
- ``text``: hashed bag of words (64 buckets, CRC32 of each lower-case token, ``1 + ln(count)``) of the label
  names in the case's ``annotation.json`` (labels present, classification label, box labels); all zeros when
  there is none.

A 3D volume is seen through its three orthogonal middle slices: the 2D blocks are the mean over the three
(embedding and HOG), the histogram is over the whole volume. A 2D block of zeros stays zero after
normalisation. The final vector is divided by its norm, so the cosine similarity of two cases is a dot product.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medannot.data.image import Image
from medannot.errors import ModelError
from medannot.inference.classifier_input import prepare_array
from medannot.models.classification_spec import ClassifierInput

__all__ = ["FeatureExtractor", "BLOCK_DIMS", "DEFAULT_WEIGHTS", "hashed_text", "annotation_words"]

HIST_BINS = 32
TEXT_BUCKETS = 64
HOG_SIZE = 64
BLOCK_DIMS = {"intensity": HIST_BINS, "orientation": 324, "text": TEXT_BUCKETS}
DEFAULT_WEIGHTS = {"embedding": 1.0, "intensity": 0.5, "orientation": 0.5, "text": 0.5}
_TOKEN = re.compile(r"[a-z0-9]+")


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def hashed_text(words: list[str]) -> np.ndarray:
    """Hashed bag of words (``TEXT_BUCKETS`` float32, sublinear counts ``1 + ln(count)``), not normalised."""
    v = np.zeros(TEXT_BUCKETS, np.float64)
    tokens = [t for w in words for t in _TOKEN.findall(str(w).lower())]
    for t in tokens:
        v[zlib.crc32(t.encode()) % TEXT_BUCKETS] += 1.0
    v[v > 0] = 1.0 + np.log(v[v > 0])
    return v.astype(np.float32)


def annotation_words(annotation: dict[str, Any]) -> list[str]:
    """Label names an ``annotation.json`` dict mentions: labels with voxels, the classification label, box labels."""
    words = [str(lab.get("name", "")) for lab in annotation.get("labels", []) if lab.get("voxels", 0) or lab.get("box_count", 0)]
    cls = annotation.get("classification") or {}
    if cls.get("label"):
        words.append(str(cls["label"]))
    words += [str(b.get("label_name", "")) for b in annotation.get("boxes", [])]
    return [w for w in words if w]


def _views(image: Image) -> list[np.ndarray]:
    """Channel-first 2D views: the image itself, or the three orthogonal middle slices of a volume."""
    a = np.asarray(image.array, np.float32)
    if image.ndim == 2:
        return [a]
    return [np.take(a, a.shape[1 + ax] // 2, axis=1 + ax) for ax in range(3)]


@dataclass
class FeatureExtractor:
    """Computes the retrieval vector of an image.

    Args:
        model: Classification bundle (name or folder) for the embedding block; None = no embedding block.
        weights: Block name -> weight (missing blocks weigh 0).
    """

    model: str | None = "modality"
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        self.classifier = None
        if self.model:
            from medannot.inference.classifier import Classifier

            self.classifier = Classifier.from_bundle(self.model)
        emb = 0
        if self.classifier is not None:
            x = np.zeros((1, self.classifier.bundle.in_channels, *self.classifier.input_spec.input_size), np.float32)
            emb = self.classifier.logits_and_features(x)[1].shape[1]
        dims = {"embedding": emb, **BLOCK_DIMS}
        self.blocks: dict[str, tuple[int, int]] = {}
        start = 0
        for name in ("embedding", "intensity", "orientation", "text"):
            self.blocks[name] = (start, start + dims[name])
            start += dims[name]
        self.dim = start
        self._hog_spec = ClassifierInput(input_size=[HOG_SIZE, HOG_SIZE])

    def describe(self) -> dict[str, Any]:
        """What the vector holds (stored in the index)."""
        info: dict[str, Any] = {"blocks": {k: list(v) for k, v in self.blocks.items()}, "weights": self.weights, "dim": self.dim}
        if self.classifier is not None:
            b = self.classifier.bundle
            info["model"] = {"name": b.name, "version": b.version, "sha256": b.spec.sha256}
        return info

    def _embedding(self, image: Image, views: list[np.ndarray]) -> np.ndarray:
        """Mean embedding of the views (2D model), or of the volume (3D model; a 2D image gives zeros)."""
        c = self.classifier
        if c is None:
            raise ModelError("the feature extractor has no model: build it with a classification bundle to get embeddings")
        if c.bundle.spatial_dims == 3:
            if image.ndim != 3:
                return np.zeros(self.blocks["embedding"][1] - self.blocks["embedding"][0], np.float32)
            return c.logits_and_features(prepare_array(image.array, 3, c.input_spec, c.bundle.in_channels)[None])[1][0]
        batch = np.stack([prepare_array(v, 2, c.input_spec, c.bundle.in_channels) for v in views])
        return c.logits_and_features(batch)[1].mean(axis=0)

    def _hog(self, views: list[np.ndarray]) -> np.ndarray:
        from skimage.feature import hog

        out = []
        for v in views:
            img = prepare_array(v, 2, self._hog_spec, 1)[0]
            out.append(hog(img, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2), block_norm="L2-Hys", feature_vector=True))
        return np.mean(out, axis=0)

    def vector(self, image: Image, annotation: dict[str, Any] | None = None) -> np.ndarray:
        """The weighted, L2-normalised retrieval vector (float32, ``dim``) of one image.

        Args:
            image: 2D image or 3D volume (intensity; RGB is averaged to grey).
            annotation: Its ``annotation.json`` content, for the text block (None = zeros).
        """
        grey = image.array[:3].mean(axis=0, keepdims=True) if image.channels in (3, 4) else image.array[:1]
        g = image.with_array(np.asarray(grey, np.float32))
        views = _views(g)
        parts: dict[str, np.ndarray] = {}
        if self.classifier is not None:
            parts["embedding"] = self._embedding(g, views)
        flat = g.array.ravel()
        lo, hi = np.percentile(flat, [1, 99])
        scaled = np.clip((flat - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(flat)
        parts["intensity"] = np.histogram(scaled, bins=HIST_BINS, range=(0.0, 1.0))[0].astype(np.float32)
        parts["orientation"] = self._hog(views)
        parts["text"] = hashed_text(annotation_words(annotation or {}))
        out = np.zeros(self.dim, np.float32)
        for name, (a, b) in self.blocks.items():
            if b > a and name in parts:
                out[a:b] = float(self.weights.get(name, 0.0)) * _unit(np.asarray(parts[name], np.float32))
        return _unit(out)
