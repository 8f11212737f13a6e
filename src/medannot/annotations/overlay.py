"""Overlays people can look at: coloured label fills with contours on the grey image, and a legend.

3D volumes are shown in three planes through the labelled region, in
radiological display convention after reorientation to RAS: axial and coronal
views have the patient's right on the left of the picture, and superior (or
anterior, for axial) at the top.

Every overlay carries a legend strip below the picture: a colour swatch and the name of each label it
shows (the labels present in the case), the view's orientation (``R | L``, ``A | P`` ...) for 3D planes,
or "nothing labelled".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
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


#: One legend entry: the words and the RGB colour of its swatch (None: text only).
LegendEntry = tuple[str, "tuple[int, int, int] | None"]


def legend_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels (the fixed bitmap font where Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def label_legend(label_map: LabelMap, values: Sequence[int]) -> list[LegendEntry]:
    """Legend entries of the label values shown (named from ``label_map``, ``label_<v>`` when unnamed), by value."""
    out: list[LegendEntry] = []
    for value in sorted({int(v) for v in values if int(v) != 0}):
        info = label_map.get(value)
        out.append((info.name if info else f"label_{value}", tuple(info.color) if info else (255, 255, 255)))  # type: ignore[arg-type]
    return out or [("nothing labelled", None)]


def add_legend(rgb: np.ndarray, entries: Sequence[LegendEntry]) -> np.ndarray:
    """``rgb`` (H, W, 3) with a white strip below holding each entry's swatch and words, wrapped to the width.

    Empty rule: no entry returns ``rgb`` unchanged.
    """
    if not entries:
        return rgb
    width = rgb.shape[1]
    size = int(np.clip(width // 36, 12, 18))
    font = legend_font(size)
    pad, swatch = max(3, size // 3), size
    probe = ImageDraw.Draw(PILImage.new("RGB", (1, 1)))
    rows: list[list[tuple[int, LegendEntry]]] = [[]]
    x = pad
    for entry in entries:
        w = (swatch + pad if entry[1] is not None else 0) + int(probe.textlength(entry[0], font=font)) + 2 * pad
        if rows[-1] and x + w > width:
            rows.append([])
            x = pad
        rows[-1].append((x, entry))
        x += w
    line = size + 2 * pad
    strip = PILImage.new("RGB", (width, line * len(rows) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        y = pad + r * line
        for x0, (text, color) in row:
            if color is not None:
                draw.rectangle((x0, y, x0 + swatch - 1, y + swatch - 1), fill=tuple(int(c) for c in color), outline=(90, 90, 90))
                x0 += swatch + pad
            draw.text((x0, y - 1), text, fill=(20, 20, 20), font=font)
    return np.concatenate([np.asarray(rgb, dtype=np.uint8), np.asarray(strip, dtype=np.uint8)], axis=0)


def _save_png(rgb: np.ndarray, path: Path, min_size: int = 256, legend: Sequence[LegendEntry] | None = None) -> Path:
    pic = PILImage.fromarray(rgb)
    # enlarge small pictures to min_size, but never past 2048 px on the long side (a 1 x 32767 image would need GBs)
    scale = max(1, min(int(np.ceil(min_size / max(1, min(rgb.shape[:2])))), 2048 // max(1, max(rgb.shape[:2]))))
    if scale > 1:
        pic = pic.resize((rgb.shape[1] * scale, rgb.shape[0] * scale), PILImage.Resampling.NEAREST)
    if legend:
        pic = PILImage.fromarray(add_legend(np.asarray(pic.convert("RGB")), legend))
    with atomic_path(path) as tmp:
        pic.save(tmp, format="PNG")
    return path


#: Longest side of a 2D overlay before its legend (px): a bigger picture is shown one pixel in ``step`` per side
#: (:func:`display_step`), so that a 12000 x 12000 picture does not need GBs of float RGB to be looked at.
MAX_SIDE_2D = 4096


def display_step(shape: Sequence[int]) -> int:
    """Every how many pixels a 2D picture of ``shape`` (``(..., rows, columns)``) is shown in its overlay."""
    return max(1, -(-max(int(shape[-2]), int(shape[-1])) // MAX_SIDE_2D))


def _rgb_from_image_2d(image: Image, step: int = 1) -> np.ndarray:
    arr = image.array[:, ::step, ::step]
    if image.channels == 3:
        return np.stack([display_grey(c, 0, 100) for c in arr], axis=-1)
    return display_grey(arr[0])


def _canonical(image: Image, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Grey volume and labels reoriented to RAS array order, with the reordered spacing."""
    ornt = nib.orientations.io_orientation(image.affine)
    grey = nib.orientations.apply_orientation(image.array[0], ornt)
    lab = nib.orientations.apply_orientation(labels, ornt)
    spacing = tuple(float(image.spacing[int(ax)]) for ax in ornt[:, 0])
    return grey, lab, spacing


#: Where the patient is in each 3D view (radiological convention): left | right of the picture, top / bottom.
VIEW_SIDES = {"axial": "view: patient right | left, anterior up", "coronal": "view: patient right | left, superior up",
              "sagittal": "view: anterior | posterior, superior up"}


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
    unit = max(min(row_mm, col_mm), max(pic.shape[0] * row_mm, pic.shape[1] * col_mm) / 4096)  # at most 4096 px a side
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
    2D overlays outline each instance when ``instances`` is given. Each picture has a legend strip below it
    (label colours and names; for 3D planes also which side of the patient is where).

    Returns:
        Paths written.
    """
    folder = Path(folder)
    legend = label_legend(label_map, [int(v) for v in np.unique(labels)])
    if image.ndim == 2:
        step = display_step(image.array.shape)
        shown = instances[::step, ::step] if instances is not None else None
        rgb = blend(_rgb_from_image_2d(image, step), labels[::step, ::step], label_map, alpha, shown)
        return [_save_png(rgb, folder / "overlay.png", min_size=512, legend=legend)]
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
        written.append(_save_png(rgb, folder / f"overlay_{name}.png", legend=[*legend, (VIEW_SIDES[name], None)]))
    return written
