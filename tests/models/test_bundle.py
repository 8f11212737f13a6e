"""Bundle save/load round trip, checksum, missing files, bundled-name lookup."""

import json

import pytest
import torch

from medannot.errors import ModelError
from medannot.models import Bundle, list_bundles
from medannot.models.registry import create_network


def _bundle(channels=(4, 8)) -> Bundle:
    torch.manual_seed(0)
    net = create_network("unet", 2, 1, 2, channels=channels, strides=(2,), num_res_units=1)
    spec = {
        "name": "tiny",
        "version": "1.2.3",
        "spatial_dims": 2,
        "in_channels": 1,
        "network": {"name": "unet", "params": {"channels": list(channels), "strides": [2], "num_res_units": 1}},
        "labels": {"0": {"name": "background", "color": [0, 0, 0]}, "1": {"name": "blob", "color": [255, 0, 0]}},
        "inference": {"patch_size": [16, 16]},
    }
    return Bundle.from_dict(spec, state_dict=net.state_dict())


def test_round_trip(tmp_path):
    b = _bundle()
    folder = b.save(tmp_path / "tiny", card="# tiny\n")
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["MODEL_CARD.md", "bundle.json", "weights.pt"]
    data = json.loads((folder / "bundle.json").read_text())
    assert len(data["sha256"]) == 64
    loaded = Bundle.load(folder)
    assert loaded.name == "tiny" and loaded.version == "1.2.3" and loaded.labels == {0: "background", 1: "blob"}
    assert loaded.card_path == folder / "MODEL_CARD.md"
    net = loaded.build_network()
    assert not net.training
    ref = b.build_network()
    x = torch.randn(1, 1, 16, 16)
    with torch.inference_mode():
        assert torch.equal(net(x), ref(x))


def test_half_weights_load_as_float32(tmp_path):
    full = (_bundle((32, 64)).save(tmp_path / "full") / "weights.pt").stat().st_size
    half = (_bundle((32, 64)).save(tmp_path / "half", half=True) / "weights.pt").stat().st_size
    assert half < 0.7 * full
    net = Bundle.load(tmp_path / "half").build_network()
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_sha256_mismatch(tmp_path):
    folder = _bundle().save(tmp_path / "tiny")
    raw = bytearray((folder / "weights.pt").read_bytes())
    raw[-10] ^= 0xFF
    (folder / "weights.pt").write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="checksum mismatch"):
        Bundle.load(folder).build_network()


def test_missing_and_corrupt_files(tmp_path):
    folder = _bundle().save(tmp_path / "tiny")
    (folder / "weights.pt").unlink()
    with pytest.raises(ModelError, match="weights.pt"):
        Bundle.load(folder)
    (folder / "bundle.json").write_text("{not json")
    with pytest.raises(ModelError, match="bundle.json"):
        Bundle.load(folder)
    (folder / "bundle.json").unlink()
    with pytest.raises(ModelError, match="bundle.json is missing"):
        Bundle.load(folder)


def test_invalid_field_is_named(tmp_path):
    folder = _bundle().save(tmp_path / "tiny")
    data = json.loads((folder / "bundle.json").read_text())
    data["spatial_dims"] = 5
    (folder / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="spatial_dims"):
        Bundle.load(folder)


def test_unknown_name_lists_bundled():
    names = [b.name for b in list_bundles()]
    with pytest.raises(ModelError, match="not a bundled model name.*folder path") as info:
        Bundle.load("no-such-model")
    for n in names:
        assert n in str(info.value)


def test_a_killed_runs_staging_folder_is_not_a_bundle(tmp_path, monkeypatch):
    """A training run killed while shipping leaves ``.NAME.tmp-*`` beside the bundles; it is not listed (it was,
    twice under one name, in the engines an error message offered)."""
    import shutil

    from medannot.models import bundle as bundle_module

    src = bundle_module.bundled_root() / "nuclei"
    shutil.copytree(src, tmp_path / "nuclei")
    shutil.copytree(src, tmp_path / ".nuclei.tmp-1234abcd")
    monkeypatch.setattr(bundle_module, "bundled_root", lambda: tmp_path)
    assert [b.name for b in list_bundles()] == ["nuclei"]


def test_weights_that_do_not_fit(tmp_path):
    b = _bundle()
    b.spec = b.spec.model_copy(update={"network": b.spec.network.model_copy(update={"params": {"channels": [8, 16], "strides": [2]}})})
    with pytest.raises(ModelError, match="do not fit"):
        b.build_network()
