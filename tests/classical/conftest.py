"""Fixtures: the real stardist nuclei sample and an MNI152 T1 slab (bundled in data_samples)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from medannot.data import Geometry, Image

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "medannot" / "data_samples"


@pytest.fixture(scope="session")
def nuclei_pair() -> tuple[Image, np.ndarray]:
    """(nuclei image as an intensity Image with 1 mm pixels, instance mask with 125 nuclei)."""
    img = tifffile.imread(SAMPLES / "stardist" / "img2d.tif")
    mask = tifffile.imread(SAMPLES / "stardist" / "mask2d.tif")
    return Image.from_spatial(img), mask


@pytest.fixture(scope="session")
def t1_slab() -> Image:
    """A 60x70x20 slab of the MNI152 T1 with its real affine."""
    nii = nib.load(SAMPLES / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    arr = np.asarray(nii.dataobj[70:130, 80:150, 80:100], dtype=np.float32)
    aff = nii.affine.copy()
    aff[:3, 3] = nii.affine[:3, :3] @ np.array([70, 80, 80]) + nii.affine[:3, 3]
    return Image(arr[None], Geometry.from_affine(aff))
