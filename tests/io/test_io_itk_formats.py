"""NRRD (.nrrd, .nhdr + raw) and MetaImage (.mha, .mhd + raw) read through SimpleITK, checked against SimpleITK itself
(voxel values and the world position of every corner, LPS -> RAS) and against the NIfTI reader for the same grid."""

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from iohelpers import mni_block, rotation
from medannot.data import Geometry, Image, ImageKind
from medannot.errors import GeometryError, InputError, OutputError
from medannot.io import discover_inputs, read_image, write_image
from medannot.io.itk_formats import read_itk, write_itk

SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def _sitk_volume(data_xyz: np.ndarray, spacing, origin_lps, direction_lps) -> sitk.Image:
    """A SimpleITK image whose index (i, j, k) holds data_xyz[i, j, k]."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(data_xyz.transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin_lps])
    img.SetDirection([float(v) for v in np.asarray(direction_lps).ravel()])
    return img


GRIDS = {
    "axis_aligned": ((0.7, 0.9, 3.0), (-90.5, 12.25, 30.0), np.eye(3)),
    "flipped": ((1.0, 1.0, 2.5), (100.0, -20.0, 5.5), np.diag([-1.0, 1.0, -1.0])),
    "permuted": ((1.2, 0.8, 2.0), (1.0, 2.0, 3.0), np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, 1.0, 0]])),
    "oblique": ((0.6, 0.6, 3.3), (-45.5, 33.75, 12.0), rotation(12.0, -7.0, 25.0)),
}


def _corners(shape):
    return np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])


def _assert_same_as_sitk(im: Image, path) -> None:
    ref = sitk.ReadImage(str(path))
    ref_arr = sitk.GetArrayFromImage(ref).transpose(2, 1, 0)
    assert im.array.shape == (1, *ref_arr.shape)
    np.testing.assert_array_equal(im.array[0], ref_arr)
    for idx in _corners(ref_arr.shape):
        lps = np.array(ref.TransformIndexToPhysicalPoint([int(v) for v in idx]))
        np.testing.assert_allclose(im.geometry.index_to_world(idx), lps * [-1, -1, 1], atol=1e-6)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_read_matches_simpleitk(tmp_path, suffix, grid):
    spacing, origin, direction = GRIDS[grid]
    data = mni_block()[:20, :24, :12].astype(np.int16)
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(_sitk_volume(data, spacing, origin, direction), str(path), useCompression=suffix in (".nrrd", ".mha"))
    im = read_image(path)
    assert im.ndim == 3 and im.kind is ImageKind.INTENSITY and im.array.dtype == np.int16
    assert im.meta["format"] == ("nrrd" if suffix in (".nrrd", ".nhdr") else "metaimage")
    _assert_same_as_sitk(im, path)
    np.testing.assert_array_equal(im.array[0], data)


def test_same_grid_as_the_nifti_reader(tmp_path):
    """The same volume saved by SimpleITK as NRRD and as NIfTI reads to the same array and affine."""
    spacing, origin, direction = GRIDS["oblique"]
    img = _sitk_volume(mni_block()[:16, :20, :10].astype(np.float32), spacing, origin, direction)
    sitk.WriteImage(img, str(tmp_path / "v.nrrd"), useCompression=True)
    sitk.WriteImage(img, str(tmp_path / "v.nii.gz"))
    a, b = read_image(tmp_path / "v.nrrd"), read_image(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)  # NIfTI stores the affine in float32
    np.testing.assert_allclose(a.affine, nib.load(tmp_path / "v.nii.gz").affine, atol=1e-4)


@pytest.mark.parametrize("suffix", (".nrrd", ".mha"))
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_write_then_simpleitk_reads_same_geometry(tmp_path, suffix, grid):
    spacing, origin, direction = GRIDS[grid]
    aff = np.eye(4)
    aff[:3, :3] = direction * np.asarray(spacing)[None, :]
    aff[:3, 3] = origin
    lab = np.zeros((1, 14, 11, 9), np.uint16)
    lab[0, 2:6, 3:8, 1:4] = 3
    lab[0, 9, 9, 8] = 300
    im = Image(lab, Geometry.from_affine(aff), ImageKind.LABEL)
    out = write_image(im, tmp_path / f"labels{suffix}")
    _assert_same_as_sitk(read_image(out, kind="label"), out)
    back = read_image(out, kind="label")
    assert back.array.dtype == np.uint16 and back.is_label
    np.testing.assert_array_equal(back.array, lab)
    np.testing.assert_allclose(back.affine, aff, atol=1e-9)
    ref = sitk.ReadImage(str(out))
    np.testing.assert_allclose(ref.GetSpacing(), spacing, atol=1e-9)
    np.testing.assert_allclose(ref.GetOrigin(), np.asarray(origin) * [-1, -1, 1], atol=1e-9)


def test_labels_written_as_uint8_with_metadata(tmp_path):
    im = Image(np.ones((1, 3, 4, 5), np.int64), Geometry((1.0, 1.0, 1.0)), ImageKind.LABEL)
    out = write_itk(im, tmp_path / "l.nrrd", metadata={"Segment0_Name": "liver"})
    ref = sitk.ReadImage(str(out))
    assert ref.GetPixelID() == sitk.sitkUInt8 and ref.GetMetaData("Segment0_Name") == "liver"
    assert b"Segment0_Name:=liver" in out.read_bytes()[:2000]
    with pytest.raises(OutputError, match="line break"):
        write_itk(im, tmp_path / "m.nrrd", metadata={"a": "b\nc"})
    with pytest.raises(OutputError, match=".nrrd or .mha"):
        write_itk(im, tmp_path / "m.nhdr")


def test_2d_metaimage_reads_like_a_picture(tmp_path):
    rows, cols = 7, 11
    data = np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols)
    img = sitk.GetImageFromArray(data)  # 2D: ITK (x, y) = (column, row)
    img.SetSpacing((0.3, 0.2))  # x (column) 0.3 mm, y (row) 0.2 mm
    sitk.WriteImage(img, str(tmp_path / "xray.mha"))
    im = read_image(tmp_path / "xray.mha")
    assert im.ndim == 2 and im.array.shape == (1, rows, cols)
    np.testing.assert_array_equal(im.array[0], data)
    assert im.spacing == pytest.approx((0.2, 0.3))
    np.testing.assert_allclose(im.geometry.direction, np.eye(2))
    back = read_image(write_image(im, tmp_path / "again.mha"))
    np.testing.assert_array_equal(back.array, im.array)
    np.testing.assert_allclose(back.affine, im.affine)
    assert sitk.ReadImage(str(tmp_path / "again.mha")).GetSpacing() == pytest.approx((0.3, 0.2))


def test_rgb_and_4d_become_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (6, 9, 3), dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.mha"))
    im = read_image(tmp_path / "rgb.mha")
    assert im.ndim == 2 and im.array.shape == (3, 6, 9)
    np.testing.assert_array_equal(np.moveaxis(im.array, 0, -1), rgb)
    frames = np.random.default_rng(1).random((2, 5, 4, 3)).astype(np.float32)  # (t, z, y, x)
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(f) for f in frames]), str(tmp_path / "t.mha"))
    assert sitk.ReadImage(str(tmp_path / "t.mha")).GetDimension() == 4
    im4 = read_image(tmp_path / "t.mha")
    assert im4.ndim == 3 and im4.array.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(im4.array[1], frames[1].transpose(2, 1, 0))


def test_label_kind_and_bytes(tmp_path):
    lab = np.zeros((5, 6, 7), np.int32)
    lab[1:3, 2:4, 3:6] = 4
    sitk.WriteImage(_sitk_volume(lab, (1, 1, 1), (0, 0, 0), np.eye(3)), str(tmp_path / "seg.nrrd"), useCompression=True)
    im = read_image(tmp_path / "seg.nrrd", kind="label")
    assert im.is_label and im.array.dtype == np.uint8
    blob = (tmp_path / "seg.nrrd").read_bytes()
    np.testing.assert_array_equal(read_itk(blob, "label", name="seg.nrrd").array, im.array)
    with pytest.raises(InputError, match="non-integer"):
        img = _sitk_volume(lab.astype(np.float32) + 0.5, (1, 1, 1), (0, 0, 0), np.eye(3))
        sitk.WriteImage(img, str(tmp_path / "f.mha"))
        read_image(tmp_path / "f.mha", kind="label")


def test_discovered_as_a_case(tmp_path):
    sitk.WriteImage(_sitk_volume(np.zeros((4, 4, 4), np.int16), (1, 1, 1), (0, 0, 0), np.eye(3)), str(tmp_path / "lesion.nrrd"))
    sitk.WriteImage(_sitk_volume(np.zeros((4, 4, 4), np.int16), (1, 1, 1), (0, 0, 0), np.eye(3)), str(tmp_path / "brain.mhd"))
    items = discover_inputs(tmp_path)
    assert sorted(i.name for i in items) == ["brain", "lesion"]  # the .raw data file is not a case
    assert [i.name for i in discover_inputs(tmp_path / "lesion.nrrd")] == ["lesion"]
    assert read_image(tmp_path / "lesion.nrrd").array.shape == (1, 4, 4, 4)


# ------------------------------------------------------------------ damaged and hostile files


def _attached(tmp_path, name="v.nrrd", compress=True, shape=(40, 30, 20)):
    data = (np.arange(np.prod(shape)) % 251).astype(np.int16).reshape(shape[::-1])
    path = tmp_path / name
    img = sitk.GetImageFromArray(data)
    img.SetSpacing((0.5, 0.7, 2.0))
    sitk.WriteImage(img, str(path), useCompression=compress)
    return path


def _nrrd_parts(path):
    header, _, data = path.read_bytes().partition(b"\n\n")
    return header, data


def test_truncated_raw_data_refused(tmp_path):
    for name in ("raw.nrrd", "raw.mha"):
        path = _attached(tmp_path, name, compress=False)
        path.write_bytes(path.read_bytes()[:-1000])
        with pytest.raises(InputError, match="truncated.*48000 bytes.*47000") as err:
            read_image(path)
        assert str(err.value).startswith(str(path))


def test_truncated_compressed_data_refused(tmp_path):
    gz = _attached(tmp_path, "gz.nrrd")
    gz.write_bytes(gz.read_bytes()[:-300])
    with pytest.raises(InputError, match="truncated"):
        read_image(gz)
    mha = _attached(tmp_path, "z.mha")
    mha.write_bytes(mha.read_bytes()[:-300])
    with pytest.raises(InputError, match="declares .* compressed bytes"):
        read_image(mha)


def test_forged_sizes_refused_before_allocation(tmp_path):
    header, data = _nrrd_parts(_attached(tmp_path))
    bomb = tmp_path / "bomb.nrrd"  # 1.1 KiB of gzip declaring 128 MiB: beyond what deflate can reach
    bomb.write_bytes(header.replace(b"sizes: 40 30 20", b"sizes: 1024 1024 64") + b"\n\n" + data)
    with pytest.raises(InputError, match="decompression bomb"):
        read_image(bomb)
    small = tmp_path / "small.nrrd"  # a plausible ratio: refused when the stream ends short, before ITK reads it
    small.write_bytes(header.replace(b"sizes: 40 30 20", b"sizes: 40 30 40") + b"\n\n" + data)
    with pytest.raises(InputError, match="truncated: the header declares 96000 bytes, the compressed data in the file hold 48000"):
        read_image(small)
    huge = tmp_path / "huge.nrrd"
    raw_header, raw_data = _nrrd_parts(_attached(tmp_path, "raw.nrrd", compress=False))
    huge.write_bytes(raw_header.replace(b"sizes: 40 30 20", b"sizes: 40000 40000 4000") + b"\n\n" + raw_data)
    with pytest.raises(InputError, match="allowed for one image|limit; the header is probably corrupt"):
        read_image(huge)
    mha = _attached(tmp_path, "c.mha")
    text = mha.read_bytes()
    start = text.index(b"CompressedDataSize = ")
    end = text.index(b"\n", start)
    forged = tmp_path / "forged.mha"
    forged.write_bytes(text[:start] + b"CompressedDataSize = 999999999999" + text[end:])
    with pytest.raises(InputError, match="truncated"):
        read_image(forged)


@pytest.mark.parametrize(("old", "new", "match"), [
    (b"space directions: (0.5,0,0)", b"space directions: (0,0,0)", "spacing must be positive"),
    (b"space directions: (0.5,0,0)", b"space directions: (0.5,0.5,0)", "shear"),
    (b"space directions: (0.5,0,0)", b"space directions: (nan,0,0)", r"geometry \(spacedirections\) holds the value nan"),
    (b"space origin: (0,0,0)", b"space origin: (inf,0,0)", r"geometry \(spaceorigin\) holds the value inf"),
    (b"encoding: gzip", b"", "no 'encoding'"),
])  # fmt: skip
def test_damaged_geometry_refused(tmp_path, old, new, match):
    header, data = _nrrd_parts(_attached(tmp_path))
    assert old in header, header
    bad = tmp_path / "bad.nrrd"
    bad.write_bytes(header.replace(old, new) + b"\n\n" + data)
    with pytest.raises((InputError, GeometryError), match=match):
        read_image(bad)


def test_detached_data_file_checks(tmp_path):
    img = _sitk_volume(np.zeros((4, 5, 6), np.int16), (1, 1, 1), (0, 0, 0), np.eye(3))
    sitk.WriteImage(img, str(tmp_path / "d.nhdr"))
    raw = tmp_path / "d.raw"
    assert raw.is_file()
    blob = raw.read_bytes()
    raw.unlink()
    with pytest.raises(InputError, match="'d.raw' is missing"):
        read_image(tmp_path / "d.nhdr")
    raw.mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        read_image(tmp_path / "d.nhdr")
    raw.rmdir()
    os.mkfifo(raw)  # a FIFO would block a reader forever
    with pytest.raises(InputError, match="not a regular file"):
        read_image(tmp_path / "d.nhdr")
    raw.unlink()
    raw.write_bytes(blob[:-10])
    with pytest.raises(InputError, match="its data file d.raw holds"):
        read_image(tmp_path / "d.nhdr")
    text = (tmp_path / "d.nhdr").read_text().replace("data file: d.raw", "data file: LIST\nd.raw")
    (tmp_path / "list.nhdr").write_text(text)
    with pytest.raises(InputError, match="multi-file NRRD"):
        read_image(tmp_path / "list.nhdr")


def test_bytes_may_not_name_a_local_file(tmp_path):
    """A header held in memory (an upload) cannot make the reader open a file on this machine."""
    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes(4 * 5 * 6 * 2))
    header = f"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 5 6\nencoding: raw\ndata file: {secret}\n".encode()
    with pytest.raises(InputError, match="detached NRRD header"):
        read_itk(header, name="upload.nrrd")
    mhd = f"ObjectType = Image\nNDims = 3\nDimSize = 4 5 6\nElementType = MET_SHORT\nElementDataFile = {secret}\n".encode()
    with pytest.raises(InputError, match="separate ElementDataFile"):
        read_itk(mhd, name="upload.mha")


def test_not_an_image_refused(tmp_path):
    (tmp_path / "a.nrrd").write_bytes(b"hello world\n" * 10)
    with pytest.raises(InputError, match="not a NRRD"):
        read_image(tmp_path / "a.nrrd")
    (tmp_path / "a.mha").write_bytes(gzip.compress(b"x" * 100))
    with pytest.raises(InputError, match="not a MetaImage"):
        read_image(tmp_path / "a.mha")
    (tmp_path / "e.nrrd").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "e.nrrd")


def test_damaged_or_padded_compressed_data_refused(tmp_path):
    """teem and MetaIO read only the declared bytes and check no CRC: medannot inflates the stream once first."""
    header, data = _nrrd_parts(_attached(tmp_path))
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x55
    (tmp_path / "flip.nrrd").write_bytes(header + b"\n\n" + bytes(flipped))
    with pytest.raises(InputError, match="damaged|truncated|CRC|invalid"):
        read_image(tmp_path / "flip.nrrd")
    hidden = gzip.compress(gzip.decompress(data) + bytes(1 << 20))  # the declared voxels, then 1 MiB more
    (tmp_path / "hidden.nrrd").write_bytes(header + b"\n\n" + hidden)
    with pytest.raises(InputError, match="hold more than the 48000 bytes the header declares"):
        read_image(tmp_path / "hidden.nrrd")
    mha = _attached(tmp_path, "z.mha").read_bytes()
    at = mha.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    body = bytearray(mha[at:])
    body[len(body) // 2] ^= 0x55
    (tmp_path / "flip.mha").write_bytes(mha[:at] + bytes(body))
    with pytest.raises(InputError, match="damaged|truncated"):
        read_image(tmp_path / "flip.mha")


def test_implausible_geometry_and_nan_values_refused(tmp_path):
    header, data = _nrrd_parts(_attached(tmp_path))
    (tmp_path / "far.nrrd").write_bytes(header.replace(b"space origin: (0,0,0)", b"space origin: (1e12,0,0)") + b"\n\n" + data)
    with pytest.raises(GeometryError, match="holds the value 1e12"):
        read_image(tmp_path / "far.nrrd")
    (tmp_path / "big.nrrd").write_bytes(header.replace(b"(0.5,0,0)", b"(1e300,0,0)") + b"\n\n" + data)
    with pytest.raises(GeometryError, match="holds the value 1e300"):  # SimpleITK alone would read a spacing of 1 mm
        read_image(tmp_path / "big.nrrd")
    (tmp_path / "wide.nrrd").write_bytes(header.replace(b"(0.5,0,0)", b"(500000,0,0)") + b"\n\n" + data)
    with pytest.raises(GeometryError, match="voxel sizes of 5e\\+05"):
        read_image(tmp_path / "wide.nrrd")
    values = np.zeros((4, 5, 6), np.float32)
    values[1, 2, 3] = np.nan
    values[0, 0, 0] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "nan.mha"))
    with pytest.raises(InputError, match="2 of 120 voxel values are NaN or infinite"):
        read_image(tmp_path / "nan.mha")


def test_read_image_sniffs_bytes(tmp_path):
    for name in ("v.nrrd", "v.mha"):
        path = _attached(tmp_path, name)
        from_path = read_image(path)
        for blob_name in (None, name):
            im = read_image(path.read_bytes(), name=blob_name)
            np.testing.assert_array_equal(im.array, from_path.array)
            np.testing.assert_allclose(im.affine, from_path.affine)
    with open(_attached(tmp_path, "f.nrrd"), "rb") as fh:  # a binary file object, as an upload arrives
        assert read_image(fh).array.shape == (1, 40, 30, 20)
