"""Tiny training configs on tiny real-format files, for tests of the training loop (SYNTHETIC data: tests only)."""

from pathlib import Path
from typing import Any

import numpy as np

from medannot.data import Image
from medannot.io import write_image


def tiny_segmentation_config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    """A 2D two-label U-Net run on a SYNTHETIC 32x64 image of four blobs (one epoch of two steps)."""
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.1, (32, 64)).astype(np.float32)
    lab = np.zeros((32, 64), np.uint8)
    for r, c in [(6, 6), (20, 14), (8, 40), (22, 50)]:
        lab[r - 3 : r + 3, c - 3 : c + 3] = 1
    img[lab > 0] += 1.0
    write_image(Image.from_spatial((img * 1000 + 2000).astype(np.uint16)), tmp_path / "img.tif")
    write_image(Image.from_spatial(lab, kind="label"), tmp_path / "lab.tif")
    cfg = {
        "name": "tiny",
        "spatial_dims": 2,
        "labels": {"0": {"name": "background"}, "1": {"name": "blob"}},
        "network": {"name": "unet", "params": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        "loss": "dice_ce",
        "epochs": 1,
        "iterations_per_epoch": 2,
        "batch_size": 2,
        "patch_size": [16, 16],
        "num_threads": 1,
        "data": {"source": "image-split", "params": {"images": [{"image": str(tmp_path / "img.tif"), "label": str(tmp_path / "lab.tif")}],
                                                      "margin": 2, "target": "binary"}},
        "preprocessing": [{"name": "percentile_normalise", "params": {}}],
        "instances": {"1": 1},
        "out": str(tmp_path / "bundle"),
        "log_dir": str(tmp_path / "logs"),
    }
    cfg.update(over)
    return cfg


