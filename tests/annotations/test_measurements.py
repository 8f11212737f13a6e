"""Measurements for reports: volumes per label and the longest axial diameter of each lesion, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from medannot.annotations import LabelMap
from medannot.annotations.measurements import axial_axis, lesion_labels, longest_diameter, measure
from medannot.data import Geometry, Image, ImageKind
from medannot.data.geometry import axcodes_direction
from medannot.errors import InputError


def _labels(array: np.ndarray, geometry: Geometry) -> Image:
    return Image(array[None], geometry, ImageKind.LABEL)


def _brute_force_axial(mask: np.ndarray, geometry: Geometry) -> float:
    """Largest distance between any two voxel centres of one axial slice, over all slices (world mm)."""
    axis = axial_axis(geometry)
    best = 0.0
    for k in range(mask.shape[axis]):
        idx = np.argwhere(np.take(mask, k, axis=axis))
        if len(idx) < 2:
            continue
        full = np.insert(idx, axis, k, axis=1)
        best = max(best, float(pdist(geometry.index_to_world(full)).max()))
    return best


def test_volumes_and_lesion_diameters_equal_brute_force_on_a_rotated_grid():
    direction = axcodes_direction("LPS", rotation_deg=(0.0, 0.0, 25.0))
    geometry = Geometry(spacing=(0.7, 0.9, 2.5), origin=(10.0, -20.0, 5.0), direction=direction)
    lab = np.zeros((60, 50, 12), np.uint8)
    lab[:30] = 1  # "liver": measured by volume only
    rng = np.random.default_rng(3)
    blobs = [(slice(35, 47), slice(5, 13), slice(2, 6)), (slice(40, 44), slice(30, 48), slice(8, 9))]
    for box in blobs:
        lab[box] = 2
    lab[36, 5:13, 2:6] = np.where(rng.random((8, 4)) < 0.5, 2, 0)  # a ragged edge
    label_map = LabelMap.parse({1: "liver", 2: "tumour"})
    m = measure(_labels(lab, geometry), label_map, lesion_labels(label_map))

    assert m.size_unit == "mm3" and m.axial_axis == 2
    liver, tumour = m.labels
    assert liver.lesions is None and liver.voxels == 30 * 50 * 12
    assert liver.volume_mm3 == pytest.approx(liver.voxels * 0.7 * 0.9 * 2.5)
    assert tumour.voxels == int((lab == 2).sum()) and len(tumour.lesions) == 2
    expected = sorted((_brute_force_axial(np.zeros_like(lab, bool) | _component(lab, box), geometry) for box in blobs), reverse=True)
    assert [les.long_axis_mm for les in tumour.lesions] == pytest.approx(expected)
    assert [les.id for les in tumour.lesions] == [1, 2]
    for les in tumour.lesions:
        ends = np.asarray(les.endpoints_mm)
        assert np.linalg.norm(ends[0] - ends[1]) == pytest.approx(les.long_axis_mm)
        idx = np.rint(geometry.world_to_index(ends)).astype(int)
        assert all(lab[tuple(i)] == 2 for i in idx) and idx[0, 2] == idx[1, 2] == les.slice_index
    assert sum(les.voxels for les in tumour.lesions) == tumour.voxels


def _component(lab: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    out = np.zeros(lab.shape, bool)
    out[box] = lab[box] == 2
    return out


def test_large_outline_takes_the_hull_path_and_still_equals_brute_force():
    geometry = Geometry(spacing=(0.5, 0.8))
    yy, xx = np.mgrid[:300, :300]
    ellipse = (((yy - 150) / 140.0) ** 2 + ((xx - 150) / 60.0) ** 2 <= 1).astype(np.uint8)
    m = measure(_labels(ellipse, geometry), LabelMap.parse({1: "lesion"}), [1])
    (les,) = m.labels[0].lesions
    pts = np.argwhere(ellipse) * np.array([0.5, 0.8])
    from scipy.spatial import ConvexHull

    hull = pts[ConvexHull(pts).vertices]
    assert les.long_axis_mm == pytest.approx(float(pdist(hull).max()))
    assert m.axial_axis is None and m.size_unit == "mm2"


def test_instances_split_touching_lesions_and_one_voxel_measures_zero():
    geometry = Geometry(spacing=(1.0, 1.0, 1.0))
    lab = np.zeros((20, 20, 5), np.uint8)
    lab[2:12, 2:6, 2] = 1
    inst = np.zeros(lab.shape, np.uint32)
    inst[2:7, 2:6, 2], inst[7:12, 2:6, 2] = 4, 9  # the model split one blob into two touching instances
    lab[15, 15, 4] = 1
    inst[15, 15, 4] = 11
    m = measure(_labels(lab, geometry), LabelMap.parse({1: "nodule"}), [1], {1: inst})
    lesions = m.labels[0].lesions
    assert [les.voxels for les in lesions] == [20, 20, 1]
    assert lesions[0].long_axis_mm == pytest.approx(np.hypot(4, 3)) and lesions[-1].long_axis_mm == 0.0
    without = measure(_labels(lab, geometry), LabelMap.parse({1: "nodule"}), [1])
    assert [les.voxels for les in without.labels[0].lesions] == [40, 1]  # connected components join them


def test_empty_rule_and_which_labels_are_lesions():
    geometry = Geometry(spacing=(1.0, 1.0, 2.0))
    empty = np.zeros((8, 8, 3), np.uint8)
    label_map = LabelMap.parse({1: "grey matter", 2: "tumour", 3: "Lung nodule"})
    assert lesion_labels(label_map) == {2, 3}
    assert lesion_labels(label_map, {1: np.zeros((8, 8, 3))}) == {1, 2, 3}
    m = measure(_labels(empty, geometry), label_map, lesion_labels(label_map))
    assert [(x.voxels, x.volume_mm3, x.lesions) for x in m.labels] == [(0, 0.0, None), (0, 0.0, ()), (0, 0.0, ())]
    assert longest_diameter(np.zeros((1, 3))) == (0.0, 0, 0)
    with pytest.raises(InputError, match="label image"):
        measure(Image(empty[None].astype(np.float32), geometry), label_map)
