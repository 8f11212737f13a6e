"""A tiny promptable bundle trained in the one loop (a few steps: tests the plumbing, not accuracy)."""

from __future__ import annotations

import pytest

TINY_CONFIG = {
    "name": "tiny-promptable", "task": "promptable", "spatial_dims": 2,
    "network": {"name": "promptable-unet", "params": {"features": [4, 4, 8, 8, 16, 4]}},
    "crop": [32, 32],
    "data": {"p_synthetic": 0.5, "synthetic_patch": 64, "max_iterations": 2},
    "validation": {"synthetic": 2, "real": 2, "clicks": 3},
    "held_out": {"max_clicks": 3, "engines": ["growcut"], "limit": 3, "sources": ["nuclei-right"]},
    "epochs": 2, "iterations_per_epoch": 2, "batch_size": 4, "num_threads": 1,
}


@pytest.fixture
def tiny_config():
    """The tiny promptable training config (a fresh dict)."""
    import copy

    return copy.deepcopy(TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """Folder of a promptable bundle trained for 4 steps by ``medannot.tasks.train`` (the one loop)."""
    from medannot.tasks import train

    out = tmp_path_factory.mktemp("tiny-promptable") / "bundle"
    return train(dict(TINY_CONFIG, out=str(out)), progress=False)
