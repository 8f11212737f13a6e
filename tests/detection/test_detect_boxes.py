"""Box coordinates: voxel <-> world mm on oblique, anisotropic grids (against nibabel), boxes of instances
(against scikit-image), refusing and clipping boxes outside the image."""

import numpy as np
import pytest
from nibabel.affines import apply_affine
from scipy.spatial.transform import Rotation
from skimage.measure import regionprops

from medannot.data import Geometry
from medannot.data.boxes import (
    box_corners,
    boxes_from_instances,
    check_boxes_inside,
    clip_boxes,
    inclusive_to_boxes,
    map_boxes,
    voxel_boxes_to_world,
    world_boxes_to_voxel,
)
from medannot.errors import InputError


def _oblique_3d() -> Geometry:
    rot = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    return Geometry(spacing=(0.7, 1.3, 3.0), origin=(-90.5, 12.25, 40.0), direction=rot)


def _oblique_2d() -> Geometry:
    a = np.deg2rad(30)
    return Geometry(spacing=(0.5, 2.0), origin=(10.0, -4.0), direction=[[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


@pytest.mark.parametrize("geometry", [_oblique_3d(), _oblique_2d()], ids=["3d", "2d"])
def test_world_box_is_the_extent_of_the_corner_edges_as_nibabel_maps_them(geometry):
    nd = geometry.ndim
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 40, size=(5, nd))
    boxes = np.concatenate([lo, lo + rng.uniform(1, 20, size=(5, nd))], axis=1)
    world = voxel_boxes_to_world(boxes, geometry)
    for k in range(5):
        # A continuous voxel coordinate c is the voxel-centre index c - 0.5.
        corners = np.array(np.meshgrid(*[[boxes[k, a] - 0.5, boxes[k, a + nd] - 0.5] for a in range(nd)], indexing="ij")).reshape(nd, -1).T
        mm = apply_affine(geometry.affine, corners)
        np.testing.assert_allclose(world[k, :, 0], mm.min(axis=0), atol=1e-9)
        np.testing.assert_allclose(world[k, :, 1], mm.max(axis=0), atol=1e-9)
    assert box_corners(boxes, nd).shape == (5, 2**nd, nd)


def test_round_trip_on_an_axis_aligned_anisotropic_flipped_grid():
    geo = Geometry(spacing=(0.8, 1.5, 2.5), origin=(100.0, -20.0, 5.0), direction=np.diag([-1.0, 1.0, -1.0]))
    boxes = np.array([[3.0, 4.0, 5.0, 10.0, 20.0, 7.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(world_boxes_to_voxel(voxel_boxes_to_world(boxes, geo), geo), boxes, atol=1e-9)
    # One voxel: its world box spans exactly one spacing per axis, centred on the voxel centre.
    one = voxel_boxes_to_world(boxes[1:], geo)[0]
    np.testing.assert_allclose(one[:, 1] - one[:, 0], geo.spacing)
    np.testing.assert_allclose(one.mean(axis=1), apply_affine(geo.affine, [0, 0, 0]))


def test_map_boxes_between_grids_goes_through_world_coordinates():
    fine = Geometry(spacing=(0.5, 0.5), origin=(-0.25, -0.25))  # same field of view as 1 mm at origin 0
    coarse = Geometry(spacing=(1.0, 1.0))
    np.testing.assert_allclose(map_boxes(np.array([[2.0, 4.0, 6.0, 10.0]]), coarse, fine), [[4.0, 8.0, 12.0, 20.0]], atol=1e-9)


def test_boxes_of_instances_equal_scikit_image_bounding_boxes():
    rng = np.random.default_rng(1)
    inst = np.zeros((40, 50, 30), dtype=np.int32)
    for k in (3, 7, 1000):
        c = rng.integers(5, 25, size=3)
        inst[c[0] : c[0] + rng.integers(1, 10), c[1] : c[1] + rng.integers(1, 10), c[2] : c[2] + rng.integers(1, 5)] = k
    ids, boxes = boxes_from_instances(inst)
    props = {p.label: p.bbox for p in regionprops(inst)}
    assert ids.tolist() == sorted(props)
    for i, b in zip(ids, boxes):
        np.testing.assert_array_equal(b, props[i])
    empty_ids, empty = boxes_from_instances(np.zeros((4, 4)))
    assert empty_ids.size == 0 and empty.shape == (0, 4)
    np.testing.assert_array_equal(inclusive_to_boxes([[2, 5], [0, 0]]), [2, 0, 6, 1])


def test_boxes_outside_the_image_are_refused_with_the_box_named():
    check_boxes_inside(np.array([[0, 0, 10, 12.0]]), (10, 12))
    with pytest.raises(InputError, match=r"box 1 \[5\.0, 5\.0, 11\.0, 8\.0\] lies outside the image of \[10, 12\] voxels"):
        check_boxes_inside(np.array([[0, 0, 2, 2.0], [5, 5, 11, 8.0]]), (10, 12), what="truth")
    with pytest.raises(InputError, match="max corner below its min corner"):
        check_boxes_inside(np.array([[4, 4, 2, 8.0]]), (10, 12))


def test_clip_keeps_only_boxes_with_extent_inside():
    clipped, keep = clip_boxes(np.array([[-3, 2, 4, 20.0], [11, 0, 14, 3.0]]), (10, 12))
    np.testing.assert_array_equal(clipped[0], [0, 2, 4, 12])
    assert keep.tolist() == [True, False]
