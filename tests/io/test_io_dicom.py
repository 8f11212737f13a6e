import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from iohelpers import mni_block, pydicom_test_file, rotation, write_dicom_series
from medannot.errors import GeometryError, InputError
from medannot.io import read_image
from medannot.io.dicom import read_dicom_file, read_dicom_series, scan_dicom_folder

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _volume() -> np.ndarray:
    """A real block of the MNI T1 as HU-like int16 values (20 columns, 24 rows, 9 slices)."""
    return mni_block()[:20, :24, :9].astype(np.int16) * 2 - 1000


def _sitk_read(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    aff = np.eye(4)
    aff[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
    aff[:3, 3] = img.GetOrigin()
    return sitk.GetArrayFromImage(img), LPS_TO_RAS @ aff


OBLIQUE = rotation(20.0, -10.0, 35.0)
ORIENTATIONS = {
    "axial": dict(row_cos=(1, 0, 0), col_cos=(0, 1, 0)),
    "sagittal": dict(row_cos=(0, 1, 0), col_cos=(0, 0, -1)),
    "coronal": dict(row_cos=(1, 0, 0), col_cos=(0, 0, -1)),
    "axial_reversed_files": dict(row_cos=(1, 0, 0), col_cos=(0, 1, 0), reverse_files=True),
    "oblique": dict(row_cos=OBLIQUE[:, 0], col_cos=OBLIQUE[:, 1]),
    "oblique_descending": dict(row_cos=OBLIQUE[:, 0], col_cos=OBLIQUE[:, 1], slice_step=-2.0),
}


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_series_matches_simpleitk(tmp_path, name):
    vol = _volume()
    opts = dict(pixel_spacing=(0.8, 0.55), slice_step=2.5, origin=(-30.5, 12.25, 40.0), slope=2.0, intercept=-1000.0)
    opts.update(ORIENTATIONS[name])
    write_dicom_series(tmp_path / name, vol, **opts)
    ours = read_image(tmp_path / name)
    peer_array, peer_affine = _sitk_read(tmp_path / name)
    assert ours.ndim == 3 and ours.array.shape == (1, 20, 24, 9)
    assert ours.array.dtype == np.int16  # slope 2, intercept -1000 are exact in int16
    np.testing.assert_array_equal(ours.array[0], peer_array.transpose(2, 1, 0))
    np.testing.assert_allclose(ours.affine, peer_affine, atol=1e-4, rtol=0)
    if opts.get("slice_step", 2.5) > 0:  # slices ascending along the normal: our array equals the written volume
        np.testing.assert_array_equal(ours.array[0], vol)
    else:
        np.testing.assert_array_equal(ours.array[0], vol[:, :, ::-1])
    np.testing.assert_allclose(ours.spacing, (0.55, 0.8, abs(opts["slice_step"])), atol=1e-6)
    assert ours.meta["PatientID"] == "PAT-001" and ours.meta["Modality"] == "MR"
    assert ours.meta["SeriesInstanceUID"] and ours.meta["StudyInstanceUID"]


def test_axial_orientation_codes_and_ras(tmp_path):
    write_dicom_series(tmp_path / "s", _volume(), (1, 0, 0), (0, 1, 0), origin=(10.0, 20.0, 30.0))
    im = read_dicom_series(tmp_path / "s")
    # DICOM +x is patient Left, +y Posterior: array axes point to L, P, S; origin flips sign in x, y
    assert im.geometry.axcodes() == ("L", "P", "S")
    np.testing.assert_allclose(im.geometry.origin, (-10.0, -20.0, 30.0))


def test_float_rescale_is_float32(tmp_path):
    vol = (_volume().astype(np.float64) + 1000.0) * 0.5
    write_dicom_series(tmp_path / "s", vol, (1, 0, 0), (0, 1, 0), slope=0.5)
    im = read_dicom_series(tmp_path / "s")
    assert im.array.dtype == np.float32
    np.testing.assert_allclose(im.array[0], vol)


def test_mixed_series_refused_and_selectable(tmp_path):
    vol = _volume()
    write_dicom_series(tmp_path / "a", vol, (1, 0, 0), (0, 1, 0), series_uid="1.2.3.4", description="T1 axial")
    write_dicom_series(tmp_path / "b", vol[:, :, :4], (1, 0, 0), (0, 1, 0), series_uid="1.2.3.5", description="loc")
    with pytest.raises(InputError, match="2 series") as err:
        read_image(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "1.2.3.4" in msg and "9 files" in msg and "4 files" in msg and "series_uid" in msg
    im = read_dicom_series(tmp_path, series_uid="1.2.3.5")
    assert im.spatial_shape == (20, 24, 4)
    with pytest.raises(InputError, match="not found"):
        read_dicom_series(tmp_path, series_uid="9.9")


def test_skipped_files_have_reasons(tmp_path):
    write_dicom_series(tmp_path, _volume(), (1, 0, 0), (0, 1, 0))
    (tmp_path / "._IM0000.dcm").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tmp_path / "notes.txt").write_text("not dicom")
    shutil.copy(pydicom_test_file("rtplan.dcm"), tmp_path / "plan.dcm")
    im = read_image(tmp_path)
    reasons = {p.split("/")[-1]: r for p, r in im.meta["skipped"]}
    assert "resource fork" in reasons["._IM0000.dcm"]
    assert "not a DICOM" in reasons["notes.txt"]
    assert "without an image" in reasons["plan.dcm"]
    assert im.spatial_shape == (20, 24, 9)


@pytest.mark.parametrize(
    "defect, match",
    [
        ("duplicate", "duplicate slice position"),
        ("missing", "missing slices"),
        ("tilt", "gantry tilt"),
        ("orientation", "different orientations"),
        ("spacing", "different PixelSpacing"),
        ("matrix", "different rows x columns"),
    ],
)
def test_series_defects_refused(tmp_path, defect, match):
    vol = _volume()
    paths = write_dicom_series(tmp_path, vol, (1, 0, 0), (0, 1, 0), slice_step=2.0)
    if defect == "duplicate":
        shutil.copy(paths[3], tmp_path / "copy_of_3.dcm")
        ds = pydicom.dcmread(tmp_path / "copy_of_3.dcm")
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(tmp_path / "copy_of_3.dcm")
    elif defect == "missing":
        paths[4].unlink()
    else:
        ds = pydicom.dcmread(paths[5])
        if defect == "tilt":
            for p in paths:
                d = pydicom.dcmread(p)
                k = int(d.InstanceNumber) - 1
                d.ImagePositionPatient = [0.0, 0.5 * k, 2.0 * k]  # each slice shifted 0.5 mm in-plane: ~14 degrees
                d.save_as(p)
        elif defect == "orientation":
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]
        elif defect == "spacing":
            ds.PixelSpacing = [1.0, 1.2]
        elif defect == "matrix":
            ds.Rows = 12
            ds.PixelData = np.zeros((12, 20), np.int16).tobytes()
        if defect != "tilt":
            ds.save_as(paths[5])
    with pytest.raises(GeometryError, match=match) as err:
        read_image(tmp_path)
    assert str(err.value).startswith(str(tmp_path)) and "\n" not in str(err.value)


def test_single_file_is_2d_with_real_sample():
    ref = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    im = read_image(pydicom_test_file("CT_small.dcm"))
    assert im.ndim == 2 and im.array.shape == (1, 128, 128)
    hu = ref.pixel_array.astype(np.int32) * int(ref.RescaleSlope) + int(ref.RescaleIntercept)
    np.testing.assert_array_equal(im.array[0], hu)
    np.testing.assert_allclose(im.spacing, [float(v) for v in ref.PixelSpacing])
    assert im.meta["Modality"] == "CT" and im.meta["PatientID"] == str(ref.PatientID)
    aff = np.asarray(im.meta["plane_affine_ras"])
    np.testing.assert_allclose(aff[:3, 3], [158.135803, 179.035797, -75.699997], atol=1e-5)


def test_dicom_detected_by_preamble_without_suffix(tmp_path):
    shutil.copy(pydicom_test_file("MR_small.dcm"), tmp_path / "IMG0001")
    im = read_image(tmp_path / "IMG0001")
    assert im.array.shape == (1, 64, 64) and im.meta["Modality"] == "MR"


def test_multiframe_with_grid_offsets_is_3d():
    im = read_dicom_file(pydicom_test_file("rtdose.dcm"))
    ds = pydicom.dcmread(pydicom_test_file("rtdose.dcm"))
    assert im.ndim == 3 and im.spatial_shape == (int(ds.Columns), int(ds.Rows), int(ds.NumberOfFrames))
    np.testing.assert_allclose(im.array[0, :, :, 0].T, ds.pixel_array[0] * float(ds.DoseGridScaling), rtol=1e-6)


def test_multiframe_without_positions_refused(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("MR_small.dcm"))
    ds.NumberOfFrames = 3
    ds.PixelData = ds.PixelData * 3
    ds.save_as(tmp_path / "cine.dcm")
    with pytest.raises(InputError, match="no per-frame positions"):
        read_image(tmp_path / "cine.dcm")


def test_scan_groups_series(tmp_path):
    write_dicom_series(tmp_path / "x", _volume()[:, :, :3], (1, 0, 0), (0, 1, 0), series_uid="1.2.7")
    scan = scan_dicom_folder(tmp_path)
    assert list(scan.series) == ["1.2.7"] and len(scan.series["1.2.7"]) == 3
    assert "MR" in scan.describe("1.2.7") and "3 files" in scan.describe("1.2.7")


def test_enhanced_multiframe_matches_series(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    vol = _volume()[:, :, :5]
    paths = write_dicom_series(tmp_path / "series", vol, OBLIQUE[:, 0], OBLIQUE[:, 1], pixel_spacing=(0.8, 0.55),
                               slice_step=2.5, origin=(1.0, 2.0, 3.0), slope=2.0, intercept=-1000.0)  # fmt: skip
    expected = read_dicom_series(tmp_path / "series")
    frames = [pydicom.dcmread(p) for p in paths]
    ds = frames[0]
    ds.NumberOfFrames = len(frames)
    ds.PixelData = b"".join(f.PixelData for f in frames[::-1])  # frames stored in reverse order
    shared = Dataset()
    ori, meas, pvt = Dataset(), Dataset(), Dataset()
    ori.ImageOrientationPatient = ds.ImageOrientationPatient
    meas.PixelSpacing = ds.PixelSpacing
    pvt.RescaleSlope, pvt.RescaleIntercept = ds.RescaleSlope, ds.RescaleIntercept
    shared.PlaneOrientationSequence = Sequence([ori])
    shared.PixelMeasuresSequence = Sequence([meas])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for f in frames[::-1]:
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = f.ImagePositionPatient
        item.PlanePositionSequence = Sequence([pos])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, kw)
    ds.save_as(tmp_path / "enhanced.dcm")
    im = read_image(tmp_path / "enhanced.dcm")
    assert im.ndim == 3
    np.testing.assert_array_equal(im.array, expected.array)
    np.testing.assert_allclose(im.affine, expected.affine, atol=1e-6)
