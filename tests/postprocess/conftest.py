"""Fixtures: the real stardist nuclei mask and a thresholded MNI152 slab (bundled samples)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "medannot" / "data_samples"


@pytest.fixture(scope="session")
def nuclei_mask() -> np.ndarray:
    """Instance mask of 125 nuclei, 512x512 uint16."""
    return tifffile.imread(SAMPLES / "stardist" / "mask2d.tif")


@pytest.fixture(scope="session")
def wm_slab() -> np.ndarray:
    """White matter (probability > 50 %) of a 70x80x30 MNI152 slab, uint8 0/1 (1 mm voxels)."""
    img = nib.load(SAMPLES / "mni152" / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
    return (np.asarray(img.dataobj[60:130, 80:160, 70:100]) > 128).astype(np.uint8)
