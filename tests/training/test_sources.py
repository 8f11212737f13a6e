"""Data sources: registry errors, the image-split source keeps training patches off the validation side."""

import numpy as np
import pytest

from medannot.data import Image
from medannot.errors import ConfigError
from medannot.io import write_image
from medannot.training.sources import build_source, get_source, list_sources, register_source


def test_registry():
    assert {"image-split", "dataset"} <= set(list_sources())
    with pytest.raises(ConfigError, match="unknown data source 'nope'.*image-split"):
        get_source("nope")


def test_build_source_passes_only_accepted_extras():
    @register_source("test-minimal")
    class Minimal:
        def __init__(self, value: int, rng_seed: int) -> None:
            self.value, self.seed = value, rng_seed

    src = build_source("test-minimal", {"value": 3}, rng_seed=7, patch_size=[4, 4], preprocessing=[])
    assert (src.value, src.seed) == (3, 7)
    with pytest.raises(ConfigError, match="test-minimal"):
        build_source("test-minimal", {"valeu": 3}, rng_seed=7)


def _write_pair(tmp_path):
    # Left half value 1, right half value 1000: a patch that touches the right half would show it.
    img = np.ones((32, 64), np.uint16)
    img[:, 32:] = 1000
    lab = np.zeros((32, 64), np.uint8)
    lab[4:10, 4:10] = 1
    lab[20:28, 40:50] = 2
    write_image(Image.from_spatial(img), tmp_path / "img.tif")
    write_image(Image.from_spatial(lab, kind="label"), tmp_path / "lab.tif")
    return {"image": str(tmp_path / "img.tif"), "label": str(tmp_path / "lab.tif")}


def test_image_split_never_samples_validation_side(tmp_path):
    pair = _write_pair(tmp_path)
    src = build_source("image-split", {"images": [pair], "margin": 4, "target": "binary", "augment": False},
                       rng_seed=0, patch_size=[16, 16], preprocessing=[])
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = src.sample(rng)
        assert x.shape == (1, 16, 16) and x.dtype == np.float32 and y.dtype == np.int64
        assert x.max() < 2  # never saw the right half
        assert set(np.unique(y)) <= {0, 1}
    (case,) = src.validation_cases()
    v_img, truth = case.image, case.truth
    assert v_img.spatial_shape == (32, 32) and np.all(v_img.array == 1000)
    assert truth.geometry.origin == (0.0, 32.0)  # world position kept
    assert set(np.unique(truth.array)) == {0, 1} and case.instances is not None and case.instances.max() == 2


def test_image_split_bad_params(tmp_path):
    pair = _write_pair(tmp_path)
    with pytest.raises(ConfigError, match="margin"):
        build_source("image-split", {"images": [pair], "margin": 40}, rng_seed=0, patch_size=[16, 16], preprocessing=[])
    with pytest.raises(ConfigError, match="not found"):
        build_source("image-split", {"images": [{"image": "nope.tif", "label": "nope.tif"}]}, rng_seed=0, patch_size=[16, 16])
