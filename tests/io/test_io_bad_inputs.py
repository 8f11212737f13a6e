"""Every reader refuses broken input with a one-line InputError that starts with the path."""

import gzip
import os
import struct
import zlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image as PILImage

import medannot.io._common as common
from iohelpers import mni_block, pydicom_test_file
from medannot.errors import InputError
from medannot.io import read_image


def _check(path, match=None, **kw):
    with pytest.raises(InputError) as err:
        read_image(path, **kw)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg, msg
    if match:
        assert match in msg, msg
    return msg


def _nifti(tmp_path, name="a.nii.gz", data=None):
    data = mni_block() if data is None else data
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name", ["missing.nii.gz", "missing.png", "missing.dcm", "missing.tif"])
def test_missing_file(tmp_path, name):
    _check(tmp_path / name, "not found")


@pytest.mark.parametrize("name", ["empty.nii.gz", "empty.nii", "empty.png", "empty.dcm", "empty.tif", "empty.jpg"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    _check(tmp_path / name, "empty")


@pytest.mark.parametrize("name", ["text.nii.gz", "text.nii", "text.png", "text.dcm", "text.tif", "text.jpg"])
def test_text_file_with_image_suffix(tmp_path, name):
    (tmp_path / name).write_text("hello, this is a note and not an image\n" * 20)
    _check(tmp_path / name)


def test_unknown_suffix(tmp_path):
    (tmp_path / "notes.txt").write_text("text")
    _check(tmp_path / "notes.txt", "unknown image format")


def test_truncated_nii_gz(tmp_path):
    rng = np.random.default_rng(0)
    p = _nifti(tmp_path, data=rng.integers(0, 30000, size=(30, 30, 30)).astype(np.int16))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    _check(p)


def test_nii_gz_payload_shorter_than_header(tmp_path):
    p = _nifti(tmp_path, "a.nii", np.arange(60, dtype=np.int16).reshape(3, 4, 5))
    raw = p.read_bytes()
    gz = tmp_path / "short.nii.gz"
    gz.write_bytes(gzip.compress(raw[:-20]))
    _check(gz, "truncated")


def test_truncated_plain_nii(tmp_path):
    p = _nifti(tmp_path, "a.nii")
    p.write_bytes(p.read_bytes()[:5000])
    _check(p, "truncated")


def test_absurd_nifti_dimensions_refused_before_allocating(tmp_path):
    p = _nifti(tmp_path, "a.nii.gz", np.zeros((4, 4, 4), np.float32))
    img = nib.load(p)
    hdr = img.header.copy()
    hdr.set_data_shape((30000, 30000, 20000))
    raw = gzip.decompress(p.read_bytes())
    hdr_bytes = hdr.binaryblock
    p.write_bytes(gzip.compress(hdr_bytes + raw[len(hdr_bytes):]))
    msg = _check(p)
    assert "TiB" in msg and "damaged header" in msg
    hdr.set_data_shape((2000, 2000, 200))  # 3 GB declared, a few bytes stored
    p.write_bytes(gzip.compress(hdr_bytes[:0] + hdr.binaryblock + raw[len(hdr_bytes):]))
    _check(p, "damaged header")


def _png_with_size(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def test_absurd_png_dimensions(tmp_path):
    _png_with_size(tmp_path / "huge.png", 60000, 60000)
    _check(tmp_path / "huge.png")
    _png_with_size(tmp_path / "big.png", 8000, 8000)  # plausible size, impossible for a 100-byte file
    _check(tmp_path / "big.png", "truncated or corrupt")


def test_truncated_png(tmp_path):
    arr = np.random.default_rng(1).integers(0, 255, size=(64, 64), dtype=np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "t.png")
    raw = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(raw[: len(raw) // 2])
    _check(tmp_path / "t.png")


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    raw = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(raw[: len(raw) - 3000])
    _check(tmp_path / "t.tif")


def test_dicom_pixel_data_shorter_than_declared(tmp_path):
    _check(pydicom_test_file("MR_truncated.dcm"), "shorter than declared")
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(tmp_path / "short.dcm")
    _check(tmp_path / "short.dcm", "shorter than declared")


def test_dicom_absurd_dimensions(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 4000
    ds.save_as(tmp_path / "huge.dcm")
    _check(tmp_path / "huge.dcm", "needed for 65535x65535x4000 frames")  # refused before anything is allocated


def test_dicom_truncated_header(tmp_path):
    raw = pydicom_test_file("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[:400])
    _check(tmp_path / "cut.dcm")


def test_non_image_dicom(tmp_path):
    _check(pydicom_test_file("rtplan.dcm"), "no pixel data")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    _check(tmp_path, "no DICOM image")


@pytest.mark.parametrize("name", ["p.nii.gz", "p.png", "p.dcm"])
def test_unreadable_permissions(tmp_path, monkeypatch, name):
    src = {"p.nii.gz": _nifti(tmp_path), "p.png": None, "p.dcm": pydicom_test_file("CT_small.dcm")}[name]
    target = tmp_path / name
    if src is None:
        PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(target)
    else:
        target.write_bytes(src.read_bytes())
    os.chmod(target, 0)
    try:
        if os.geteuid() == 0:  # root reads anything: simulate the refusal the OS would give
            def deny(path):
                raise PermissionError(13, "Permission denied", str(path))

            monkeypatch.setattr(common, "_open", deny)
        _check(target, "permission denied")
    finally:
        os.chmod(target, 0o644)
