"""Overlays people can look at: coloured label fills with contours on the grey image.

3D volumes are shown in three planes through the labelled region, in
radiological display convention after reorientation to RAS: axial and coronal
views have the patient's right on the left of the picture, and superior (or
anterior, for axial) at the top.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image as PILImage
from skimage.segmentation import find_boundaries

from medannot.annotations.labelmap import LabelMap
from medannot.data import Image
from medannot.io.atomic import atomic_path


def display_grey(array: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Scale intensities to uint8 for display using percentiles of the non-constant values.

    Empty rule: a constant image becomes all zeros.
    """
    arr = np.asarray(array, dtype=np.float32)
    lo, hi = np.percentile(arr, [lower, upper]) if arr.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return (np.clip((arr - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def blend(
    grey: np.ndarray, labels: np.ndarray, label_map: LabelMap, alpha: float = 0.4, instances: np.ndarray | None = None
) -> np.ndarray:
    """RGB picture: grey (H, W) or RGB (H, W, 3) uint8 with label fills at ``alpha`` and opaque 1-pixel contours.

    With ``instances`` (same shape, instance ids), every instance gets its own contour, so touching
    objects that the model separated are seen as separate.
    """
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32) if grey.ndim == 2 else grey.astype(np.float32)
    for value in (int(v) for v in np.unique(labels) if v != 0):
        info = label_map.get(value)
        color = np.array(info.color if info else (255, 255, 255), dtype=np.float32)
        region = labels == value
        rgb[region] = (1 - alpha) * rgb[region] + alpha * color
        edge = find_boundaries(np.where(region, instances, 0) if instances is not None else region, mode="inner")
        rgb[edge & region] = color
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _save_png(rgb: np.ndarray, path: Path, min_size: int = 256) -> Path:
    pic = PILImage.fromarray(rgb)
    scale = max(1, int(np.ceil(min_size / max(1, min(rgb.shape[:2])))))
    if scale > 1:
        pic = pic.resize((rgb.shape[1] * scale, rgb.shape[0] * scale), PILImage.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        pic.save(tmp, format="PNG")
    return path


def _rgb_from_image_2d(image: Image) -> np.ndarray:
    if image.channels == 3:
        return np.stack([display_grey(c, 0, 100) for c in image.array], axis=-1)
    return display_grey(image.array[0])


def _canonical(image: Image, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Grey volume and labels reoriented to RAS array order, with the reordered spacing."""
    ornt = nib.orientations.io_orientation(image.affine)
    grey = nib.orientations.apply_orientation(image.array[0], ornt)
    lab = nib.orientations.apply_orientation(labels, ornt)
    spacing = tuple(float(image.spacing[int(ax)]) for ax in ornt[:, 0])
    return grey, lab, spacing


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """A RAS volume's slice turned for display (rows top->bottom, columns patient right->left)."""
    sl = np.take(volume, index, axis=axis)
    # The remaining axes are in RAS order. Rows: the later axis (A or S) pointing up.
    # Columns: the earlier axis descending, so the patient's right is on the picture's left in
    # axial and coronal views (radiological) and anterior is on the left in sagittal views.
    return sl.T[::-1, ::-1]


def _stretch(pic: np.ndarray, row_mm: float, col_mm: float) -> np.ndarray:
    """Nearest-neighbour stretch so that pixels look square in mm."""
    if abs(row_mm - col_mm) < 1e-3:
        return pic
    unit = min(row_mm, col_mm)
    rows = max(1, int(round(pic.shape[0] * row_mm / unit)))
    cols = max(1, int(round(pic.shape[1] * col_mm / unit)))
    r_idx = np.minimum((np.arange(rows) * unit / row_mm).astype(int), pic.shape[0] - 1)
    c_idx = np.minimum((np.arange(cols) * unit / col_mm).astype(int), pic.shape[1] - 1)
    return pic[r_idx][:, c_idx]


def write_overlays(
    image: Image,
    labels: np.ndarray,
    label_map: LabelMap,
    folder: Path,
    alpha: float = 0.4,
    instances: np.ndarray | None = None,
) -> list[Path]:
    """Write ``overlay.png`` (2D) or ``overlay_axial/coronal/sagittal.png`` (3D) into ``folder``.

    The 3D planes pass through the centre of the labelled region (the volume centre if nothing is labelled).
    2D overlays outline each instance when ``instances`` is given.

    Returns:
        Paths written.
    """
    folder = Path(folder)
    if image.ndim == 2:
        rgb = blend(_rgb_from_image_2d(image), labels, label_map, alpha, instances)
        return [_save_png(rgb, folder / "overlay.png", min_size=512)]
    grey, lab, spacing = _canonical(image, labels)
    fg = np.argwhere(lab > 0)
    centre = fg.mean(axis=0).round().astype(int) if len(fg) else np.array(lab.shape) // 2
    grey8 = display_grey(grey)  # one window for all three planes
    written = []
    for name, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        other = [a for a in range(3) if a != axis]
        g = _plane(grey8, axis, int(centre[axis]))
        lb = _plane(lab, axis, int(centre[axis]))
        rgb = blend(g, lb, label_map, alpha)
        rgb = _stretch(rgb, spacing[other[1]], spacing[other[0]])
        written.append(_save_png(rgb, folder / f"overlay_{name}.png"))
    return written
