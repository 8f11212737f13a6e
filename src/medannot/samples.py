"""The real samples bundled with medannot (see ``data_samples/README.md`` for sources and licences).

- ``mni152``: MNI ICBM152 2009a symmetric T1 template (1 mm) and its grey/white-matter probability maps.
- ``nuclei``: a 512x512 fluorescence microscopy image of nuclei with its instance mask (stardist sample).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from medannot.data import Image, ImageKind

_MNI = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
NUCLEI_SPLIT_COLUMN = 256
"""Column where the nuclei sample is split: the bundled model trained on columns < 256 (left) only."""


def sample_dir() -> Path:
    """Folder of the bundled samples inside the installed package."""
    return Path(str(resources.files("medannot") / "data_samples"))


def mni152_path(part: str = "t1") -> Path:
    """Path of the MNI152 2009a file ``part`` in {"t1", "gm", "wm"}."""
    return sample_dir() / "mni152" / _MNI.format(part)


def mni152_t1() -> Image:
    """The MNI152 2009a T1 template as an intensity image (1 mm, RAS)."""
    from medannot.io import read_image

    return read_image(mni152_path("t1"))


def mni152_tissue_labels(min_probability: float = 0.5) -> Image:
    """Hard tissue labels of the template: 0 background/CSF, 1 grey matter, 2 white matter.

    A voxel takes the tissue with the larger probability when that probability is
    at least ``min_probability`` of the GM+WM+rest total (probability maps are uint8 0-255).
    """
    from medannot.io import read_image

    gm = read_image(mni152_path("gm")).scalar().astype(np.float32) / 255.0
    wm_img = read_image(mni152_path("wm"))
    wm = wm_img.scalar().astype(np.float32) / 255.0
    labels = np.zeros(gm.shape, dtype=np.uint8)
    labels[(gm >= wm) & (gm >= min_probability)] = 1
    labels[(wm > gm) & (wm >= min_probability)] = 2
    return Image(labels[None], wm_img.geometry, ImageKind.LABEL, {"source": "MNI152 2009a GM/WM maps"})


def nuclei_image() -> Image:
    """The stardist nuclei sample (2D, uint16, 1 pixel = 1 unit of spacing)."""
    from medannot.io import read_image

    return read_image(sample_dir() / "stardist" / "img2d.tif")


def nuclei_instances() -> Image:
    """Instance mask of the nuclei sample (0 background, 1..n nuclei)."""
    from medannot.io import read_image

    return read_image(sample_dir() / "stardist" / "mask2d.tif", kind=ImageKind.LABEL)
