"""Box overlays people can look at: rectangles (with scores in 2D) on the grey image.

2D: ``overlay_boxes.png``, the image enlarged to at least 512 pixels on its short side, each box drawn
as a 2-pixel rectangle in its label colour with its score above it. 3D: ``overlay_boxes_{sagittal,
coronal,axial}.png``, three planes (radiological display, as :mod:`medannot.annotations.overlay`)
through the centre of the highest-scoring box, each box crossing a plane outlined where it crosses.
Boxes scoring below ``threshold`` are not drawn (they stay in the JSON files). Empty rule: no box
to draw still writes the plain grey picture, so a reviewer sees that nothing was found.
A legend strip below each picture names the box colours (labels) and says which boxes were left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from medannot.annotations.labelmap import LabelMap, default_color
from medannot.annotations.overlay import (
    VIEW_SIDES,
    LegendEntry,
    _canonical,
    _plane,
    _rgb_from_image_2d,
    _save_png,
    _stretch,
    blend,
    display_grey,
    display_step,
    legend_font,
)
from medannot.annotations.schema import Box
from medannot.data import Image

__all__ = ["write_box_overlays"]


def _color(label_map: LabelMap, value: int) -> tuple[int, int, int]:
    info = label_map.get(int(value))
    return tuple(info.color) if info and any(info.color) else default_color(int(value))  # type: ignore[return-value]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return legend_font(size)


def _legend(boxes: Sequence[Box], label_map: LabelMap, hidden: int, threshold: float) -> list[LegendEntry]:
    """Colour and name of each label with a drawn box; how many boxes scored below ``threshold`` (not drawn)."""
    names = {b.label: b.label_name or (label_map[b.label].name if b.label in label_map else f"label_{b.label}") for b in boxes}
    out: list[LegendEntry] = [(names[v], _color(label_map, v)) for v in sorted(names)]
    if not boxes:
        out.append(("no box found", None))
    if hidden:
        out.append((f"{hidden} box{'es' if hidden > 1 else ''} scoring below {threshold:.2f} not drawn", None))
    return out


def _draw_2d(image: Image, boxes: Sequence[Box], label_map: LabelMap, path: Path, min_size: int = 512,
             legend: Sequence[LegendEntry] = ()) -> Path:
    step = display_step(image.array.shape)  # pictures past MAX_SIDE_2D are shown one pixel in step
    grey = _rgb_from_image_2d(image, step)
    rgb = np.repeat(grey[..., None], 3, axis=2) if grey.ndim == 2 else grey
    scale = max(1, min(math.ceil(min_size / max(1, min(rgb.shape[:2]))), 2048 // max(1, max(rgb.shape[:2]))))  # never past 2048 px
    pic = PILImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), PILImage.Resampling.NEAREST)
    draw = ImageDraw.Draw(pic)
    font = _font(max(10, 4 * scale + 6))
    factor = scale / step
    for box in sorted(boxes, key=lambda b: -1.0 if b.score is None else b.score):
        r0, c0, r1, c1 = box.box_voxels
        color = _color(label_map, box.label)
        x0, y0 = c0 * factor, r0 * factor
        x1, y1 = max(x0, c1 * factor - 1), max(y0, r1 * factor - 1)
        draw.rectangle((x0, y0, x1, y1), outline=color, width=2)
        if box.score is not None:
            draw.text((x0 + 1, max(0, y0 - font.size - 1) if hasattr(font, "size") else y0), f"{box.score:.2f}", fill=color, font=font)
    return _save_png(np.asarray(pic), path, min_size=1, legend=legend)


def _box_volumes(shape: tuple[int, ...], boxes: Sequence[Box]) -> tuple[np.ndarray, np.ndarray]:
    """Box-id and label-value volumes, boxes filled solid in ascending score order (higher scores on top)."""
    ids = np.zeros(shape, dtype=np.uint32)
    labs = np.zeros(shape, dtype=np.uint16)
    for k, box in enumerate(sorted(boxes, key=lambda b: -1.0 if b.score is None else b.score), start=1):
        n = len(shape)
        lo = [max(0, int(math.floor(v))) for v in box.box_voxels[:n]]
        hi = [min(s, max(int(math.ceil(v)), lo_i + 1)) for v, s, lo_i in zip(box.box_voxels[n:], shape, lo)]
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        ids[sl] = k
        labs[sl] = box.label
    return ids, labs


def _draw_3d(image: Image, boxes: Sequence[Box], label_map: LabelMap, folder: Path, legend: Sequence[LegendEntry] = ()) -> list[Path]:
    ids, labs = _box_volumes(image.spatial_shape, boxes)
    grey, lab_c, spacing = _canonical(image, labs)
    _, ids_c, _ = _canonical(image, ids)
    if boxes:
        best = max(boxes, key=lambda b: -1.0 if b.score is None else b.score)
        centre_idx = np.array([(best.box_voxels[i] + best.box_voxels[i + 3]) / 2.0 for i in range(3)])
        import nibabel as nib

        ornt = nib.orientations.io_orientation(image.affine)
        centre = np.zeros(3, dtype=int)
        for src_axis, (dst_axis, flip) in enumerate(ornt):
            v = int(np.clip(np.floor(centre_idx[src_axis]), 0, image.spatial_shape[src_axis] - 1))
            centre[int(dst_axis)] = image.spatial_shape[src_axis] - 1 - v if flip < 0 else v
    else:
        centre = np.array(lab_c.shape) // 2
    grey8 = display_grey(grey)
    written = []
    for name, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        other = [a for a in range(3) if a != axis]
        g = _plane(grey8, axis, int(centre[axis]))
        lb = _plane(lab_c, axis, int(centre[axis]))
        ib = _plane(ids_c, axis, int(centre[axis]))
        rgb = blend(g, lb, label_map, alpha=0.0, instances=ib)
        rgb = _stretch(rgb, spacing[other[1]], spacing[other[0]])
        written.append(_save_png(rgb, folder / f"overlay_boxes_{name}.png", legend=[*legend, (VIEW_SIDES[name], None)]))
    return written


def write_box_overlays(image: Image, boxes: Sequence[Box], label_map: LabelMap, folder: Path, threshold: float = 0.0) -> list[Path]:
    """Write the box overlay(s) of one case into ``folder`` (see the module docstring).

    Args:
        image: The input image.
        boxes: Schema box records on ``image``'s grid.
        label_map: Colours of the labels.
        folder: Destination folder.
        threshold: Boxes with a score below this are not drawn (boxes without a score always are).

    Returns:
        Paths written.
    """
    shown = [b for b in boxes if b.score is None or b.score >= threshold]
    legend = _legend(shown, label_map, len(boxes) - len(shown), threshold)
    folder = Path(folder)
    if image.ndim == 2:
        return [_draw_2d(image, shown, label_map, folder / "overlay_boxes.png", legend=legend)]
    return _draw_3d(image, shown, label_map, folder, legend=legend)
