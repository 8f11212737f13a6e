"""Overlay thumbnails for the evaluation report ("cards"): where prediction and reference agree and disagree.

One small PNG per (case, label): in 3D the axial slice holding the most of the structure (voxels in
the reference or the prediction; among equals, the one where they differ most), so a reader sees the
structure itself rather than a stray voxel at its edge, shown as radiologists read it (anterior up, the patient's right on
the image left); in 2D the image itself. Colours (Okabe-Ito, colour-blind safe):
agreement green, false positive (predicted, not in the reference) orange-red,
false negative (in the reference, missed) blue, drawn half-transparent over the grey
image when it can be found, else over a neutral grey background.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medannot.evaluation.record import Record

__all__ = ["COLORS", "Thumbnail", "find_input_image", "key_slice", "overlay_png", "thumbnail"]


@dataclass(frozen=True, eq=False, repr=False)
class Thumbnail(Record):
    """Overlay thumbnail of one case and label.

    Attributes:
        png: Base64 PNG text.
        where: Plain-words description of the slice shown.
        false_positive: False-positive pixels on the shown slice.
        false_negative: False-negative pixels on the shown slice.
        image: True when drawn on the input image, False on a neutral grey background.
    """

    png: str
    where: str
    false_positive: int
    false_negative: int
    image: bool = False

#: RGB colours of the three overlay classes.
COLORS = {"agree": (0, 158, 115), "false_positive": (213, 94, 0), "false_negative": (0, 114, 178)}
_ALPHA = 0.55


def find_input_image(*label_paths: Path | None) -> Path | None:
    """The input image a ``medannot annotate`` output folder was made from, if it still exists.

    Looks for ``annotation.json`` beside each label file (``<case>/labels.nii.gz``) and returns the input it
    records when that exists: ``provenance.input.path``, which ``medannot annotate`` writes relative to the INPUT
    it was given (``input.root``, recorded when given as a relative path, so found from the folder annotate ran
    in); older files hold an absolute path. None otherwise.
    """
    for label_path in label_paths:
        if label_path is None:
            continue
        meta = Path(label_path).parent / "annotation.json"
        if not meta.is_file():
            continue
        try:
            info = json.loads(meta.read_text())["provenance"]["input"]
            path = Path(str(info["path"]))
            root = info.get("root")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if not str(info["path"]):
            continue
        candidates = [path] if path.is_absolute() else [*([Path(str(root)) / path] if root else []), path]
        for where in candidates:
            if where.exists():
                return where
    return None


def _world_axis(direction: np.ndarray, axis: int) -> int:
    return int(np.argmax(np.abs(direction[:, axis])))


def key_slice(pred: np.ndarray, truth: np.ndarray, direction: np.ndarray) -> tuple[int, int]:
    """Array axis closest to world superior-inferior, and the index along it with the most truth or prediction.

    Args:
        pred: Boolean 3D prediction mask.
        truth: Boolean 3D reference mask, same shape.
        direction: 3x3 direction cosines (columns = array axes in world RAS).

    Returns:
        ``(axis, index)``: the slice with the most voxels in the reference or the prediction (their union); among
        slices with equally many, the one where they differ most, then the first. With both masks empty, the
        middle slice.
    """
    axis = int(np.argmax(np.abs(np.asarray(direction)[2, :])))
    others = tuple(a for a in range(3) if a != axis)
    either = (pred | truth).sum(axis=others)
    if not either.any():
        return axis, pred.shape[axis] // 2
    differ = (pred ^ truth).sum(axis=others)
    best = np.flatnonzero(either == either.max())
    return axis, int(best[np.argmax(differ[best])])


def _orient_axial(arrays: list[np.ndarray], axes: tuple[int, int], direction: np.ndarray, spacing: tuple[float, float]):
    """Rows = anterior (top) to posterior, columns = patient's right (left of the image) to left."""
    world = [_world_axis(direction, a) for a in axes]
    if sorted(world) != [0, 1]:
        return arrays, spacing
    if world[0] == 0:  # rows follow x: transpose so rows follow y
        arrays = [a.T for a in arrays]
        spacing = (spacing[1], spacing[0])
        axes = (axes[1], axes[0])
    if direction[1, axes[0]] > 0:  # index grows anteriorly: flip so anterior is on top
        arrays = [a[::-1] for a in arrays]
    if direction[0, axes[1]] > 0:  # index grows towards the right: flip so the right is on the left
        arrays = [a[:, ::-1] for a in arrays]
    return arrays, spacing


def _crop_box(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding box of ``mask`` grown by 20% of the slice per side (whole slice when empty)."""
    if not mask.any():
        return slice(None), slice(None)
    box = []
    for axis in range(2):
        hit = np.flatnonzero(mask.any(axis=1 - axis))
        margin = max(4, int(0.2 * mask.shape[axis]))
        box.append(slice(max(0, hit[0] - margin), min(mask.shape[axis], hit[-1] + 1 + margin)))
    return box[0], box[1]


def _to_grey(image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if image is None:
        return np.full(shape, 0.35, dtype=np.float32)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.full(shape, 0.35, dtype=np.float32)
    lo, hi = np.percentile(finite, [1.0, 99.0])
    scale = float(hi - lo) or 1.0
    return np.clip((np.nan_to_num(image.astype(np.float32)) - lo) / scale, 0.0, 1.0)


def overlay_png(
    pred: np.ndarray,
    truth: np.ndarray,
    image: np.ndarray | None = None,
    spacing: tuple[float, float] = (1.0, 1.0),
    max_side: int = 240,
) -> bytes:
    """PNG bytes of the agreement / false-positive / false-negative overlay of one 2D slice.

    Args:
        pred: Boolean 2D prediction mask (rows, columns).
        truth: Boolean 2D reference mask, same shape.
        image: Optional intensity slice, same shape (shown in grey, 1st-99th percentile window).
        spacing: Pixel size in mm (rows, columns), so the thumbnail keeps the physical aspect ratio.
        max_side: Longest side of the thumbnail in pixels.
    """
    from PIL import Image as PILImage

    rgb = np.repeat(_to_grey(image, pred.shape)[..., None], 3, axis=2)
    for mask, key in ((pred & truth, "agree"), (pred & ~truth, "false_positive"), (~pred & truth, "false_negative")):
        rgb[mask] = (1 - _ALPHA) * rgb[mask] + _ALPHA * (np.asarray(COLORS[key], np.float32) / 255.0)
    pil = PILImage.fromarray((rgb * 255 + 0.5).astype(np.uint8), mode="RGB")
    height_mm, width_mm = pred.shape[0] * spacing[0], pred.shape[1] * spacing[1]
    scale = max_side / max(height_mm, width_mm, 1e-9)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    if size != pil.size:
        shrink = size[0] < pil.size[0] or size[1] < pil.size[1]
        pil = pil.resize(size, PILImage.Resampling.BOX if shrink else PILImage.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def thumbnail(
    pred: np.ndarray,
    truth: np.ndarray,
    geometry: Any,
    image: np.ndarray | None = None,
    max_side: int = 240,
) -> Thumbnail:
    """Thumbnail of one case and label.

    Args:
        pred: Boolean prediction mask (2D or 3D, array order of ``geometry``).
        truth: Boolean reference mask, same shape.
        geometry: The truth's :class:`medannot.data.Geometry` (spacing in mm, direction).
        image: Optional intensity array on the same grid.
        max_side: Longest side in pixels.

    Returns:
        :class:`Thumbnail` (``image`` False: the caller says whether ``image`` was the input image).
    """
    spacing = tuple(float(s) for s in geometry.spacing)
    if pred.ndim == 3:
        direction = np.asarray(geometry.direction, dtype=np.float64)
        axis, index = key_slice(pred, truth, direction)
        take = [slice(None)] * 3
        take[axis] = index  # type: ignore[call-overload]
        arrays = [pred[tuple(take)], truth[tuple(take)]] + ([] if image is None else [image[tuple(take)]])
        axes = tuple(a for a in range(3) if a != axis)
        arrays, sp = _orient_axial(arrays, axes, direction, (spacing[axes[0]], spacing[axes[1]]))  # type: ignore[arg-type]
        where = f"slice {index + 1} of {pred.shape[axis]} (array axis {axis}), anterior up, patient's right on the left"
    else:
        arrays = [pred, truth] + ([] if image is None else [image])
        sp = (spacing[0], spacing[1])
        where = "whole image"
    p2, t2 = np.asarray(arrays[0], bool), np.asarray(arrays[1], bool)
    i2 = None if image is None else np.asarray(arrays[2])
    rows, cols = _crop_box(p2 | t2)
    if (rows, cols) != (slice(None), slice(None)) and (rows.stop - rows.start, cols.stop - cols.start) != p2.shape:
        where += "; cropped around the structure"
    p2, t2 = p2[rows, cols], t2[rows, cols]
    i2 = None if i2 is None else i2[rows, cols]
    png = overlay_png(p2, t2, i2, sp, max_side=max_side)
    return Thumbnail(
        png=base64.b64encode(png).decode("ascii"),
        where=where,
        false_positive=int((p2 & ~t2).sum()),
        false_negative=int((~p2 & t2).sum()),
    )
