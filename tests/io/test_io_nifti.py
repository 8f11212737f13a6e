import nibabel as nib
import numpy as np
import pytest

from iohelpers import MNI_GM, MNI_T1, mni_block, rotation
from medannot.data import Geometry, Image, ImageKind
from medannot.errors import GeometryError, InputError, OutputError
from medannot.io import read_image, write_image
from medannot.io.nifti import read_nifti, write_nifti


def _affine(rot, spacing, origin):
    aff = np.eye(4)
    aff[:3, :3] = rot * np.asarray(spacing)[None, :]
    aff[:3, 3] = origin
    return aff


def test_mni_read_matches_nibabel_and_roundtrips(tmp_path):
    ref = nib.load(MNI_T1)
    im = read_image(MNI_T1)
    assert im.kind is ImageKind.INTENSITY and im.ndim == 3
    assert im.array.shape == (1, *ref.shape)
    np.testing.assert_array_equal(im.array[0], np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(im.affine, ref.affine, atol=1e-9)
    out = write_image(im, tmp_path / "t1.nii.gz")
    back = read_image(out)
    np.testing.assert_array_equal(back.array, im.array)
    assert back.array.dtype == im.array.dtype
    np.testing.assert_allclose(back.affine, im.affine, atol=1e-6, rtol=0)


AFFINES = {
    "identity_aniso": _affine(np.eye(3), (0.7, 0.9, 3.0), (-90.5, 12.25, 30.0)),
    "flipped_x": _affine(np.diag([-1.0, 1.0, 1.0]), (1.0, 1.0, 2.5), (100.0, -20.0, 5.5)),
    "flipped_xyz": _affine(np.diag([-1.0, -1.0, -1.0]), (0.5, 0.75, 1.25), (10.0, 20.0, -30.0)),
    "permuted_lps": _affine(np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, 1.0, 0]]), (1.2, 0.8, 2.0), (1.0, 2.0, 3.0)),
    "oblique": _affine(rotation(12.0, -7.0, 25.0), (0.6, 0.6, 3.3), (-45.5, 33.75, 12.0)),
    "oblique_flipped": _affine(rotation(30.0, 15.0, -40.0) @ np.diag([1.0, -1.0, 1.0]), (2.0, 1.1, 0.9), (7.0, -8.0, 9.0)),
}


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_geometry_survives_write_then_read(tmp_path, name):
    aff = AFFINES[name]
    data = mni_block()[:20, :24, :12]
    im = Image(data[None], Geometry.from_affine(aff))
    out = write_nifti(im, tmp_path / f"{name}.nii.gz")
    back = read_nifti(out)
    np.testing.assert_allclose(back.affine, aff, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(back.array, im.array)
    # the peer library sees the same geometry in both header forms
    hdr = nib.load(out).header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 2
    np.testing.assert_allclose(hdr.get_qform(), aff, atol=1e-5)
    np.testing.assert_allclose(hdr.get_sform(), aff, atol=1e-6)
    assert hdr.get_xyzt_units()[0] == "mm"


def test_arbitrary_origin_float32_precision(tmp_path):
    aff = _affine(rotation(3.0, 1.0, -2.0), (0.488281, 0.488281, 1.25), (-123.456789, 87.654321, -250.123))
    im = Image(np.zeros((1, 4, 5, 6), np.int16), Geometry.from_affine(aff))
    back = read_nifti(write_nifti(im, tmp_path / "a.nii"))
    np.testing.assert_allclose(back.affine, aff, atol=3e-5, rtol=0)


def test_labels_stored_as_uint8_or_uint16(tmp_path):
    lab = np.zeros((1, 6, 5, 4), np.int64)
    lab[0, 1:3, 1:3, 1:3] = 2
    im = Image(lab, Geometry((1.0, 1.0, 1.0)), ImageKind.LABEL)
    out = write_image(im, tmp_path / "l.nii.gz")
    assert nib.load(out).get_data_dtype() == np.uint8
    back = read_image(out, kind="label")
    assert back.array.dtype == np.uint8 and back.is_label
    np.testing.assert_array_equal(back.array, lab)
    lab[0, 0, 0, 0] = 300
    out2 = write_image(Image(lab, im.geometry, ImageKind.LABEL), tmp_path / "l2.nii.gz")
    assert nib.load(out2).get_data_dtype() == np.uint16
    np.testing.assert_array_equal(read_image(out2, kind="label").array, lab)


def test_real_probability_map_as_labels():
    gm = read_image(MNI_GM, kind=ImageKind.LABEL)
    assert gm.is_label and gm.array.dtype == np.uint8 and gm.array.max() > 200


def test_float_intensities_written_float32(tmp_path):
    arr = np.random.default_rng(0).normal(size=(1, 5, 6, 7))
    back = read_image(write_image(Image(arr, Geometry((1.0, 2.0, 3.0))), tmp_path / "f.nii"))
    assert back.array.dtype == np.float32
    np.testing.assert_allclose(back.array, arr.astype(np.float32))


def test_4d_file_is_channels(tmp_path):
    data = np.arange(4 * 5 * 6 * 2, dtype=np.int16).reshape(4, 5, 6, 2)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "m.nii.gz")
    im = read_image(tmp_path / "m.nii.gz")
    assert im.ndim == 3 and im.array.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(im.array[1], data[..., 1])
    back = read_image(write_image(im, tmp_path / "m2.nii.gz"))
    np.testing.assert_array_equal(back.array, im.array)
    assert nib.load(tmp_path / "m2.nii.gz").shape == (4, 5, 6, 2)


def test_2d_file_stays_3d_single_slice(tmp_path):
    data = np.arange(20, dtype=np.uint8).reshape(4, 5)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "s.nii")
    im = read_image(tmp_path / "s.nii")
    assert im.ndim == 3 and im.array.shape == (1, 4, 5, 1)


def test_2d_image_written_as_single_slice(tmp_path):
    im = Image(np.ones((1, 3, 4), np.uint8), Geometry((0.5, 0.25), origin=(1.0, 2.0)))
    back = read_image(write_image(im, tmp_path / "two.nii.gz"))
    assert back.array.shape == (1, 3, 4, 1)
    np.testing.assert_allclose(back.spacing, (0.5, 0.25, 1.0))


def test_non_integer_labels_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), 0.5, np.float32), np.eye(4)), tmp_path / "p.nii.gz")
    with pytest.raises(InputError, match="non-integer"):
        read_image(tmp_path / "p.nii.gz", kind="label")


def test_sheared_affine_refused(tmp_path):
    aff = np.eye(4)
    aff[0, 1] = 0.5
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), aff), tmp_path / "shear.nii")
    with pytest.raises(GeometryError, match="shear") as err:
        read_image(tmp_path / "shear.nii")
    assert str(err.value).startswith(str(tmp_path / "shear.nii"))


def test_wrong_suffix_and_kind(tmp_path):
    im = Image(np.zeros((1, 2, 2, 2), np.uint8), Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(OutputError):
        write_nifti(im, tmp_path / "x.nrrd")
    with pytest.raises(InputError, match="expected one of"):
        read_image(MNI_T1, kind="labels")
