"""The per-case report for the person who reads the study: key slices, measurements and provenance in one HTML page.

``annotate --format report`` writes ``report.html`` into each case folder. The page is one self-contained
file (``medannot/templates/case_report.html``, the shared stylesheet inlined, pictures as base64 PNG, no script,
no external URL), so it opens from disk and can be attached to a message.

- **Key slices** (3D): for each label, the axial slice holding most of it; for each of the largest lesions
  (up to :data:`MAX_LESION_SLICES`), the axial slice of its longest diameter, with the diameter drawn as a
  line. Shown as radiologists read axial images (anterior up, the patient's right on the left), labels filled
  and outlined in their colours, a legend below. A 2D image is shown whole.
- **Measurements**: the volume (mm^3 and mL; mm^2 in 2D) of every label, and per lesion its longest axial
  diameter, volume, slice and centre (see :mod:`medannot.annotations.measurements`).
- **Provenance**: which model or method, version, weights checksum, settings, the input, when, and the
  medannot version; the annotation is marked as made automatically and not yet reviewed.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.measurements import LesionMeasurement, Measurements
from medannot.annotations.overlay import (
    VIEW_SIDES,
    _canonical,
    _plane,
    _rgb_from_image_2d,
    _stretch,
    add_legend,
    blend,
    display_grey,
    label_legend,
)
from medannot.annotations.schema import Provenance
from medannot.data.image import Image
from medannot.errors import OutputError

__all__ = ["MAX_LESION_SLICES", "REPORT_FILE", "KeySlice", "key_slices", "write_case_report"]

REPORT_FILE = "report.html"
#: Lesions (largest diameter first) that get their own key slice.
MAX_LESION_SLICES = 6
#: Lesions listed per label in the table (the rest are counted).
MAX_LESION_ROWS = 100
#: Shortest side of a key-slice picture in pixels.
_MIN_SIDE = 320


@dataclass(frozen=True)
class KeySlice:
    """One picture of the report.

    Attributes:
        title: What it shows (``"liver: most voxels"``, ``"tumour lesion 1: 23.4 mm"``).
        where: The slice in words (``"axial slice 41 of 120"``).
        png: Base64 PNG text.
    """

    title: str
    where: str
    png: str


#: A diameter on a picture: its two ends as (row, column) of the picture before enlarging.
Line = tuple[tuple[float, float], tuple[float, float]]
_LINE_COLOR = (0, 230, 255)


def _png(rgb: np.ndarray, lines: list[Line], scale_rc: tuple[float, float], legend: list[Any]) -> str:
    """Base64 PNG of ``rgb`` enlarged to :data:`_MIN_SIDE`, with the diameters drawn and the legend below."""
    scale = max(1, int(np.ceil(_MIN_SIDE / max(1, min(rgb.shape[:2])))))
    pic = PILImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize((rgb.shape[1] * scale, rgb.shape[0] * scale),
                                                                                 PILImage.Resampling.NEAREST)
    draw = ImageDraw.Draw(pic)
    fr, fc = scale_rc[0] * scale, scale_rc[1] * scale
    for (r0, c0), (r1, c1) in lines:
        ends = [((c + 0.5) * fc, (r + 0.5) * fr) for r, c in ((r0, c0), (r1, c1))]
        draw.line(ends, fill=_LINE_COLOR, width=max(2, scale // 2))
        for x, y in ends:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), outline=_LINE_COLOR, width=2)
    if lines:
        legend = [*legend, ("longest diameter", _LINE_COLOR)]
    buffer = io.BytesIO()
    PILImage.fromarray(add_legend(np.asarray(pic.convert("RGB")), legend)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _to_canonical(index: np.ndarray, shape: tuple[int, ...], ornt: np.ndarray) -> np.ndarray:
    """Voxel index on the image's grid -> index on its RAS-reoriented grid (nibabel ``io_orientation``)."""
    out = np.zeros(3)
    for src, (dst, flip) in enumerate(ornt):
        out[int(dst)] = shape[src] - 1 - index[src] if flip < 0 else index[src]
    return out


def key_slices(image: Image, labels: np.ndarray, label_map: LabelMap, measurements: Measurements,
               max_lesions: int = MAX_LESION_SLICES) -> list[KeySlice]:
    """The report's pictures (see the module docstring); an image with no label at all gives its middle axial slice.

    Args:
        image: The input image.
        labels: Its label array (spatial shape).
        label_map: Names and colours.
        measurements: The case's measurements (lesions with their diameters).
        max_lesions: Most lesion pictures.
    """
    values = [int(v) for v in np.unique(labels) if v != 0]
    legend = label_legend(label_map, values)
    lesions = sorted(((m.name, les) for m in measurements.labels for les in (m.lesions or ())), key=lambda t: -t[1].long_axis_mm)
    if image.ndim == 2:
        rgb = blend(_rgb_from_image_2d(image), labels, label_map, 0.35)
        lines: list[Line] = []
        for _, les in lesions[:max_lesions]:
            a, b = image.geometry.world_to_index(np.asarray(les.endpoints_mm))
            lines.append(((float(a[0]), float(a[1])), (float(b[0]), float(b[1]))))
        title = "the whole image" + (f"; the longest diameters of the {len(lines)} largest lesions" if lines else "")
        return [KeySlice(title, "whole image", _png(rgb, lines, (1.0, 1.0), legend))]
    import nibabel as nib

    grey, lab, spacing = _canonical(image, labels)
    ornt = nib.orientations.io_orientation(image.affine)
    grey8 = display_grey(grey)
    scale_rc = (spacing[1] / min(spacing[:2]), spacing[0] / min(spacing[:2]))  # _stretch's factors of an axial slice
    n = lab.shape[2]
    legend = [*legend, (VIEW_SIDES["axial"], None)]

    def picture(k: int, lines: list[Line] | None = None) -> str:
        rgb = _stretch(blend(_plane(grey8, 2, k), _plane(lab, 2, k), label_map, 0.35), spacing[1], spacing[0])
        return _png(rgb, lines or [], scale_rc, legend)

    out = []
    for value in values:
        counts = (lab == value).sum(axis=(0, 1))
        k = int(np.argmax(counts))
        name = next((m.name for m in measurements.labels if m.value == value), f"label_{value}")
        out.append(KeySlice(f"{name}: the slice with most of it", f"axial slice {k + 1} of {n}", picture(k)))
    for name, les in lesions[:max_lesions]:
        ends = [_to_canonical(idx, image.spatial_shape, ornt) for idx in image.geometry.world_to_index(np.asarray(les.endpoints_mm))]
        k = int(np.rint(ends[0][2]))
        x, y = lab.shape[0], lab.shape[1]
        a, b = ((y - 1 - e[1], x - 1 - e[0]) for e in ends)  # _plane: rows = A descending, columns = R descending
        out.append(KeySlice(f"{name} lesion {les.id}: longest axial diameter {les.long_axis_mm:.1f} mm", f"axial slice {k + 1} of {n}",
                            picture(k, [(a, b)])))
    if not out:
        out.append(KeySlice("nothing was labelled: the middle slice", f"axial slice {n // 2 + 1} of {n}", picture(n // 2)))
    return out


@dataclass(frozen=True)
class _LesionRow:
    label: str
    lesion: LesionMeasurement
    where: str


def _provenance_rows(provenance: Provenance) -> list[tuple[str, str]]:
    made_by = f"{provenance.name} {provenance.version}".strip()
    rows = [("made by", f"{made_by} ({'trained model' if provenance.source == 'model' else 'training-free method'}, "
                        f"{provenance.task.value})"), ("made on", provenance.created), ("medannot", provenance.medannot_version)]
    if provenance.sha256:
        rows.append(("weights sha256", provenance.sha256))
    for key, value in provenance.input.items():
        rows.append((f"input {key}", str(value)))
    if provenance.host or provenance.user:
        rows.append(("computer / user", f"{provenance.host or '-'} / {provenance.user or '-'}"))
    return rows


def write_case_report(
    path: str | Path,
    case_name: str,
    image: Image,
    labels: np.ndarray,
    label_map: LabelMap,
    measurements: Measurements,
    provenance: Provenance,
    files: dict[str, str] | None = None,
) -> Path:
    """Write the case's ``report.html`` (see the module docstring).

    Args:
        path: Output file.
        case_name: The case's name (page title).
        image: The input image.
        labels: The label array on ``image``'s grid (spatial shape).
        label_map: Names and colours.
        measurements: :func:`medannot.annotations.measurements.measure` of the labels.
        provenance: What made the labels.
        files: Other files of the case folder to list (key -> file name).

    Returns:
        The written path.

    Raises:
        OutputError: The file cannot be written.
    """
    from medannot.io.atomic import atomic_path
    from medannot.templates import render

    unit = "mm³" if measurements.ndim == 3 else "mm²"
    axis = measurements.axial_axis
    lesion_rows = []
    more: dict[str, int] = {}
    for m in measurements.labels:
        for les in (m.lesions or ())[:MAX_LESION_ROWS]:
            where = f"slice {les.slice_index + 1} of {image.spatial_shape[axis]}" if axis is not None else "whole image"
            lesion_rows.append(_LesionRow(m.name, les, where))
        if m.lesions and len(m.lesions) > MAX_LESION_ROWS:
            more[m.name] = len(m.lesions) - MAX_LESION_ROWS
    page = render(
        "case_report.html",
        case=case_name,
        made_by=f"{provenance.name} {provenance.version}".strip(),
        created=provenance.created,
        unit=unit,
        ndim=measurements.ndim,
        labels=measurements.labels,
        lesion_rows=lesion_rows,
        more=more,
        slices=key_slices(image, labels, label_map, measurements),
        provenance=_provenance_rows(provenance),
        parameters=json.dumps(provenance.parameters, indent=1, sort_keys=True, default=str),
        files=sorted((files or {}).items()),
        shape=" × ".join(str(s) for s in image.spatial_shape),
        spacing=" × ".join(f"{s:g}" for s in image.spacing),
    )
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            Path(tmp).write_text(page, encoding="utf-8")
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write the case report ({exc.strerror or exc})", out) from exc
    return out
