"""The promptable task plug-in: registered, trained in the one loop, measured on held-out objects, engines by name."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from medannot.data import Image, Task
from medannot.data.prompts import BoxPrompt, PromptableEngine, Prompts
from medannot.errors import ConfigError, InputError, ModelError
from medannot.inference.promptable import NetworkEngine, PromptableSettings, click_map, encode_prompts, keep_clicked, resample_crop
from medannot.models import Bundle, list_networks
from medannot.tasks import PredictOptions, get_task, load_predictor
from medannot.tasks.promptable import PromptableTask, create_engine, default_engine, list_engines
from medannot.training.promptable_training import HELD_OUT_CSV, HELD_OUT_PLOT, PromptableConfig


def test_the_plugin_is_registered_with_its_config_and_network():
    plugin = get_task(Task.PROMPTABLE)
    assert isinstance(plugin, PromptableTask) and plugin.config_model is PromptableConfig
    assert plugin.writes_label_maps and "promptable-unet" in list_networks(Task.PROMPTABLE)


def test_the_config_refuses_held_out_sources_for_training_and_unknown_engines(tiny_config):
    from medannot.training.config import validate_config

    base = dict(tiny_config, out="/tmp/never-written")
    with pytest.raises(ConfigError, match="nuclei-right.*not train sources"):
        validate_config(PromptableConfig, dict(base, data={"sources": ["nuclei-right"]}))
    with pytest.raises(ConfigError, match="not held-out sources"):
        validate_config(PromptableConfig, dict(base, held_out={"sources": ["nuclei-left"]}))
    with pytest.raises(ConfigError, match="held_out.engines: unknown"):
        validate_config(PromptableConfig, dict(base, held_out={"engines": ["magic-wand"]}))
    with pytest.raises(ConfigError, match="crop must have 2 sides"):
        validate_config(PromptableConfig, dict(base, crop=[32, 32, 32]))


@pytest.mark.slow
def test_training_in_the_one_loop_ships_a_bundle_measured_on_held_out_objects(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    assert bundle.task is Task.PROMPTABLE and bundle.out_channels == 1
    settings = PromptableSettings.parse(bundle.spec.promptable)
    assert settings.crop == [32, 32]
    metrics = bundle.spec.metrics
    assert set(metrics["engines"]) == {"tiny-promptable", "growcut"} and metrics["cases"] == 3
    assert "validation" in metrics and "score" in metrics["validation"]
    with (tiny_bundle / HELD_OUT_CSV).open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {r["group"] for r in rows} == {"nuclei-right"}
    assert (tiny_bundle / HELD_OUT_PLOT).stat().st_size > 1000
    card = (tiny_bundle / "MODEL_CARD.md").read_text()
    for words in ("Held-out accuracy", "nuclei-right", "growcut", "Data licences", "Which choices saw which data", "NoC@85"):
        assert words in card
    run = bundle.spec.training["run"]
    assert run["train_objects"] == {"mni152-tissue-2d": 240, "nuclei-left": 68}
    assert "nuclei-right" in run["held_out_sources"]


def test_create_engine_by_name_and_bundle_folder(tiny_bundle):
    for name in ("region-growing", "random-walker", "growcut"):
        assert isinstance(create_engine(name), PromptableEngine) and name in list_engines()
    net = create_engine(str(tiny_bundle))
    assert isinstance(net, NetworkEngine) and net.name == "tiny-promptable" and net.ndim == 2
    assert create_engine(str(tiny_bundle)) is net  # kept warm
    with pytest.raises(ConfigError, match="unknown engine 'grow-cut'.*growcut"):
        create_engine("grow-cut")
    with pytest.raises(ConfigError, match="takes no parameters"):
        create_engine(str(tiny_bundle), threshold=0.3)
    with pytest.raises(ModelError, match="not a promptable one"):
        create_engine("nuclei")
    assert default_engine(3) in list_engines(3)


def test_the_network_engine_segments_one_object_in_a_2d_image_and_refuses_a_volume(tiny_bundle):
    engine = create_engine(str(tiny_bundle))
    img = Image.from_spatial(np.random.default_rng(0).random((80, 90)).astype(np.float32))
    mask = engine.segment(img, Prompts().with_point((40, 45)))
    assert mask.shape == (80, 90) and mask.dtype == bool
    vol = Image.from_spatial(np.zeros((8, 8, 8), np.float32))
    with pytest.raises(InputError, match="2D network and the image is 3D"):
        engine.segment(vol, Prompts().with_point((1, 1, 1)))


def test_the_predictor_refuses_options_of_other_tasks(tiny_bundle):
    with pytest.raises(ConfigError, match="do not apply to a promptable model"):
        load_predictor(tiny_bundle, PredictOptions(tta=True))
    segmenter = load_predictor(tiny_bundle)
    with pytest.raises(InputError, match="empty prompt set"):
        segmenter.predict(Image.from_spatial(np.zeros((40, 40), np.float32)))


class _Everything(torch.nn.Module):
    """Says 'object' everywhere: the mask reaches the crop's border at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return torch.full((x.shape[0], 1, *x.shape[2:]), 5.0)


def test_the_field_of_view_doubles_while_the_mask_reaches_the_crop_border():
    net = _Everything()
    engine = NetworkEngine(net, PromptableSettings(crop=[16, 16], max_grow=2, keep_clicked=False))
    img = Image.from_spatial(np.zeros((200, 200), np.float32))
    mask = engine.segment(img, Prompts().with_point((100, 100)))
    assert len(net.calls) == 3 and all(c == (1, 5, 16, 16) for c in net.calls)  # 16, 32, 64 mm: always a 16^2 crop
    assert 60 * 60 <= mask.sum() <= 70 * 70 and mask[100, 100] and not mask[10, 10]
    small = NetworkEngine(_Everything(), PromptableSettings(crop=[16, 16], max_grow=3))
    whole = small.segment(Image.from_spatial(np.zeros((20, 20), np.float32)), Prompts().with_point((5, 5)))
    assert whole.all()  # the field of view already holds the whole image: no growth


class _Bright(torch.nn.Module):
    """Says 'object' where the crop's normalised intensity is above its mean: a threshold in network form."""

    def __init__(self) -> None:
        super().__init__()
        self.bright: list[int] = []  # object voxels in each crop: 4x more at half the FOV

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bright.append(int((x[:, :1] > 0).sum()))
        return torch.where(x[:, :1] > 0, 5.0, -5.0)


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_an_object_cut_by_the_image_edge_does_not_grow_the_field_of_view():
    """The mask reaches the crop's side where that side is the image's edge: no growth (it once doubled the FOV
    three times there, and the object shrank to a few crop voxels)."""
    truth = _disc((200, 200), (100, 0), 12)  # a half disc on the image's left edge
    img = Image.from_spatial(np.where(truth, 100.0, 10.0).astype(np.float32))
    engine = NetworkEngine(_Bright(), PromptableSettings(crop=[32, 32], max_grow=3))
    mask = engine.segment(img, Prompts().with_point((100, 3)))
    assert engine.timings["forward_passes"] == 1
    assert np.array_equal(mask, truth)
    inside = NetworkEngine(_Bright(), PromptableSettings(crop=[32, 32], max_grow=3))
    big = _disc((200, 200), (100, 100), 20)  # reaches the crop's inner sides: grows as before
    got = inside.segment(Image.from_spatial(np.where(big, 100.0, 10.0).astype(np.float32)), Prompts().with_point((100, 100)))
    assert inside.timings["forward_passes"] == 2 and 2 * (got & big).sum() / (got.sum() + big.sum()) > 0.97


def test_zoom_in_predicts_a_small_object_again_at_a_finer_field_of_view():
    truth = _disc((200, 200), (100.3, 99.6), 4.5)
    img = Image.from_spatial(np.where(truth, 100.0, 10.0).astype(np.float32))
    plain = NetworkEngine(_Bright(), PromptableSettings(crop=[32, 32]))
    net = _Bright()
    zoomed = NetworkEngine(net, PromptableSettings(crop=[32, 32], min_fov=0.5, zoom_in=True))
    a = plain.segment(img, Prompts().with_point((100, 100)))
    b = zoomed.segment(img, Prompts().with_point((100, 100)))
    assert plain.timings["forward_passes"] == 1 and zoomed.timings["forward_passes"] == 2
    assert net.bright[1] > 3.5 * net.bright[0], net.bright  # the second pass saw the object at 2x (FOV 16 mm, not 32)
    dice = [2 * (m & truth).sum() / (m.sum() + truth.sum()) for m in (a, b)]
    assert min(dice) > 0.9, dice
    # with a previous mask the FOV fits it (down to min_fov of the native one) without a second pass
    c = zoomed.segment(img, Prompts().with_point((100, 100)).with_previous(b))
    assert zoomed.timings["forward_passes"] == 1 and np.array_equal(c, b)
    with pytest.raises(ValueError):
        PromptableSettings(crop=[32, 32], min_fov=0)


def test_a_box_sets_the_field_of_view_and_is_encoded():
    net = _Everything()
    engine = NetworkEngine(net, PromptableSettings(crop=[16, 16], max_grow=0, keep_clicked=False))
    img = Image.from_spatial(np.zeros((300, 300), np.float32))
    mask = engine.segment(img, Prompts(boxes=(BoxPrompt((100.0, 100.0), (199.0, 199.0)),)))
    nz = np.argwhere(mask)
    # 1.4 x the box's 100 px extent, centred on it
    assert abs(nz.min(0) - 80).max() <= 2 and abs(nz.max(0) - 219).max() <= 2


def test_resample_crop_reads_only_the_region_it_needs_and_matches_a_full_resampling():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    arr = rng.random((60, 70)).astype(np.float32)
    centre, step, shape = np.array([30.2, 40.7]), np.array([0.8, 1.3]), (12, 10)
    got = resample_crop(arr, centre, step, shape)
    offset = centre - (np.asarray(shape) - 1) / 2 * step
    want = ndi.affine_transform(arr, step, offset=offset, output_shape=shape, order=1, mode="constant", prefilter=False)
    assert np.allclose(got, want, atol=1e-5)
    outside = resample_crop(arr, np.array([500.0, 500.0]), step, shape, cval=-1.0)
    assert (outside == -1.0).all()


def test_click_maps_are_discs_with_a_distance_tail_and_encoding_has_five_channels():
    m = click_map((21, 21), np.array([[10, 10], [100, 100]]), disc_radius=2.0, distance_radius=6.0)
    assert m[10, 10] == 1.0 and m[10, 12] == 1.0 and 0 < m[10, 14] < 1 and m[10, 17] == 0.0
    x = encode_prompts(np.ones((21, 21)), np.array([[10, 10]]), np.zeros((0, 2)), [((2, 2), (5, 5))], None, 2.0, 6.0)
    assert x.shape == (5, 21, 21) and x[3, 2:6, 2:6].all() and x[3].sum() == 16 and not x[4].any()


def test_keep_clicked_keeps_the_parts_that_hold_a_positive_click():
    mask = np.zeros((20, 20), bool)
    mask[2:5, 2:5] = True
    mask[10:15, 10:15] = True
    vp = Prompts().with_point((12, 12)).resolve(Image.from_spatial(np.zeros((20, 20), np.float32)))
    kept = keep_clicked(mask, vp)
    assert kept[12, 12] and not kept[3, 3]
    vp_none = Prompts().with_point((0, 19)).resolve(Image.from_spatial(np.zeros((20, 20), np.float32)))
    assert (keep_clicked(mask, vp_none) == mask).all()  # no part holds the click: nothing removed


def test_bundle_json_carries_the_promptable_section_only_for_its_task(tiny_bundle):
    data = json.loads((tiny_bundle / "bundle.json").read_text())
    data["task"] = "segmentation"
    with pytest.raises(ModelError, match="'promptable' section is only allowed with task 'promptable'"):
        Bundle.from_dict(data)
    data = json.loads((tiny_bundle / "bundle.json").read_text())
    data["promptable"]["crop"] = [4]
    bad = Bundle.from_dict(data)
    with pytest.raises(ModelError, match="invalid promptable section"):
        PromptableSettings.parse(bad.spec.promptable)


def test_a_3d_interaction_costs_one_crop_whatever_the_volume_size():
    for shape in ((40, 40, 40), (300, 260, 200)):
        net = _Everything()
        engine = NetworkEngine(net, PromptableSettings(crop=[16, 16, 16], max_grow=1, keep_clicked=False))
        vol = Image.from_spatial(np.zeros(shape, np.float32), spacing=(1.0, 1.0, 2.0))
        mask = engine.segment(vol, Prompts().with_point(tuple(s // 2 for s in shape)))
        assert all(c == (1, 5, 16, 16, 16) for c in net.calls) and len(net.calls) == 2
        # 32 mm after one doubling: 32 voxels along the 1 mm axes, 16 along the 2 mm one (isotropic crop voxels in mm)
        nz = np.argwhere(mask)
        assert np.allclose(nz.max(0) - nz.min(0) + 1, (32, 32, 16), atol=1)
