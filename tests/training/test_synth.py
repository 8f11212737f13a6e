"""Tests of the SynthSeg-style brain synthesis (medannot.training.synth / synth_source)."""

from __future__ import annotations

import nibabel as nib
import nibabel.processing
import numpy as np
import pytest

from medannot.data.geometry import axcodes_direction
from medannot.data.image import ImageKind
from medannot.errors import ConfigError, GeometryError, InputError
from medannot.training.sources import build_source, list_sources
from medannot.training.synth import (
    MNI_DIR,
    TARGET_LUT,
    SynthLabel,
    SynthParams,
    brain_label_map,
    load_template,
    synthesize,
    to_target,
)
from medannot.training.synth_source import SynthBrainSource, make_subject

SMALL = SynthParams(patch_size=(32, 32, 32))
#: Every intensity step off: the image is a deterministic function of the deformed labels.
DETERMINISTIC = SynthParams(
    patch_size=(40, 40, 40), intensity_std_max=0.0, pv_sigma_mm=0.0, p_low_res=0.0, bias_std=0.0,
    noise_std_max=0.0, gamma_std=0.0, p_template_texture=0.0, p_skull_stripped=0.0, percentiles=(0.0, 100.0),
    max_offset_mm=10.0,
)
NO_DEFORM = SynthParams(max_rotation_deg=0.0, scale_range=(1.0, 1.0), max_shear=0.0, elastic_std_mm=0.0)


@pytest.fixture(scope="module")
def label_map():
    return brain_label_map(np.random.default_rng(1))


@pytest.mark.slow
def test_template_tissue_is_argmax_of_probability_maps() -> None:
    tpl = load_template()
    gm = np.asanyarray(nib.load(MNI_DIR / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz").dataobj).astype(int)
    wm = np.asanyarray(nib.load(MNI_DIR / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz").dataobj).astype(int)
    ref = np.argmax(np.stack([255 - gm - wm, gm, wm]), axis=0)  # 0 csf, 1 gm, 2 wm (ties -> first)
    p, below = 24, 56  # load_template's padding (sides and top, below)
    core = tpl.labels[p:-p, p:-p, below:-p]
    ours = to_target(core)
    assert ours.shape == ref.shape
    inside = core > 0
    agree = np.mean((ours == ref)[inside & (ref > 0)])
    assert agree > 0.999
    # Outside the intracranial envelope nothing is brain.
    assert not np.any(ours[~inside])


def test_label_map_structures_and_shells(label_map) -> None:
    assert label_map.kind is ImageKind.LABEL and label_map.array.dtype == np.uint8
    assert label_map.spacing == (1.0, 1.0, 1.0) and label_map.geometry.axcodes() == ("R", "A", "S")
    counts = np.bincount(label_map.array.ravel(), minlength=len(SynthLabel))
    assert len(counts) == len(SynthLabel)
    for lab in SynthLabel:
        if lab not in (SynthLabel.EXTRA_A, SynthLabel.EXTRA_B, SynthLabel.EXTRA_C):
            assert counts[lab] > 1000, lab.name
    # The extra-cranial body (face, skull base, neck) fills a large region below the brain.
    assert counts[SynthLabel.EXTRA_A] + counts[SynthLabel.EXTRA_B] + counts[SynthLabel.EXTRA_C] > 200_000
    # Skull and scalp are shells outside the brain: skull touches scalp and CSF, never grey/white matter directly
    from scipy import ndimage as ndi

    arr = label_map.array[0]
    skull_ring = ndi.binary_dilation(arr == SynthLabel.SKULL) & (arr != SynthLabel.SKULL)
    touching = set(np.unique(arr[skull_ring]).tolist())
    assert {SynthLabel.SCALP.value} <= touching
    # Bone cells of the extra-cranial body may lie beside the spinal cord (WM) far below the brain;
    # the cranial skull itself never touches white matter.
    brain_level = np.arange(arr.shape[2]) > 56 + 20
    assert SynthLabel.WM.value not in set(np.unique(arr[skull_ring & brain_level[None, None, :]]).tolist())
    # Seeded: same seed, same map; another seed, other shells.
    again = brain_label_map(np.random.default_rng(1))
    assert np.array_equal(again.array, label_map.array)
    other = brain_label_map(np.random.default_rng(2))
    assert not np.array_equal(other.array, label_map.array)


def test_synthesize_shapes_dtypes_and_reproducibility(label_map) -> None:
    img, tgt = synthesize(label_map, np.random.default_rng(5), SMALL)
    assert img.shape == (32, 32, 32) and img.dtype == np.float32
    assert tgt.shape == (32, 32, 32) and tgt.dtype == np.int64
    assert set(np.unique(tgt).tolist()) <= {0, 1, 2}
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.max() > 0.5
    img2, tgt2 = synthesize(label_map, np.random.default_rng(5), SMALL)
    assert np.array_equal(img, img2) and np.array_equal(tgt, tgt2)
    img3, _ = synthesize(label_map, np.random.default_rng(6), SMALL)
    assert not np.allclose(img, img3)


def test_synthesize_image_and_target_stay_aligned(label_map) -> None:
    # With noise, blur, bias and gamma switched off each voxel's intensity is its structure's
    # random mean, so every intensity value must belong to a single target class, through
    # the random affine + elastic deformation.
    for seed in range(4):
        img, tgt = synthesize(label_map, np.random.default_rng(seed), DETERMINISTIC)
        values, inverse = np.unique(img, return_inverse=True)
        assert len(values) <= len(SynthLabel)
        for v in range(len(values)):
            classes = np.unique(tgt.ravel()[inverse.ravel() == v])
            assert len(classes) == 1, f"seed {seed}: intensity {values[v]} spans target classes {classes}"
        assert set(np.unique(tgt).tolist()) == {0, 1, 2}


def test_synthesize_rejects_non_label_input(label_map) -> None:
    with pytest.raises(InputError):
        synthesize(label_map.with_array(label_map.array.astype(np.float32), kind="intensity"), np.random.default_rng(0), SMALL)


def test_target_lut_maps_structures() -> None:
    assert TARGET_LUT[SynthLabel.GM] == 1 and TARGET_LUT[SynthLabel.DEEP_GM] == 1
    assert TARGET_LUT[SynthLabel.WM] == 2
    for lab in (SynthLabel.BACKGROUND, SynthLabel.CSF, SynthLabel.VENTRICLE, SynthLabel.SKULL, SynthLabel.SCALP):
        assert TARGET_LUT[lab] == 0


def test_params_from_dict_rejects_unknown_keys() -> None:
    assert SynthParams.from_dict({"patch_size": [16, 16, 16]}).patch_size == (16, 16, 16)
    with pytest.raises(ConfigError, match="unknown synthesis parameter"):
        SynthParams.from_dict({"noise": 1})


def test_axcodes_direction() -> None:
    d = axcodes_direction("LPS")
    assert np.array_equal(d, np.diag([-1.0, -1.0, 1.0]))
    assert nib.aff2axcodes(np.block([[axcodes_direction("PIR"), np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]])) == ("P", "I", "R")
    with pytest.raises(GeometryError, match="naming each axis once"):
        axcodes_direction("RRS")


@pytest.mark.slow
def test_subject_geometry_matches_template_via_nibabel() -> None:
    # No deformation: the subject's truth, stored LPS at 2x2x4 mm, resampled back onto the template
    # grid by nibabel (the peer library), must coincide with the template's own GM / WM.
    image, truth = make_subject(20_999, spacing=(2.0, 2.0, 4.0), axcodes="LPS", params=NO_DEFORM)
    assert image.same_grid(truth) and image.geometry.axcodes() == ("L", "P", "S")
    assert image.array.dtype == np.float32 and truth.array.dtype == np.uint8
    assert set(np.unique(truth.array).tolist()) == {0, 1, 2}
    tpl = load_template()
    ref_nii = nib.Nifti1Image(to_target(tpl.labels).astype(np.uint8)[::2, ::2, ::2], tpl.geometry.affine @ np.diag([2, 2, 2, 1]))
    sub_nii = nib.Nifti1Image(truth.array[0], truth.affine)
    back = np.asanyarray(nib.processing.resample_from_to(sub_nii, ref_nii, order=0).dataobj)
    ref = np.asanyarray(ref_nii.dataobj)
    covered = np.asanyarray(nib.processing.resample_from_to(nib.Nifti1Image(np.ones(truth.spatial_shape, np.uint8), truth.affine), ref_nii, order=0).dataobj) > 0
    brain_ref, brain_back = (ref > 0) & covered, (back > 0) & covered
    dice = 2 * np.sum(brain_ref & brain_back) / (brain_ref.sum() + brain_back.sum())
    assert dice > 0.9


def test_source_is_registered_and_samples() -> None:
    assert "synth-brain" in list_sources()
    src = build_source("synth-brain", {"n_label_maps": 1, "validation": []}, rng_seed=0, patch_size=[32, 32, 32], spatial_dims=3)
    assert isinstance(src, SynthBrainSource)
    img, lab = src.sample(np.random.default_rng(0))
    assert img.shape == (1, 32, 32, 32) and img.dtype == np.float32
    assert lab.shape == (32, 32, 32) and lab.dtype == np.int64
    assert src.validation_cases() == []


def test_source_rejects_bad_params() -> None:
    with pytest.raises(ConfigError, match="seed"):
        SynthBrainSource(patch_size=(32, 32, 32), n_label_maps=1, validation=[{"name": "x", "seed": 3}])
    with pytest.raises(ConfigError, match="3D"):
        SynthBrainSource(patch_size=(32, 32), n_label_maps=1, spatial_dims=2)
    with pytest.raises(ConfigError, match="unknown synthesis"):
        SynthBrainSource(patch_size=(32, 32, 32), n_label_maps=1, synth={"bogus": 1})
