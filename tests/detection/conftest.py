"""Shared inputs of the detection tests: real crops of the stardist nuclei sample."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medannot import samples


@pytest.fixture(scope="session")
def cells_png(tmp_path_factory) -> Path:
    """A real image: a 128x128 crop of the stardist nuclei sample (right half), as 8-bit PNG."""
    arr = samples.nuclei_image().scalar()[:128, 300:428].astype(np.float32)
    arr = (255 * (arr - arr.min()) / (arr.max() - arr.min())).astype(np.uint8)
    folder = tmp_path_factory.mktemp("cells")
    PILImage.fromarray(arr).save(folder / "cells.png")
    return folder / "cells.png"


@pytest.fixture(scope="session")
def tiny_detect_bundle(tmp_path_factory) -> Path:
    """An untrained (random weights) tiny 2D detection bundle: for pipeline and error tests, never for accuracy."""
    import torch

    from medannot.models import Bundle, create_network

    torch.manual_seed(0)
    params = {"block_inplanes": [4, 8, 16, 32], "fpn_channels": 8, "returned_layers": [1, 2], "num_anchors": 2}
    net = create_network("retinanet", 2, 1, 1, **params)
    spec = {
        "name": "tiny-detect",
        "task": "detection",
        "spatial_dims": 2,
        "network": {"name": "retinanet", "params": params},
        "labels": {"0": {"name": "background", "color": [0, 0, 0]}, "1": {"name": "nucleus", "color": [255, 220, 0]}},
        "preprocessing": [{"name": "percentile_normalise", "params": {"lower": 1.0, "upper": 99.8}}],
        "inference": {"patch_size": [64, 64]},
        "detection": {"anchors": {"feature_map_scales": [1, 2, 4], "base_anchor_shapes": [[6, 6], [10, 10]]}, "score_threshold": 0.0,
                      "detections_per_image": 25, "overlay_threshold": 0.0},
    }
    folder = tmp_path_factory.mktemp("bundles") / "tiny-detect"
    Bundle.from_dict(spec, state_dict=net.state_dict()).save(folder, card="# tiny-detect\n\nUntrained; tests only.\n")
    return folder
