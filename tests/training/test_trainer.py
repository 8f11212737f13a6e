"""A tiny training run writes a loadable bundle; resume continues where it stopped."""

import json

import numpy as np
import pytest
import torch

from medannot.data import Image
from medannot.errors import ConfigError
from medannot.inference import Predictor
from medannot.models import Bundle
from medannot.tasks import train
from traininghelpers import tiny_segmentation_config as _config


def test_tiny_run_writes_loadable_bundle(tmp_path):
    out = train(_config(tmp_path), progress=False)
    b = Bundle.load(out)
    assert b.name == "tiny" and b.spec.training["loss"] == "dice_ce"
    assert set(b.spec.metrics["dice"]) == {"blob"} and 0.0 <= b.spec.metrics["mean_dice"] <= 1.0
    assert "instance_f1" in b.spec.metrics
    assert "medannot train configs/tiny.yaml" in (out / "MODEL_CARD.md").read_text()
    assert (tmp_path / "logs" / "config.json").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "logs").iterdir())
    pred = Predictor.from_bundle(out).predict(Image.from_spatial(np.zeros((24, 40), np.float32)))
    assert pred.labels.spatial_shape == (24, 40) and pred.labels.array.dtype == np.uint8


def test_resume_equals_uninterrupted(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = train(_config(tmp_path / "a", epochs=2), progress=False)
    train(_config(tmp_path / "b", epochs=1), progress=False)
    resumed = train(_config(tmp_path / "b", epochs=2, resume=True), progress=False)
    run = json.loads((resumed / "bundle.json").read_text())["training"]["run"]
    assert run["epochs_run"] == 2
    sa = Bundle.load(full).build_network().state_dict()
    sb = Bundle.load(resumed).build_network().state_dict()
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa)


def test_patch_not_divisible(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 2"):
        train(_config(tmp_path, patch_size=[15, 16]), progress=False)
