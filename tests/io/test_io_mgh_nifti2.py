"""FreeSurfer MGH/MGZ and NIfTI-2 read through nibabel, checked against nibabel's own array and affine."""

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from iohelpers import MNI_T1, mni_block, rotation
from medannot.errors import InputError
from medannot.io import discover_inputs, read_image
from medannot.io.mgh import read_mgh


def _affine(rot, spacing, origin):
    aff = np.eye(4)
    aff[:3, :3] = rot * np.asarray(spacing)[None, :]
    aff[:3, 3] = origin
    return aff


AFFINE = _affine(rotation(10.0, -5.0, 20.0) @ np.diag([1.0, -1.0, 1.0]), (1.1, 0.9, 2.5), (10.0, -20.0, 7.0))


@pytest.mark.parametrize("suffix", (".mgz", ".mgh"))
@pytest.mark.parametrize("dtype", (np.uint8, np.int16, np.int32, np.float32))
def test_mgh_matches_nibabel(tmp_path, suffix, dtype):
    data = mni_block()[:18, :14, :9].astype(dtype)
    path = tmp_path / f"brain{suffix}"
    nib.save(nib.MGHImage(data, AFFINE), path)
    with open(path, "rb") as fh:  # nib.load(.mgh) leaves its file open: read through nibabel from a stream we close
        ref = nib.MGHImage.from_stream(gzip.GzipFile(fileobj=fh) if suffix == ".mgz" else fh)
        ref_data = np.asanyarray(ref.dataobj)
    im = read_image(path)
    assert im.meta["format"] == "mgh" and im.ndim == 3 and im.array.shape == (1, *ref.shape)
    np.testing.assert_array_equal(im.array[0], ref_data)
    assert im.array.dtype == np.dtype(dtype) and im.array.dtype.isnative
    np.testing.assert_allclose(im.affine, ref.affine, atol=1e-9)
    np.testing.assert_allclose(im.affine, AFFINE, atol=1e-4)  # MGH stores float32


def test_mgh_frames_are_channels_and_labels(tmp_path):
    a = (mni_block()[:8, :7, :6] > 50).astype(np.int32) * 17
    nib.save(nib.MGHImage(np.stack([a, a * 2], -1).astype(np.float32), AFFINE), tmp_path / "f.mgz")
    im = read_image(tmp_path / "f.mgz")
    assert im.array.shape == (2, 8, 7, 6)
    np.testing.assert_array_equal(im.array[1], a * 2)
    nib.save(nib.MGHImage(a, AFFINE), tmp_path / "aseg.mgz")
    lab = read_image(tmp_path / "aseg.mgz", kind="label")
    assert lab.is_label and lab.array.dtype == np.uint8
    np.testing.assert_array_equal(lab.array[0], a)
    blob = (tmp_path / "aseg.mgz").read_bytes()
    np.testing.assert_array_equal(read_mgh(blob, "label", name="aseg.mgz").array, lab.array)
    assert [i.name for i in discover_inputs(tmp_path)] == ["aseg", "f"]


def test_mgh_damaged_refused(tmp_path):
    data = np.random.default_rng(0).integers(0, 1000, (10, 12, 7)).astype(np.int32)  # does not compress to nothing
    nib.save(nib.MGHImage(data, AFFINE), tmp_path / "m.mgh")
    raw = (tmp_path / "m.mgh").read_bytes()
    cases = {
        "trunc.mgh": (raw[:1000], "file is truncated"),
        "trunc.mgz": (gzip.compress(raw)[:300], "truncated"),
        "bomb.mgz": (gzip.compress(raw[:4] + struct.pack(">i", 1000000) + raw[8:]), "decompression bomb"),
        "huge.mgh": (raw[:4] + struct.pack(">iii", 40000, 40000, 4000) + raw[16:], "allowed for one image|limit; the header is probably corrupt"),
        "type.mgh": (raw[:20] + struct.pack(">i", 99) + raw[24:], "unknown voxel type 99"),
        "plain.mgz": (raw, "not a gzip file"),
        "short.mgh": (raw[:40], "shorter than its 90-byte header"),
    }
    for name, (blob, match) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(InputError, match=match) as err:
            read_image(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)), name


@pytest.mark.parametrize("suffix", (".nii", ".nii.gz"))
def test_nifti2_matches_nibabel(tmp_path, suffix):
    ref_img = nib.load(MNI_T1)
    data = np.asanyarray(ref_img.dataobj)[40:80, 50:90, 30:60]
    n2 = nib.Nifti2Image(data, AFFINE)
    n2.set_qform(AFFINE, code=1)
    n2.set_sform(AFFINE, code=4)
    path = tmp_path / f"t1{suffix}"
    nib.save(n2, path)
    assert nib.load(path).header.sizeof_hdr == 540  # really NIfTI-2
    im = read_image(path)
    np.testing.assert_array_equal(im.array[0], data)
    np.testing.assert_allclose(im.affine, nib.load(path).affine, atol=1e-9)
    assert (im.meta["nifti_qform_code"], im.meta["nifti_sform_code"]) == (1, 4)
    from_bytes = read_image(path.read_bytes())  # sniffed: n+2 magic (or gzip)
    np.testing.assert_array_equal(from_bytes.array, im.array)
    np.testing.assert_allclose(from_bytes.affine, im.affine)


def test_nifti2_truncated_refused(tmp_path):
    n2 = nib.Nifti2Image(np.zeros((30, 30, 30), np.int16), AFFINE)
    nib.save(n2, tmp_path / "a.nii")
    (tmp_path / "b.nii").write_bytes((tmp_path / "a.nii").read_bytes()[:5000])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "b.nii")


def test_read_image_sniffs_mgz_bytes(tmp_path):
    nib.save(nib.MGHImage(mni_block()[:9, :8, :7].astype(np.float32), AFFINE), tmp_path / "b.mgz")
    nib.save(nib.MGHImage(mni_block()[:9, :8, :7].astype(np.float32), AFFINE), tmp_path / "b.mgh")
    ref = read_image(tmp_path / "b.mgz")
    for blob in ((tmp_path / "b.mgz").read_bytes(), (tmp_path / "b.mgh").read_bytes()):
        im = read_image(blob)  # no name: sniffed (gzip holding an MGH header, or the raw MGH version)
        assert im.meta["format"] == "mgh"
        np.testing.assert_array_equal(im.array, ref.array)
