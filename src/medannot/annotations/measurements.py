"""Measurements of a label map that a reader of the study reports: volume per label, longest axial diameter per lesion.

Both the DICOM SR (:mod:`medannot.annotations.dicom_sr`) and the per-case report
(:mod:`medannot.annotations.case_report`) show these numbers, computed once here.

- Volume (3D) or area (2D) of a label: its voxel count times the voxel volume, in mm^3 (mm^2).
- Lesions: the labels that a model splits into instances (``instance_maps``), and labels whose name is a
  morphologically altered structure (tumour, lesion, nodule, metastasis, ... see
  :mod:`medannot.annotations.segment_codes`): each instance, or each connected component (full connectivity),
  is one lesion.
- Longest axial diameter of a lesion (RECIST's long axis): on each slice perpendicular to the array axis nearest
  the patient's superior-inferior axis, the largest distance in mm between two voxel centres of the lesion; the
  largest over the slices. A 2D image is its own plane. A one-voxel lesion measures 0 mm.

Empty rule: a label with no voxel has volume 0 and no lesion (``lesions == ()`` when it is a lesion label).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from medannot.annotations.labelmap import LabelMap, default_color
from medannot.annotations.segment_codes import codes_for_label
from medannot.data.geometry import Geometry
from medannot.data.image import Image
from medannot.errors import InputError

__all__ = ["LabelMeasurement", "LesionMeasurement", "Measurements", "axial_axis", "lesion_labels", "longest_diameter", "measure"]

#: SNOMED CT "Morphologically Altered Structure": labels of this category are measured lesion by lesion.
_ABNORMAL_CATEGORY = "49755003"
#: Points of a slice above which the diameter is taken over the convex hull instead of all pairs.
_PAIRWISE_LIMIT = 400


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion (an instance or connected component of a lesion label).

    Attributes:
        id: 1..n within its label, longest diameter first (then most voxels).
        voxels: Number of voxels (pixels in 2D).
        volume_mm3: ``voxels`` times the voxel volume (mm^2 for a 2D image).
        long_axis_mm: Longest axial diameter in mm, between voxel centres (0 for a one-voxel lesion).
        slice_index: Index along :attr:`Measurements.axial_axis` of the slice holding the diameter (0 in 2D).
        endpoints_mm: The diameter's two ends in world RAS mm.
        centroid_mm: Centre of the lesion's voxels in world RAS mm.
    """

    id: int
    voxels: int
    volume_mm3: float
    long_axis_mm: float
    slice_index: int
    endpoints_mm: tuple[tuple[float, ...], tuple[float, ...]]
    centroid_mm: tuple[float, ...]


@dataclass(frozen=True)
class LabelMeasurement:
    """One foreground label of the label map.

    Attributes:
        value: Label value.
        name: Label name.
        color: RGB 0-255.
        voxels: Voxels (pixels) with this value; 0 when absent.
        volume_mm3: ``voxels`` times the voxel volume: mm^3 in 3D, mm^2 in 2D.
        lesions: Each lesion of a lesion label (largest first); None when the label is not measured per lesion.
    """

    value: int
    name: str
    color: tuple[int, int, int]
    voxels: int
    volume_mm3: float
    lesions: tuple[LesionMeasurement, ...] | None = None


@dataclass(frozen=True)
class Measurements:
    """The measurements of one case.

    Attributes:
        labels: One entry per foreground label of the label map (and per value present but unnamed), by value.
        ndim: 2 or 3.
        axial_axis: Array axis nearest the patient's superior-inferior axis (None in 2D).
        size_unit: ``"mm3"`` (3D) or ``"mm2"`` (2D).
    """

    labels: tuple[LabelMeasurement, ...]
    ndim: int
    axial_axis: int | None
    size_unit: str


def axial_axis(geometry: Geometry) -> int | None:
    """The array axis whose direction is nearest world superior-inferior (RAS z); None for a 2D grid."""
    if geometry.ndim != 3:
        return None
    return int(np.argmax(np.abs(np.asarray(geometry.direction)[2, :])))


def lesion_labels(label_map: LabelMap, instance_maps: Mapping[int, np.ndarray] | None = None) -> set[int]:
    """Label values measured lesion by lesion: those with instance maps, and those named as abnormal structures."""
    out = {int(v) for v in (instance_maps or {})}
    for info in label_map.foreground:
        if codes_for_label(info.name).category[0] == _ABNORMAL_CATEGORY:
            out.add(int(info.value))
    return out


def longest_diameter(points_mm: np.ndarray) -> tuple[float, int, int]:
    """Largest distance between two of ``points_mm`` (n, d) and the indices of the pair; (0.0, 0, 0) for one point.

    Past a few hundred points only the convex hull's vertices are compared (the farthest pair lies on the hull).
    """
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist, squareform

    pts = np.asarray(points_mm, dtype=np.float64)
    if len(pts) < 2:
        return 0.0, 0, 0
    candidates = np.arange(len(pts))
    if len(pts) > _PAIRWISE_LIMIT:
        try:
            candidates = ConvexHull(pts).vertices
        except Exception:  # noqa: BLE001 - qhull refuses degenerate (collinear) sets: compare all pairs then
            candidates = np.arange(len(pts))
    dist = squareform(pdist(pts[candidates]))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(dist[i, j]), int(candidates[i]), int(candidates[j])


def _outline(mask2d: np.ndarray) -> np.ndarray:
    """Indices (n, 2) of the pixels of a 2D mask that touch its outside (the farthest pair is among them)."""
    inner = ndi.binary_erosion(mask2d, border_value=0)
    return np.argwhere(mask2d & ~inner)


def _lesion(mask: np.ndarray, offset: np.ndarray, geometry: Geometry, axis: int | None, lesion_id: int) -> LesionMeasurement:
    """Measure one lesion given as a boolean mask cropped to its box (``offset``: the box's first index)."""
    spacing = np.asarray(geometry.spacing, dtype=np.float64)
    voxels = int(mask.sum())
    best = (-1.0, 0, np.zeros(mask.ndim), np.zeros(mask.ndim))
    slices = range(mask.shape[axis]) if axis is not None else [None]
    in_plane = [a for a in range(mask.ndim) if a != axis]
    for k in slices:
        plane = mask if k is None else np.take(mask, k, axis=axis)
        if not plane.any():
            continue
        pts2 = _outline(plane)
        length, i, j = longest_diameter(pts2 * spacing[in_plane])  # direction columns are orthonormal: mm in plane
        if length > best[0]:
            ends = []
            for p in (pts2[i], pts2[j]):
                full = np.zeros(mask.ndim)
                full[in_plane] = p
                if axis is not None:
                    full[axis] = k
                ends.append(full + offset)
            best = (length, 0 if k is None else int(k) + int(offset[axis]), ends[0], ends[1])
    world = geometry.index_to_world(np.stack([best[2], best[3]]))
    centroid = geometry.index_to_world(np.argwhere(mask).mean(axis=0) + offset)
    return LesionMeasurement(
        id=lesion_id,
        voxels=voxels,
        volume_mm3=voxels * geometry.voxel_volume,
        long_axis_mm=max(best[0], 0.0),
        slice_index=best[1],
        endpoints_mm=(tuple(float(v) for v in world[0]), tuple(float(v) for v in world[1])),
        centroid_mm=tuple(float(v) for v in centroid),
    )


def _lesions(region: np.ndarray, instances: np.ndarray | None, geometry: Geometry, axis: int | None) -> tuple[LesionMeasurement, ...]:
    """Lesions of one label: the instance ids inside ``region``, or its connected components; largest first."""
    import cc3d

    if instances is not None:
        ids = np.where(region, instances, 0)
    else:
        ids = cc3d.connected_components(region, connectivity=8 if region.ndim == 2 else 26)
    if not ids.any():
        return ()
    ids = np.asarray(ids)
    values = [int(v) for v in np.unique(ids) if v != 0]
    compact = np.searchsorted(values, ids) + 1
    compact[ids == 0] = 0
    out = []
    for n, box in enumerate(ndi.find_objects(compact), start=1):
        if box is None:
            continue
        offset = np.array([s.start for s in box])
        out.append(_lesion(compact[box] == n, offset, geometry, axis, n))
    out.sort(key=lambda m: (-m.long_axis_mm, -m.voxels, m.id))
    return tuple(LesionMeasurement(i, m.voxels, m.volume_mm3, m.long_axis_mm, m.slice_index, m.endpoints_mm, m.centroid_mm)
                 for i, m in enumerate(out, start=1))


def measure(
    labels: Image,
    label_map: LabelMap,
    lesion_values: Collection[int] = (),
    instance_maps: Mapping[int, np.ndarray] | None = None,
) -> Measurements:
    """Volumes of every label and, for ``lesion_values``, the longest axial diameter of each lesion.

    Args:
        labels: Label image (2D or 3D, one channel) on its own grid.
        label_map: Names and colours; values present but not in it are measured as ``label_<v>``.
        lesion_values: Labels measured lesion by lesion (e.g. :func:`lesion_labels`).
        instance_maps: Label value -> instance ids on the same grid (a model's split); other lesion labels use
            connected components (full connectivity).

    Returns:
        :class:`Measurements`; lesions numbered 1..n per label, largest diameter first.

    Raises:
        InputError: Not a label image, or an instance map on another grid.
    """
    if not labels.is_label:
        raise InputError(f"measurements need a label image, got {labels.kind.value}")
    lab = labels.scalar()
    geometry = labels.geometry
    axis = axial_axis(geometry)
    counts = np.bincount(lab.ravel().astype(np.int64)) if lab.size and lab.min() >= 0 else np.zeros(1, np.int64)
    present = [int(v) for v in np.flatnonzero(counts) if v != 0]
    infos = {info.value: (info.name, tuple(int(c) for c in info.color)) for info in label_map.foreground}
    for v in present:
        infos.setdefault(v, (f"label_{v}", tuple(int(c) for c in default_color(v))))
    wanted = {int(v) for v in lesion_values}
    out = []
    for value in sorted(infos):
        name, color = infos[value]
        voxels = int(counts[value]) if value < counts.size else 0
        lesions = None
        if value in wanted:
            inst = (instance_maps or {}).get(value)
            if inst is not None and np.shape(inst) != lab.shape:
                raise InputError(f"the instance map of label {value} has shape {np.shape(inst)}, the labels {lab.shape}")
            lesions = _lesions(lab == value, None if inst is None else np.asarray(inst), geometry, axis) if voxels else ()
        out.append(LabelMeasurement(value, name, (color[0], color[1], color[2]), voxels, voxels * geometry.voxel_volume, lesions))
    return Measurements(tuple(out), labels.ndim, axis, "mm3" if labels.ndim == 3 else "mm2")
