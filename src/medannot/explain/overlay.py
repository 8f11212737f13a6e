"""Heat-map overlays of explanation and uncertainty maps, and the map images themselves.

A map with values in [0, 1] is coloured with matplotlib's ``inferno`` colour map and blended over the grey
image with an opacity proportional to the value (0 = invisible), so the image stays readable where the map is
low. 2D: ``<name>.png``; 3D: ``<name>_{axial,coronal,sagittal}.png``, in the display
convention of :mod:`medannot.annotations.overlay`. 3D: along each axis the plane with the largest sum of the map
(inside a focus mask such as the predicted labels, when given).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medannot.annotations.overlay import _canonical, _plane, _rgb_from_image_2d, _save_png, _stretch, display_grey
from medannot.data import Image

__all__ = ["heat_blend", "write_heat_overlays"]


def heat_blend(grey: np.ndarray, heat: np.ndarray, max_alpha: float = 0.7) -> np.ndarray:
    """RGB uint8: grey (H, W) or RGB (H, W, 3) with ``heat`` (H, W) in [0, 1] coloured by ``inferno`` on top."""
    from matplotlib import colormaps

    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32) if grey.ndim == 2 else grey.astype(np.float32)
    h = np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0.0, 1.0)
    colour = colormaps["inferno"](h)[..., :3] * 255.0
    a = (max_alpha * h)[..., None]
    return np.clip((1 - a) * rgb + a * colour, 0, 255).astype(np.uint8)


def write_heat_overlays(image: Image, heat: np.ndarray, folder: Path, name: str, focus: np.ndarray | None = None) -> list[Path]:
    """Write the heat-map overlay(s) of ``heat`` (``image``'s spatial shape, values in [0, 1]) into ``folder``.

    Args:
        image: The image under the heat map.
        heat: The map.
        folder: Where the PNGs go.
        name: File name stem.
        focus: 3D only: boolean mask (e.g. the predicted labels) whose heat chooses the planes; an empty or absent
            mask means the whole map.

    Returns:
        The PNG paths written.
    """
    folder = Path(folder)
    if image.ndim == 2:
        return [_save_png(heat_blend(_rgb_from_image_2d(image), heat), folder / f"{name}.png", min_size=256)]
    grey, h, spacing = _canonical(image, np.asarray(heat, np.float32))
    weight = h
    if focus is not None and np.any(focus):
        weight = h * _canonical(image, np.asarray(focus, np.float32))[1]
    # per axis, the plane holding the most heat (inside the focus): one hot voxel at the edge of the field of view,
    # or a haze over the air around the head, would otherwise pick a slice with nothing to review
    centre = [int(np.argmax(weight.sum(axis=tuple(a for a in range(3) if a != axis)))) for axis in range(3)]
    grey8 = display_grey(grey)
    written = []
    for plane, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        other = [a for a in range(3) if a != axis]
        rgb = heat_blend(_plane(grey8, axis, int(centre[axis])), _plane(h, axis, int(centre[axis])))
        written.append(_save_png(_stretch(rgb, spacing[other[1]], spacing[other[0]]), folder / f"{name}_{plane}.png"))
    return written
