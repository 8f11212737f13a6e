"""Object sources and their split, synthetic objects, and the training examples of the promptable network."""

from __future__ import annotations

import numpy as np
import pytest

from medannot.errors import ConfigError, InputError
from medannot.training.modality_samples import MODALITY_SOURCES
from medannot.training.promptable_data import CHANNELS, ExampleSpec, click_weights, initial_state, make_example, sample_crop
from medannot.training.promptable_sources import NUCLEI_SPLIT_COLUMN, OBJECT_SOURCES, Split, object_cases
from medannot.training.promptable_synth import BACKGROUND_EXCLUDED, SyntheticObjects, random_shape

HELD_OUT_FILES = ("ch2.nii.gz", "MR-SIEMENS-DICOM-WithOverlays.dcm", "examples_overlay.dcm", "stardist/img2d.tif")


def test_every_source_has_a_split_and_held_out_sources_are_named():
    held = {s.name for s in OBJECT_SOURCES if s.split is Split.HELD_OUT}
    assert held == {"colin27-aal", "colin27-aal-2d", "colin27-brain", "nuclei-right", "mr-overlay-lesions"}
    with pytest.raises(InputError, match="unknown object sources"):
        object_cases(sources=["nuclei-everywhere"])


def test_held_out_nuclei_never_reach_the_training_half():
    train = object_cases("train", 2, ["nuclei-left"])
    held = object_cases("held-out", 2, ["nuclei-right"])
    assert len(train) > 50 and len(held) > 40
    assert all(c.image.spatial_shape == (512, NUCLEI_SPLIT_COLUMN) for c in train)
    assert not {c.name for c in train} & {c.name for c in held}
    # the training image is the left half only: the held-out half's pixels differ from every training image
    right = held[0].image.array[0]
    assert all(not np.array_equal(c.image.array[0][:, : right.shape[1]], right) for c in train[:1])


def test_synthetic_backgrounds_exclude_every_held_out_image():
    for source in MODALITY_SOURCES:
        if any(rel.endswith(HELD_OUT_FILES) for _, rel in source.files):
            assert source.group in BACKGROUND_EXCLUDED, source.group


def test_held_out_objects_load_with_their_real_masks():
    cases = object_cases("held-out", require_all=True)
    names = {c.name for c in cases}
    assert {"colin27/Caudate_L", "colin27/Thalamus_R", "colin27/brain", "mr-overlay/MR-SIEMENS-DICOM-WithOverlays"} <= names
    for c in cases:
        assert c.split is Split.HELD_OUT and c.mask.shape == c.image.spatial_shape and c.mask.any()
    lesion = next(c for c in cases if c.source == "mr-overlay-lesions")
    assert 500 < lesion.mask.sum() < 2000  # the filled hand-drawn circle, not its 1-px outline (~320 px)


def test_random_shapes_are_one_connected_blob():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    for size in ((30, 40), (20, 24, 28)):
        blob = random_shape(size, rng)
        assert blob.shape == size and ndi.label(blob)[1] == 1 and 0.1 < blob.mean() < 0.9


@pytest.mark.parametrize("ndim", [2, 3])
def test_examples_have_the_documented_channels_and_shapes(ndim):
    synth = SyntheticObjects(ndim, patch=96 if ndim == 2 else 48, seed=1)
    spec = ExampleSpec(crop=(64,) * ndim if ndim == 2 else (32,) * 3, p_box=0.3, p_corrupt=0.3)
    rng = np.random.default_rng(0)
    modes = set()
    for i in range(12):
        case = synth.draw(i)
        assert case.split is Split.TRAIN and case.source.startswith("synthetic")
        ex = make_example(case.image.array[0], case.mask, case.image.spacing, spec, rng)
        if ex is None:
            continue
        modes.add(ex.mode)
        assert ex.inputs.shape == (len(CHANNELS), *spec.crop) and ex.inputs.dtype == np.float32
        assert ex.target.shape == (1, *spec.crop) and set(np.unique(ex.target)) <= {0.0, 1.0} and ex.target.any()
        for name, ch in zip(CHANNELS[1:3], ex.inputs[1:3]):  # clicks: discs (1) with a distance tail down to 0
            assert ch.min() >= 0.0 and ch.max() <= 1.0, name
        for name, ch in zip(CHANNELS[3:], ex.inputs[3:]):
            assert set(np.unique(ch)) <= {0.0, 1.0}, name
        pos, neg = ex.inputs[1] == 1.0, ex.inputs[2] == 1.0
        if ex.mode == "click":
            assert pos.any() and not neg.any() and not ex.inputs[4].any()
            assert ex.target[0][pos].mean() > 0.5  # the first click lies in the object
        if ex.mode == "box":
            assert ex.inputs[3].any() and not pos.any()
        if ex.mode == "corrupt":
            assert ex.inputs[4].any() and len(ex.clicks) >= 1
        for c in ex.clicks:  # a positive click lies in the object, a negative one outside
            assert bool(ex.target[0][c.index]) == c.positive
    assert len(modes) >= 2
    with pytest.raises(ConfigError):
        make_example(np.zeros((8, 8, 8)), np.ones((8, 8, 8), bool), (1, 1, 1), ExampleSpec(crop=(16, 16)), rng)


def test_refinement_rounds_click_on_the_largest_error_and_keep_the_prediction():
    synth = SyntheticObjects(2, patch=96, seed=3)
    spec = ExampleSpec(crop=(48, 48), p_box=0.0, p_corrupt=0.0)
    rng = np.random.default_rng(1)
    case = synth.draw(0)
    crop = sample_crop(case.image.array[0], case.mask, case.image.spacing, spec, rng)
    assert crop is not None
    state = initial_state(*crop, spec, rng)
    assert state.mode == "click" and len(state.clicks) == 1 and state.previous is None
    empty = np.zeros_like(state.truth)
    assert state.refine(empty)  # a miss everywhere: a positive click inside the object
    assert state.clicks[-1].positive and state.truth[state.clicks[-1].index]
    assert state.previous is not None and not state.previous.any()
    everything = np.ones_like(state.truth)
    assert state.refine(everything) and not state.clicks[-1].positive  # a false alarm larger than any miss
    assert not state.refine(state.truth)  # perfect: no click
    weights = click_weights(state.clicks, state.truth.shape, radius=4.0, weight=2.0)
    assert weights.min() == 1.0 and np.isclose(weights[state.clicks[0].index], 3.0)
