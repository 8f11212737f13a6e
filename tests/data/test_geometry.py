import nibabel as nib
import numpy as np
import pytest

from medannot.data import Case, Geometry, Image, ImageKind
from medannot.errors import GeometryError, InputError


def rotation(deg_x: float, deg_z: float) -> np.ndarray:
    ax, az = np.deg2rad([deg_x, deg_z])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def test_affine_round_trip_oblique_anisotropic():
    g = Geometry(spacing=(0.8, 0.8, 2.5), origin=(-90.5, 12.25, 40.0), direction=rotation(20, -35))
    back = Geometry.from_affine(g.affine)
    np.testing.assert_allclose(back.affine, g.affine, atol=1e-12)
    assert back == g
    np.testing.assert_allclose(back.spacing, (0.8, 0.8, 2.5))


def test_index_world_inverse_and_matches_nibabel():
    g = Geometry(spacing=(1.5, 0.7, 3.0), origin=(1, 2, 3), direction=rotation(10, 50))
    idx = np.array([[0, 0, 0], [10, 20, 5], [3.5, 1.25, 7]])
    world = g.index_to_world(idx)
    np.testing.assert_allclose(world, nib.affines.apply_affine(g.affine, idx), atol=1e-10)
    np.testing.assert_allclose(g.world_to_index(world), idx, atol=1e-10)


def test_axcodes_follow_direction():
    flip = np.diag([-1.0, -1.0, 1.0])
    assert Geometry((1, 1, 1), direction=flip).axcodes() == ("L", "P", "S")
    assert Geometry((1, 1, 1)).axcodes() == ("R", "A", "S")


def test_2d_geometry_is_explicit():
    g = Geometry(spacing=(0.5, 0.25))
    assert g.ndim == 2 and g.affine.shape == (3, 3)
    assert g.voxel_volume == pytest.approx(0.125)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spacing": (1.0,)},
        {"spacing": (1.0, 0.0, 1.0)},
        {"spacing": (1.0, 1.0, 1.0), "origin": (0, 0)},
        {"spacing": (1.0, 1.0, 1.0), "direction": [[1, 1, 0], [0, 1, 0], [0, 0, 1]]},
        {"spacing": (1.0, float("nan"), 1.0)},
    ],
)
def test_invalid_geometry_is_refused(kwargs):
    with pytest.raises(GeometryError):
        Geometry(**kwargs)


def test_sheared_affine_is_refused():
    aff = np.eye(4)
    aff[0, 1] = 0.5
    with pytest.raises(GeometryError, match="shear"):
        Geometry.from_affine(aff)


def test_image_channel_first_and_kind():
    img = Image.from_spatial(np.zeros((4, 5, 6), np.int16), spacing=(1, 2, 3))
    assert img.array.shape == (1, 4, 5, 6) and img.ndim == 3 and img.spatial_shape == (4, 5, 6)
    rgb = Image(np.zeros((3, 8, 9), np.uint8), Geometry((1, 1)))
    assert rgb.channels == 3 and rgb.ndim == 2
    with pytest.raises(InputError):
        rgb.scalar()
    with pytest.raises(GeometryError, match="channels first"):
        Image(np.zeros((4, 5, 6)), Geometry((1, 1, 1)))
    with pytest.raises(InputError, match="integer"):
        Image.from_spatial(np.zeros((4, 5), np.float32), kind="label")
    with pytest.raises(InputError, match="unknown image kind"):
        Image.from_spatial(np.zeros((4, 5)), kind="mask")
    assert Image.from_spatial(np.zeros((4, 5), np.uint8), kind="label").kind is ImageKind.LABEL


def test_same_grid_check():
    a = Image.from_spatial(np.zeros((4, 5, 6)), spacing=(1, 1, 1))
    b = Image.from_spatial(np.zeros((4, 5, 6)), spacing=(1, 1, 1.001))
    assert a.same_grid(a.with_array(np.ones((1, 4, 5, 6))))
    with pytest.raises(GeometryError, match="different grids"):
        a.check_same_grid(b)


def test_case_names_and_roles():
    img = Image.from_spatial(np.zeros((2, 2)))
    case = Case("c1", {"image": img})
    assert case.image is img and "image" in case
    with pytest.raises(InputError, match="has no image 'label'"):
        case["label"]
    for bad in ("", "../x", "a/b", ".."):
        with pytest.raises(InputError):
            Case(bad)


def test_as_volume_and_as_plane_round_trip():
    g = Geometry(spacing=(0.5, 0.25), origin=(3.0, -2.0), direction=[[0, -1], [1, 0]])
    img = Image.from_spatial(np.arange(12, dtype=np.uint8).reshape(3, 4), g, kind="label")
    vol = img.as_volume()
    assert vol.ndim == 3 and vol.spatial_shape == (3, 4, 1)
    np.testing.assert_allclose(vol.geometry.index_to_world(np.array([2, 3, 0]))[:2], g.index_to_world(np.array([2, 3])))
    back = vol.as_plane()
    assert back.same_grid(img) and np.array_equal(back.array, img.array) and back.kind is ImageKind.LABEL
    with pytest.raises(GeometryError, match="one x-y slice"):
        Image.from_spatial(np.zeros((3, 4, 2))).as_plane()
