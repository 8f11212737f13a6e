"""Fixtures: real samples bundled in medannot/data_samples (MNI152 T1 slab, stardist nuclei)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from medannot.data import Geometry, Image, ImageKind

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "medannot" / "data_samples"


@pytest.fixture(scope="session")
def mni_slab() -> Image:
    """A 64x72x24 slab of the MNI152 T1 (1 mm) with its real affine, float32."""
    img = nib.load(SAMPLES / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    arr = np.asarray(img.dataobj[60:124, 80:152, 80:104], dtype=np.float32)
    aff = img.affine.copy()
    aff[:3, 3] = img.affine[:3, :3] @ np.array([60, 80, 80]) + img.affine[:3, 3]
    return Image(arr[None], Geometry.from_affine(aff), ImageKind.INTENSITY)


@pytest.fixture(scope="session")
def nuclei() -> tuple[np.ndarray, np.ndarray]:
    """The stardist 2D nuclei image (uint16) and its instance mask."""
    img = tifffile.imread(SAMPLES / "stardist" / "img2d.tif")
    mask = tifffile.imread(SAMPLES / "stardist" / "mask2d.tif")
    return img, mask
