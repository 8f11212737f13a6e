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


# --------------------------------------------------------------------------- Colin27 (Debian mricron-data)

COLIN27_DIR = Path("/usr/share/mricron/templates")
"""Where Debian's ``mricron-data`` package installs the Colin27 ("ch2") images."""


def _colin27_file(name: str) -> Path:
    from medannot.errors import InputError

    path = COLIN27_DIR / name
    if not path.is_file():
        raise InputError(f"{path}: not found; install Debian's mricron-data package (apt-get install mricron-data)")
    return path


def colin27_head() -> Image:
    """Colin27 ("ch2"): a real single-subject T1 head (skull, scalp, face, neck), 1 mm, 181x217x181.

    The average of 27 scans of one man (Holmes et al. 1998), shipped by Debian's ``mricron-data``.
    It was never used to train medannot's models; see :func:`colin27_brain_mask` for its truth.

    Raises:
        InputError: If ``mricron-data`` is not installed.
    """
    from medannot.io import read_image

    return read_image(_colin27_file("ch2.nii.gz"))


def colin27_brain_mask() -> Image:
    """Expert brain mask of Colin27: grey plus white matter (cerebrum, cerebellum, brainstem), 0.5 mm.

    ``ch2better.nii.gz`` of ``mricron-data`` is the same head at 0.5 mm with everything but brain
    tissue removed by hand (CSF, ventricles, skull, scalp zeroed); its non-zero voxels are the
    brain-tissue mask (uint8 0/1 label image on its own 0.5 mm grid, in the same world space as
    :func:`colin27_head`). Resample it onto a prediction's grid with nearest neighbour.

    Raises:
        InputError: If ``mricron-data`` is not installed.
    """
    from medannot.io import read_image

    better = read_image(_colin27_file("ch2better.nii.gz"))
    mask = (better.array > 0).astype(np.uint8)
    return Image(mask, better.geometry, ImageKind.LABEL, {"source": "mricron-data ch2better.nii.gz > 0 (hand-edited)"})


def reacquire(image: Image, spacing: tuple[float, float, float], axcodes: str = "RAS",
              rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Image:
    """Resample a 3D image onto a new acquisition grid covering the same field of view.

    Simulates another scan of the same head: voxel ``spacing`` (mm) along the new array axes,
    stored in orientation ``axcodes`` and rotated (oblique) by ``rotation_deg`` about world x, y, z
    around the image centre. Intensity images are linearly interpolated, labels nearest-neighbour.
    Voxels outside the source field of view are 0.
    """
    from medannot.data import Geometry
    from medannot.data.geometry import axcodes_direction
    from medannot.transforms.spatial import resample_to_grid

    direction = axcodes_direction(axcodes, rotation_deg)
    src = image.geometry
    corners = np.array([[i, j, k] for i in (0, image.spatial_shape[0] - 1) for j in (0, image.spatial_shape[1] - 1)
                        for k in (0, image.spatial_shape[2] - 1)], dtype=float)
    world = np.array([src.index_to_world(c) for c in corners])
    centre = world.mean(axis=0)
    extent = np.abs((world - centre) @ direction).max(axis=0) * 2.0  # extent along each new axis (mm)
    sp = np.asarray(spacing, dtype=float)
    shape = np.maximum(1, np.floor(extent / sp).astype(int) + 1)
    origin = centre - direction @ (sp * (shape - 1) / 2.0)
    geom = Geometry(spacing=tuple(sp), origin=tuple(origin), direction=direction)
    return resample_to_grid(image, geom, tuple(int(s) for s in shape))
