"""Broken DICOM input, made from real files: each gives a typed one-line error naming the file; in a series a damaged
file is skipped only when the rest is still the complete series; in a batch the other inputs go on."""

import shutil
import struct
import tracemalloc
import warnings

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from dicomread_helpers import pydicom_data_file, real_slice_series, sitk_series, with_nested_sequence
from iohelpers import pydicom_test_file
from medannot.cli import app
from medannot.errors import GeometryError, InputError
from medannot.io import discover_inputs, read_image

runner = CliRunner()
STEPS = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


def _refused(path, error=InputError, match=None) -> str:
    with pytest.raises(error) as err:
        read_image(path)
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    if match:
        assert match in msg, msg
    return msg


def _cli_refuses(path, tmp_path, *names) -> str:
    result = runner.invoke(app, ["annotate", str(path), "--method", "otsu", "--out", str(tmp_path / "cli_out"), "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for name in names:
        assert name in result.output, result.output
    return result.output


def _truncate_pixels(path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - int(128 * 128 * 2 * (1 - keep))])


def test_not_dicom_apple_double_ds_store_and_seg_ignored(tmp_path):
    real_slice_series(tmp_path, "CT_small.dcm", STEPS)
    (tmp_path / "._IM002.dcm").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (tmp_path / "README.txt").write_text("scanned on Tuesday")
    (tmp_path / "IM999.dcm").write_text("not dicom despite the name")
    image = read_image(tmp_path)
    assert image.spatial_shape == (128, 128, 6)
    reasons = {p.split("/")[-1]: r for p, r in image.meta["skipped"]}
    assert "resource fork" in reasons["._IM002.dcm"] and "DS_Store" in reasons[".DS_Store"]
    assert "not a DICOM" in reasons["README.txt"] and "not a DICOM" in reasons["IM999.dcm"]
    shutil.copy(pydicom_data_file("liver.dcm"), tmp_path / "seg.dcm")  # a real DICOM SEG beside its (other) series
    image = read_image(tmp_path)
    assert "DICOM SEG" in {p.split("/")[-1]: r for p, r in image.meta["skipped"]}["seg.dcm"]
    items = discover_inputs(tmp_path)
    assert len(items) == 1 and len(items[0].paths) == 6
    assert _refused(tmp_path / "IM999.dcm", match="not a DICOM").startswith(str(tmp_path / "IM999.dcm"))
    _refused(tmp_path / "._IM002.dcm")


def test_truncated_slice_refuses_the_series_naming_the_file(tmp_path):
    series = tmp_path / "series"
    real_slice_series(series, "CT_small.dcm", STEPS)
    _truncate_pixels(series / "IM003.dcm")
    msg = _refused(series, match="pixel data shorter than declared")
    assert msg.startswith(str(series / "IM003.dcm")) and "incomplete without it" in msg
    _refused(series / "IM003.dcm", match="truncated")
    _cli_refuses(series, tmp_path, "IM003.dcm", "shorter than declared")


def test_truncated_end_slice_also_refuses(tmp_path):
    real_slice_series(tmp_path, "CT_small.dcm", STEPS)
    _truncate_pixels(tmp_path / "IM005.dcm", keep=0.9)  # the last slice: the volume would silently lose it
    _refused(tmp_path, match="IM005.dcm")


def test_damaged_copy_of_a_present_slice_is_skipped(tmp_path):
    paths = real_slice_series(tmp_path, "CT_small.dcm", STEPS)
    shutil.copy(paths[2], tmp_path / "IM002_copy.dcm")
    _truncate_pixels(tmp_path / "IM002_copy.dcm")
    image = read_image(tmp_path)
    assert image.spatial_shape == (128, 128, 6)
    reasons = {p.split("/")[-1]: r for p, r in image.meta["skipped"]}
    assert "shorter than declared" in reasons["IM002_copy.dcm"] and "copy of this slice is present" in reasons["IM002_copy.dcm"]
    assert any("IM002_copy.dcm" in w for w in image.meta["warnings"])


def test_file_with_unreadable_header(tmp_path):
    real_slice_series(tmp_path / "extra", "CT_small.dcm", STEPS)
    raw = pydicom_test_file("CT_small.dcm").read_bytes()
    (tmp_path / "extra" / "IM900.dcm").write_bytes(raw[:700])  # cut inside the header: position unknown
    image = read_image(tmp_path / "extra")  # the six slices are the complete series
    assert image.spatial_shape == (128, 128, 6)
    assert any(p.endswith("IM900.dcm") and "truncated or corrupt" in r for p, r in image.meta["skipped"])
    peer, peer_aff = sitk_series(tmp_path / "extra")
    np.testing.assert_array_equal(image.array[0], peer)

    real_slice_series(tmp_path / "hole", "CT_small.dcm", STEPS)
    (tmp_path / "hole" / "IM002.dcm").write_bytes(raw[:700])  # an interior slice lost: a gap
    msg = _refused(tmp_path / "hole", GeometryError, "missing slices")
    assert "IM002.dcm" in msg and "truncated or corrupt" in msg


def test_pixel_data_shorter_than_declared_real_file():
    msg = _refused(pydicom_test_file("MR_truncated.dcm"), match="shorter than declared")
    assert msg.startswith(str(pydicom_test_file("MR_truncated.dcm")))


@pytest.mark.parametrize("rows, columns, frames", [(30000, 30000, 10), (65535, 65535, 4000), (4096, 4096, 1)])
def test_declared_size_refused_before_any_allocation(tmp_path, rows, columns, frames):
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.save_as(tmp_path / "huge.dcm")
    tracemalloc.start()
    try:
        msg = _refused(tmp_path / "huge.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "shorter than declared" in msg or "GiB" in msg
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB allocated before refusing"


def test_declared_size_of_a_series_slice_refused_before_allocation(tmp_path):
    paths = real_slice_series(tmp_path, "CT_small.dcm", STEPS)
    ds = pydicom.dcmread(paths[1])
    ds.Rows, ds.Columns = 20000, 20000
    ds.save_as(paths[1])
    tracemalloc.start()
    try:
        msg = _refused(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg.startswith(str(paths[1])) and "shorter than declared" in msg
    assert peak < 8 * 2**20


def test_compressed_pixel_data_with_impossible_declared_size(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("MR_small_RLE.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 40000, 40000, 2
    ds.save_as(tmp_path / "rle.dcm")
    _refused(tmp_path / "rle.dcm", match="compressed pixel data")


def test_sequences_nested_thousands_deep(tmp_path):
    deep = with_nested_sequence(pydicom_test_file("CT_small.dcm"), tmp_path / "deep.dcm", depth=5000)
    msg = _refused(deep, match="nested too deeply")
    assert msg.startswith(str(deep))
    result = runner.invoke(app, ["annotate", str(deep), "--method", "otsu", "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2 and "nested too deeply" in result.output and "Traceback" not in result.output
    assert "RecursionError" not in result.output
    # a defined-length nesting is parsed lazily by pydicom and the image reads
    ok = with_nested_sequence(pydicom_test_file("CT_small.dcm"), tmp_path / "deep_defined.dcm", depth=5000, undefined_length=False)
    assert read_image(ok).array.shape == (1, 128, 128)
    # in a series, the deep file (position unknown) is skipped and the rest is complete
    real_slice_series(tmp_path / "series", "CT_small.dcm", STEPS)
    shutil.copy(deep, tmp_path / "series" / "deep.dcm")
    image = read_image(tmp_path / "series")
    assert image.spatial_shape == (128, 128, 6)
    assert any(p.endswith("deep.dcm") and "nested too deeply" in r for p, r in image.meta["skipped"])


def test_uids_and_descriptions_that_look_like_paths_never_become_file_names(tmp_path):
    src = tmp_path / "in"
    hostile = {
        "a": ("../../etc/passwd", "../../etc/passwd"),
        "b": ("/", "/"),
        "c": ("1.2." + "9/" * 150, "x/" * 150),
    }
    for folder, (uid, description) in hostile.items():
        for p in real_slice_series(src / folder, "CT_small.dcm", STEPS[:5]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the UIDs are invalid on purpose
                ds = pydicom.dcmread(p)
                ds.SeriesInstanceUID, ds.SeriesDescription = uid, description
                ds.save_as(p)
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(src), "--method", "otsu", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3
    for name in names:
        assert "/" not in name and ".." not in name and not name.startswith(".") and 0 < len(name) <= 120
        assert (out / name / "labels.nii.gz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing written beside or above the output
    assert not list(tmp_path.rglob("passwd*"))


def test_batch_goes_on_past_a_broken_series(tmp_path):
    src = tmp_path / "in"
    real_slice_series(src / "good", "CT_small.dcm", STEPS, SeriesInstanceUID="1.2.826.0.1.3680043.8.498.10",
                      SeriesDescription="good", SeriesNumber=1)  # fmt: skip
    real_slice_series(src / "bad", "CT_small.dcm", STEPS, SeriesInstanceUID="1.2.826.0.1.3680043.8.498.11",
                      SeriesDescription="bad", SeriesNumber=2)  # fmt: skip
    _truncate_pixels(src / "bad" / "IM002.dcm")
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(src), "--method", "otsu", "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert "IM002.dcm" in result.output and "shorter than declared" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["good_1"]
    assert (out / "good_1" / "labels.nii.gz").is_file()


def test_corrupt_pixel_element_length(tmp_path):
    raw = bytearray(pydicom_test_file("CT_small.dcm").read_bytes())
    at = raw.find(struct.pack("<HH", 0x7FE0, 0x0010) + b"OW")
    struct.pack_into("<I", raw, at + 8, 0xFFFFFFF0)  # Pixel Data claims 4 GiB; the declared image is complete
    (tmp_path / "len.dcm").write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        image = read_image(tmp_path / "len.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    np.testing.assert_array_equal(image.array[0], ds.pixel_array.astype(np.int32) * 1 + int(ds.RescaleIntercept))
    assert peak < 8 * 2**20
    raw[at + 8 : at + 12] = struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "len_short.dcm").write_bytes(bytes(raw[: at + 12 + 1000]))  # and the file ends early
    _refused(tmp_path / "len_short.dcm", match="shorter than declared")


def _bad_files(tmp_path):
    raw = pydicom_test_file("CT_small.dcm").read_bytes()
    (tmp_path / "text.dcm").write_text("this is a report, not DICOM\n" * 10)
    (tmp_path / "cut_header.dcm").write_bytes(raw[:300])
    (tmp_path / "cut_pixels.dcm").write_bytes(raw[:-5000])
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 50000, 50000, 50
    ds.save_as(tmp_path / "huge.dcm")
    with_nested_sequence(pydicom_test_file("CT_small.dcm"), tmp_path / "deep.dcm", depth=4000)
    return {"text.dcm": "not a DICOM", "cut_header.dcm": "truncated", "cut_pixels.dcm": "shorter than declared",
            "huge.dcm": "needed for 50000x50000x50 frames", "deep.dcm": "nested too deeply"}  # fmt: skip


def test_cli_one_line_per_bad_file_and_exit_code_2(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    expected = _bad_files(bad)
    for name, reason in expected.items():
        result = runner.invoke(app, ["annotate", str(bad / name), "--method", "otsu", "--out", str(tmp_path / "out"), "-q"])
        assert result.exit_code == 2, (name, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert "Traceback" not in result.output and "Error:" not in result.output, result.output
        assert any(name in line and reason in line for line in lines), (name, result.stderr)
    for name, reason in expected.items():  # and through the API: a typed one-line error naming the file
        assert _refused(bad / name, match=reason).startswith(str(bad / name))
