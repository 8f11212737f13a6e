"""DICOM pixel values as medannot reads them: palette colour, YCbCr, MONOCHROME1, planar configuration, rescale.

The peer is highdicom's ``Image.get_frame`` with the presentation LUT and the palette applied and no VOI window,
on real files from pydicom, pydicom-data and deid-data (the modality classifier's training sources among them).
"""

from __future__ import annotations

import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest

from dicomread_helpers import nibabel_test_file, pydicom_data_file, real_slice_series
from iohelpers import pydicom_test_file
from medannot.errors import InputError
from medannot.io import read_dicom_frames, read_image, to_grey


def _deid_file(rel: str):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("deid_data")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / rel


REAL = {
    "RG1_UNCR.dcm": pydicom_data_file,  # CR, MONOCHROME1, 15 bits stored, PixelSpacing 0\0
    "RG3_UNCR.dcm": pydicom_data_file,  # CR, MONOCHROME1, 10 bits stored
    "OBXXXX1A.dcm": pydicom_data_file,  # US, PALETTE COLOR (16-bit palette)
    "color3d_jpeg_baseline.dcm": pydicom_data_file,  # US clip, 120 frames, YBR_FULL_422 JPEG baseline
    "693_UNCR.dcm": pydicom_data_file,  # CT, 14 bits stored, rescale -1024
    "eCT_Supplemental.dcm": pydicom_data_file,  # enhanced CT, 2 frames
    "emri_small.dcm": pydicom_data_file,  # enhanced MR frames without positions
    "US1_UNCR.dcm": pydicom_data_file,  # US, RGB
    "CT_small.dcm": pydicom_test_file,
    "ultrasounds/ultrasound-multiframe.dcm": _deid_file,  # US clip, 30 RGB frames, PlanarConfiguration 1
    "humans/ctbrain1.dcm": _deid_file,  # CT stored as YBR_FULL_422 JPEG
}


def _peer_frame(path, frame: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = hd.imread(str(path))
        return image.get_frame(frame + 1, apply_real_world_transform=False, apply_modality_transform=None, apply_voi_transform=False,
                               apply_palette_color_lut=None, apply_presentation_lut=True, apply_icc_profile=False)  # fmt: skip


def _ours_channels_last(image) -> np.ndarray:
    arr = image.array
    return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_match_highdicom_frame_by_frame(name):
    path = REAL[name](name)
    frames = read_dicom_frames(path)
    for f in sorted({0, len(frames) // 2, len(frames) - 1}):
        ours, peer = _ours_channels_last(frames[f]), _peer_frame(path, f)
        assert ours.shape == peer.shape
        np.testing.assert_allclose(ours.astype(np.float64), peer, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm", "OBXXXX1A.dcm", "693_UNCR.dcm", "US1_UNCR.dcm", "CT_small.dcm"])
def test_read_image_of_a_single_frame_equals_its_frame(name):
    path = REAL[name](name)
    image, (frame,) = read_image(path), read_dicom_frames(path)
    np.testing.assert_array_equal(image.array, frame.array)
    assert image.array.dtype == frame.array.dtype and image.meta.get("pixel_steps") == frame.meta.get("pixel_steps")


def test_monochrome1_radiograph_is_inverted_over_its_stored_range():
    path = pydicom_data_file("RG3_UNCR.dcm")
    ds = pydicom.dcmread(path)
    ours = read_image(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and int(ds.BitsStored) == 10
    np.testing.assert_array_equal(ours.array[0], 1023 - ds.pixel_array)  # higher = brighter, as a viewer shows it
    assert ours.array.dtype == np.uint16 and ours.meta["photometric"] == "MONOCHROME1"
    assert any("MONOCHROME1: inverted" in s and "1023" in s for s in ours.meta["pixel_steps"])
    label = read_image(path, kind="label")  # a label image keeps its stored values
    np.testing.assert_array_equal(label.array[0], ds.pixel_array)


def test_inversion_comes_before_the_modality_lut_like_highdicom(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))  # signed 16-bit, intercept -1024
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    stored = ds.pixel_array.astype(np.int64)
    ours = read_image(tmp_path / "m1.dcm").array[0]
    np.testing.assert_array_equal(ours, (-1 - stored) * int(ds.RescaleSlope) + int(ds.RescaleIntercept))
    np.testing.assert_allclose(ours, _peer_frame(tmp_path / "m1.dcm", 0))
    ds.PhotometricInterpretation, ds.PresentationLUTShape = "MONOCHROME2", "INVERSE"  # highdicom's other trigger
    ds.save_as(tmp_path / "inverse.dcm")
    np.testing.assert_array_equal(read_image(tmp_path / "inverse.dcm").array[0], ours)
    ds.PhotometricInterpretation, ds.PresentationLUTShape = "MONOCHROME1", "IDENTITY"  # the shape decides, as in highdicom
    ds.save_as(tmp_path / "identity.dcm")
    np.testing.assert_array_equal(read_image(tmp_path / "identity.dcm").array[0], stored + int(ds.RescaleIntercept))


def test_ct_values_stay_hounsfield():
    path = pydicom_test_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    ours = read_image(path)
    np.testing.assert_array_equal(ours.array[0], ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept))
    assert ours.meta["pixel_steps"] == ["Modality LUT: v * 1 + -1024 (RescaleSlope, RescaleIntercept)"]


def test_monochrome1_series_is_inverted_slice_by_slice_on_the_fast_path(tmp_path):
    paths = real_slice_series(tmp_path / "s", "CT_small.dcm", [0.0, 5.0, 10.0], PhotometricInterpretation="MONOCHROME1")
    vol = read_image(tmp_path / "s")
    for k, p in enumerate(paths):
        np.testing.assert_array_equal(vol.array[0, :, :, k].T, read_image(p).array[0])
    assert any("MONOCHROME1" in s for s in vol.meta["pixel_steps"])


def test_palette_colour_becomes_rgb_with_pydicom_and_stays_indices_for_labels():
    from pydicom.pixels import apply_color_lut

    for name in ("OBXXXX1A.dcm", "gdcm-US-ALOKA-16.dcm"):  # 8-bit indices; 16-bit indices with segmented tables
        path = pydicom_data_file(name)
        ds = pydicom.dcmread(path)
        ours = read_image(path)
        assert ours.channels == 3 and ours.meta["photometric"] == "PALETTE COLOR"
        np.testing.assert_array_equal(_ours_channels_last(ours), apply_color_lut(ds.pixel_array, ds))
        assert any("apply_color_lut" in s for s in ours.meta["pixel_steps"])
        np.testing.assert_array_equal(read_image(path, kind="label").array[0], ds.pixel_array)


def test_planar_configuration_and_ybr_are_recorded():
    clip = read_dicom_frames(_deid_file("ultrasounds/ultrasound-multiframe.dcm"))
    assert len(clip) == 30 and clip[0].channels == 3
    assert "PlanarConfiguration 1 (colour by plane) interleaved by pydicom" in clip[0].meta["pixel_steps"]
    ct = read_image(_deid_file("humans/ctbrain1.dcm"))
    assert ct.channels == 3 and ct.meta["pixel_steps"] == ["YBR_FULL_422 -> RGB (pydicom decoder, as_rgb)"]


def test_clips_and_mosaics_are_refused_by_read_image_and_read_by_frames():
    for path, frames in ((pydicom_data_file("emri_small.dcm"), 10), (pydicom_data_file("color3d_jpeg_baseline.dcm"), 120),
                         (nibabel_test_file("0.dcm"), 1)):  # fmt: skip
        with pytest.raises(InputError, match="read_dicom_frames|Siemens mosaic"):
            read_image(path)
        images = read_dicom_frames(path)
        assert len(images) == frames and all(im.ndim == 2 and im.meta["frames"] == frames for im in images)
        assert [im.meta["frame"] for im in images] == list(range(frames))


def test_zero_pixel_spacing_of_a_2d_file_is_noted_and_1_mm_used():
    image = read_image(pydicom_data_file("RG1_UNCR.dcm"))
    assert image.spacing == (1.0, 1.0)
    assert any("PixelSpacing must be positive" in w and "1 mm used" in w for w in image.meta["warnings"])


def test_to_grey_is_the_mean_of_rgb():
    rgb = np.arange(4 * 5, dtype=np.uint8).reshape(1, 4, 5).repeat(3, axis=0)
    rgb[1] += 3
    rgb[2] += 9
    grey = to_grey(rgb)
    assert grey.shape == (1, 4, 5) and grey.dtype == np.float32
    np.testing.assert_array_equal(grey[0], rgb[0].astype(np.float32) + 4)
    rgba = np.concatenate([rgb, np.full((1, 4, 5), 255, np.uint8)])
    np.testing.assert_array_equal(to_grey(rgba), grey)  # alpha ignored
    assert to_grey(rgb[:1]).dtype == np.float32
    with pytest.raises(InputError, match="2 channels"):
        to_grey(rgb[:2])


def test_a_folder_holding_one_picture_without_position_reads_it_as_2d(tmp_path):
    import shutil

    from medannot.io import discover_inputs

    for name in ("RG3_UNCR.dcm", "OBXXXX1A.dcm"):  # a radiograph and an ultrasound frame: no patient position
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        shutil.copy(pydicom_data_file(name), folder / name)
        expected = read_image(folder / name)
        for image in (read_image(folder), discover_inputs(folder)[0].load().image):
            assert image.ndim == 2
            np.testing.assert_array_equal(image.array, expected.array)
    (tmp_path / "ct").mkdir()
    shutil.copy(pydicom_test_file("CT_small.dcm"), tmp_path / "ct")  # a positioned slice stays a one-slice volume
    assert read_image(tmp_path / "ct").spatial_shape == (128, 128, 1)
