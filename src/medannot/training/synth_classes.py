"""SYNTHETIC two-class images for tests and benchmarks of the classification path (never for accuracy claims).

Each image is Gaussian noise with one bright Gaussian blob; its class is *where* the blob is:
``synthetic_top_left`` (blob centre in the top-left quadrant) or ``synthetic_bottom_right``. The answer to
"where did the classifier look" is therefore known: the quadrant holding the blob. Intensities are uint8
(noise around 60, blob peak around 220), sizes in pixels, spacing 1 mm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SYNTH_CLASSES", "synthetic_blob_image", "synthetic_classification_config", "write_synthetic_class_folder"]

SYNTH_CLASSES = ("synthetic_top_left", "synthetic_bottom_right")


def synthetic_blob_image(label: str, size: int = 64, rng: np.random.Generator | None = None) -> np.ndarray:
    """One SYNTHETIC ``(size, size)`` uint8 image of class ``label`` (see the module docstring).

    Args:
        label: One of :data:`SYNTH_CLASSES`.
        size: Side in pixels (>= 16).
        rng: Random generator (default: seeded 0).

    Raises:
        ValueError: Unknown label or too small a size.
    """
    if label not in SYNTH_CLASSES:
        raise ValueError(f"label must be one of {SYNTH_CLASSES}, got {label!r}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    rng = rng or np.random.default_rng(0)
    q = size // 2
    lo, hi = int(0.2 * q), int(0.8 * q)
    cy, cx = rng.integers(lo, hi, size=2)
    if label == "synthetic_bottom_right":
        cy, cx = cy + q, cx + q
    sigma = rng.uniform(0.08, 0.14) * size
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    img = 60 + rng.normal(0, 12, (size, size)) + 160 * blob
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_class_folder(root: str | Path, n_per_class: int = 24, size: int = 64, seed: int = 0) -> Path:
    """Write ``root/<class>/synthetic_<i>.png`` for both classes (a folder-per-class layout) and return ``root``."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    base = Path(root)
    for label in SYNTH_CLASSES:
        (base / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            PILImage.fromarray(synthetic_blob_image(label, size, rng)).save(base / label / f"synthetic_{i:03d}.png")
    return base


def synthetic_classification_config(data_root: str | Path, out: str | Path, **extra: Any) -> dict[str, Any]:
    """A small classification config (dict) on a :func:`write_synthetic_class_folder` folder; ``extra`` replaces keys.

    No flips or rotations (the class is the blob's place); densenet-small at 64x64, 6 epochs of 10 steps.
    """
    cfg: dict[str, Any] = {
        "name": "toy-quadrant",
        "task": "classification",
        "spatial_dims": 2,
        "classes": list(SYNTH_CLASSES),
        "network": {"name": "densenet-small"},
        "input": {"input_size": [64, 64]},
        "data": {"source": "folder", "params": {"root": str(data_root)}, "validation_fraction": 0.25},
        "augment": {"flip": False, "rotate90": False, "zoom": [1.0, 1.0], "contrast_gamma": [0.8, 1.25], "noise_std": 0.02},
        "optimizer": {"lr": 0.003},
        "epochs": 6,
        "iterations_per_epoch": 10,
        "batch_size": 16,
        "num_threads": 2,
        "out": str(out),
        "card": {"description": "SYNTHETIC toy (blob top-left vs bottom-right): tests only, says nothing about real images."},
    }
    cfg.update(extra)
    return cfg
