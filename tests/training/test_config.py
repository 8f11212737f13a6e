"""Config validation: errors name the file and the field."""

import pytest
import yaml

from medannot.errors import ConfigError
from medannot.training import LossName, load_config
from medannot.training.losses import build_loss

BASE = {
    "name": "t",
    "spatial_dims": 2,
    "labels": {"0": {"name": "background"}, "1": {"name": "fg"}},
    "network": {"name": "unet"},
    "patch_size": [16, 16],
    "data": {"source": "image-split", "params": {}},
    "out": "x",
}


def test_valid_config_from_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(dict(BASE, loss="focal")))
    cfg = load_config(p, {"epochs": 3, "data.params.margin": 4})
    assert cfg.loss is LossName.FOCAL and cfg.epochs == 3 and cfg.data.params == {"margin": 4}
    assert cfg.inference_patch_size == [16, 16]


def test_unknown_loss_names_field_and_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(dict(BASE, loss="dicee")))
    with pytest.raises(ConfigError, match=r"c\.yaml.*loss") as info:
        load_config(p)
    assert "dice_ce" in str(info.value)


def test_missing_field_is_named():
    data = dict(BASE)
    del data["patch_size"]
    with pytest.raises(ConfigError, match="patch_size: Field required"):
        load_config(data)


def test_unknown_key_and_wrong_patch(tmp_path):
    with pytest.raises(ConfigError, match="epoch"):
        load_config(dict(BASE, epoch=3))
    with pytest.raises(ConfigError, match="patch_size"):
        load_config(dict(BASE, patch_size=[16, 16, 16]))


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)


@pytest.mark.parametrize("name", list(LossName))
def test_every_loss_runs(name):
    import torch

    loss = build_loss(name)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 8, 8))
    value = loss(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)


def test_unknown_loss_in_build():
    with pytest.raises(ConfigError, match="dice_focal"):
        build_loss("nope")


def test_lr_schedules():
    import math

    from medannot.training.config import OptimizerConfig, lr_at

    const = OptimizerConfig(lr=0.01)
    assert [lr_at(const, s, 100) for s in (0, 50, 99)] == [0.01] * 3
    cos = OptimizerConfig(lr=0.01, schedule="cosine", warmup_steps=10)
    assert lr_at(cos, 0, 110) == pytest.approx(0.001) and lr_at(cos, 9, 110) == pytest.approx(0.01)
    assert lr_at(cos, 60, 110) == pytest.approx(0.005)  # half way through the cosine
    assert lr_at(cos, 110, 110) == pytest.approx(0.0, abs=1e-12)
    poly = OptimizerConfig(lr=0.01, schedule="poly")
    assert lr_at(poly, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert not math.isnan(lr_at(poly, 200, 100))
