"""read_image from bytes and binary file objects (uploads), zip archives, and InVesalius projects."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dicomread_helpers import pydicom_data_file, real_slice_series
from iohelpers import pydicom_test_file
from medannot import samples
from medannot.errors import InputError
from medannot.io import discover_inputs, read_dicom_frames, read_image, write_image
from medannot.io.memory import ImageFormat, sniff_format

INV3 = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


def _same(a, b):
    assert a.array.dtype == b.array.dtype and a.array.shape == b.array.shape
    np.testing.assert_array_equal(a.array, b.array)
    assert a.geometry.isclose(b.geometry) and a.kind == b.kind


def _real_files(tmp_path) -> list[Path]:
    png = tmp_path / "cell.png"
    write_image(read_image(samples.sample_dir() / "stardist" / "img2d.tif").with_array(np.zeros((1, 5, 7), np.uint8)), png)
    return [
        pydicom_test_file("CT_small.dcm"),
        pydicom_data_file("RG3_UNCR.dcm"),  # MONOCHROME1
        pydicom_data_file("OBXXXX1A.dcm"),  # palette colour
        pydicom_data_file("eCT_Supplemental.dcm"),  # multi-frame 3D
        pydicom_test_file("MR_small_RLE.dcm"),  # compressed: decoded by pydicom
        samples.mni152_path("t1"),  # .nii.gz
        samples.sample_dir() / "stardist" / "img2d.tif",
        png,
        INV3,
    ]


def test_bytes_and_file_objects_give_what_the_path_gives(tmp_path):
    for path in _real_files(tmp_path):
        expected = read_image(path)
        data = path.read_bytes()
        _same(read_image(data, name=path.name), expected)  # format from the name's suffix
        _same(read_image(data), expected)  # format sniffed from the bytes
        with open(path, "rb") as fh:
            from_file = read_image(fh)  # the file object's own name
        _same(from_file, expected)
        _same(read_image(io.BytesIO(data), name=path.name), expected)
        assert from_file.meta["source"] == path.name


def test_uncompressed_nifti_bytes(tmp_path):
    plain = tmp_path / "t1.nii"
    plain.write_bytes(gzip.decompress(samples.mni152_path("t1").read_bytes()))
    _same(read_image(plain.read_bytes()), read_image(plain))
    assert sniff_format(plain.read_bytes()[:512]) is ImageFormat.NIFTI


def test_bad_bytes_fail_with_the_name_hint():
    with pytest.raises(InputError, match=r"^upload\.dcm: file is empty"):
        read_image(b"", name="upload.dcm")
    with pytest.raises(InputError, match=r"^<bytes>: unknown image format.*name='file.ext'"):
        read_image(b"hello, not an image" * 40)
    with pytest.raises(InputError, match=r"^scan\.dcm: "):
        read_image(pydicom_test_file("CT_small.dcm").read_bytes()[:2000], name="scan.dcm")  # truncated pixel data
    with pytest.raises(InputError, match="^x.nii.gz: "):
        read_image(samples.mni152_path("t1").read_bytes()[:5000], name="x.nii.gz")
    with pytest.raises(InputError, match="binary file object"):
        read_image(io.StringIO("text"))
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        read_image(42)  # type: ignore[arg-type]


def test_frames_from_bytes():
    path = pydicom_data_file("emri_small.dcm")
    from_bytes = read_dicom_frames(path.read_bytes(), name=path.name)
    from_path = read_dicom_frames(path)
    assert len(from_bytes) == len(from_path) == 10
    for a, b in zip(from_bytes, from_path):
        _same(a, b)


def test_zip_of_a_dicom_series_and_of_one_image(tmp_path):
    real_slice_series(tmp_path / "series", "CT_small.dcm", [0.0, 5.0, 10.0, 15.0], reverse_names=True)
    expected = read_image(tmp_path / "series")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted((tmp_path / "series").iterdir()):
            z.write(p, f"study/{p.name}")
        z.writestr("__MACOSX/._IM000.dcm", b"junk")
        z.writestr("study/.DS_Store", b"junk")
    _same(read_image(buf.getvalue(), name="series.zip"), expected)
    (tmp_path / "series.zip").write_bytes(buf.getvalue())
    _same(read_image(tmp_path / "series.zip"), expected)
    one = io.BytesIO()
    with zipfile.ZipFile(one, "w") as z:
        z.write(samples.mni152_path("t1"), "t1.nii.gz")
    _same(read_image(one.getvalue()), read_image(samples.mni152_path("t1")))


def test_zip_bomb_and_mixed_archives_are_refused(tmp_path):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", bytes(8 * 1024**2))  # 8 MiB of zeros pack to ~8 KiB
    data = bytearray(bomb.getvalue())
    for sig, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):  # declare 3.75 GiB unpacked
        at = data.index(sig) + offset
        data[at : at + 4] = (0xF0000000).to_bytes(4, "little")
    with pytest.raises(InputError, match=r"bomb.zip: declares 3.8 GiB uncompressed, more than the 2.1 GiB allowed"):
        read_image(bytes(data), name="bomb.zip")
    honest_lie = bytearray(bomb.getvalue())  # declares less than it holds: refused while reading, not allocated
    for sig, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        at = honest_lie.index(sig) + offset
        honest_lie[at : at + 4] = (1000).to_bytes(4, "little")
    with pytest.raises(InputError, match="bomb.zip: "):
        read_image(bytes(honest_lie), name="bomb.zip")
    mixed = io.BytesIO()
    with zipfile.ZipFile(mixed, "w") as z:
        z.write(samples.mni152_path("t1"), "a.nii.gz")
        z.write(pydicom_test_file("CT_small.dcm"), "b.dcm")
    with pytest.raises(InputError, match="not one image nor one DICOM series"):
        read_image(mixed.getvalue(), name="mixed.zip")


def test_invesalius_project_reads_its_volume():
    image = read_image(INV3)
    assert image.ndim == 3 and image.spatial_shape == (256, 256, 108) and image.array.dtype == np.int16
    np.testing.assert_allclose(image.spacing, (0.9570312, 0.9570312, 1.5), atol=1e-6)
    assert image.meta["Modality"] == "CT" and "identity direction" in image.meta["geometry"]
    assert -1024 <= int(image.array.min()) and int(image.array.max()) <= 3033  # the project's scalar range (HU)
    with tarfile.open(INV3, "r:gz") as tar:  # the raw volume, (slice, row, column)
        raw = np.frombuffer(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("matrix.dat"))).read(), "<i2")
    np.testing.assert_array_equal(image.array[0].transpose(2, 1, 0).ravel(), raw)
    items = discover_inputs(INV3)  # medannot annotate reads it as one case
    assert [it.name for it in items] == ["Cranium"]
    _same(items[0].load().image, image)


def test_invesalius_project_with_a_lying_header_is_refused(tmp_path):
    import plistlib

    with tarfile.open(INV3, "r:gz") as tar:
        plist = plistlib.loads(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("main.plist"))).read())
    plist["matrix"]["shape"] = [100000, 100000, 100000]
    out = tmp_path / "lying.inv3"
    with tarfile.open(out, "w:gz") as tar:
        data = plistlib.dumps(plist)
        info = tarfile.TarInfo("p/main.plist")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("p/matrix.dat")
        info.size = 16
        tar.addfile(info, io.BytesIO(bytes(16)))
    with pytest.raises(InputError, match="GiB"):
        read_image(out)
    shutil.copy(pydicom_test_file("CT_small.dcm"), tmp_path / "not.inv3")
    with pytest.raises(InputError, match="not a readable InVesalius project"):
        read_image(tmp_path / "not.inv3")
