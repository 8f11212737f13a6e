"""DICOM geometry on real data: medannot's voxels and affine equal SimpleITK's, highdicom's and nibabel's.

Real files: nibabel's Siemens MR pair (an oblique 2-slice series), nibabel's Philips Enhanced MR (176 frames),
pydicom-data's Enhanced CT, pydicom's CT_small / MR_small; series built from a real block of the MNI T1.
"""

import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomread_helpers import (
    highdicom_volume,
    nibabel_test_file,
    on_our_grid,
    philips_enhanced_mr,
    pydicom_data_file,
    real_slice_series,
    sitk_file,
    sitk_series,
)
from iohelpers import mni_block, pydicom_test_file, rotation, write_dicom_series
from medannot.cli import app
from medannot.errors import GeometryError, InputError
from medannot.io import read_image

# nibabel's DICOM wrappers warn that they are experimental, and about Philips' private scale factor
pytestmark = [
    pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental"),
    pytest.mark.filterwarnings("ignore:Unable to find Philips private scale factor"),
]
OBLIQUE = rotation(20.0, -10.0, 35.0)
ACQUISITIONS = {
    "axial": dict(row_cos=(1, 0, 0), col_cos=(0, 1, 0)),
    "sagittal": dict(row_cos=(0, 1, 0), col_cos=(0, 0, -1)),
    "coronal": dict(row_cos=(1, 0, 0), col_cos=(0, 0, -1)),
    "axial_reversed": dict(row_cos=(1, 0, 0), col_cos=(0, 1, 0), reverse_files=True, slice_step=-2.5),
    "oblique_reversed": dict(row_cos=OBLIQUE[:, 0], col_cos=OBLIQUE[:, 1], reverse_files=True),
}


def _datasets(folder):
    out = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    for ds in out:  # highdicom wants a frame of reference; the helper does not write one
        ds.FrameOfReferenceUID = ds.get("FrameOfReferenceUID") or "1.2.826.0.1.3680043.8.498.2"
    return out


@pytest.mark.parametrize("name", sorted(ACQUISITIONS))
def test_mni_series_matches_highdicom(tmp_path, name):
    vol = mni_block()[:20, :24, :9].astype(np.int16) * 2 - 1000
    opts = dict(pixel_spacing=(0.8, 0.55), slice_step=2.5, origin=(-30.5, 12.25, 40.0), slope=2.0, intercept=-1000.0)
    opts.update(ACQUISITIONS[name])
    write_dicom_series(tmp_path, vol, **opts)
    ours = read_image(tmp_path)
    peer, peer_aff = highdicom_volume(hd.get_volume_from_series(_datasets(tmp_path), apply_real_world_transform=False))
    np.testing.assert_array_equal(ours.array[0], on_our_grid(peer, peer_aff, ours.affine, ours.spatial_shape))
    np.testing.assert_allclose(ours.spacing, (0.55, 0.8, 2.5), atol=1e-6)  # non-square pixels: columns 0.55, rows 0.8 mm


def test_real_siemens_mosaic_refused(tmp_path):
    # nibabel's 0.dcm / 1.dcm: two Siemens DTI volumes, 48 slices tiled in each 256x256 image
    for name in ("0.dcm", "1.dcm"):
        shutil.copy(nibabel_test_file(name), tmp_path / name)
    for target in (tmp_path, tmp_path / "0.dcm"):
        with pytest.raises(InputError, match="Siemens mosaic") as err:
            read_image(target)
        assert "\n" not in str(err.value) and "dcm2niix" in str(err.value)


def test_real_oblique_mr_series_matches_sitk_highdicom_nibabel(tmp_path):
    from nibabel.nicom.dicomwrappers import wrapper_from_file

    # pydicom-data's MR2_UNCR: a real oblique MR slice (row cosine 0.57, 0.82, 0), 1024x1024; files named in reverse
    paths = real_slice_series(tmp_path, "MR2_UNCR.dcm", [0.0, 3.0, 6.0], reverse_names=True)
    ours = read_image(tmp_path)
    assert ours.spatial_shape == (1024, 1024, 3) and ours.array.dtype == np.float32  # RescaleSlope 6.1e-05
    peer, peer_aff = sitk_series(tmp_path)
    np.testing.assert_allclose(ours.array[0], peer, rtol=1e-6)
    np.testing.assert_allclose(ours.affine, peer_aff, atol=1e-4)
    peer, peer_aff = highdicom_volume(hd.get_volume_from_series([pydicom.dcmread(p) for p in paths]))
    np.testing.assert_allclose(ours.array[0], on_our_grid(peer, peer_aff, ours.affine, ours.spatial_shape), rtol=1e-6)
    first = wrapper_from_file(str(paths[0]))  # step 0: the first slice along the normal
    nib_aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ first.affine  # nibabel's DICOM affine is LPS, index (row, column)
    np.testing.assert_allclose(ours.affine[:, [0, 1, 3]], nib_aff[:, [1, 0, 3]], atol=1e-4)
    # nibabel leaves Philips data unscaled when a private scale tag is missing: compare its stored values
    stored = (ours.array[0, :, :, 0].astype(np.float64) - 0.000061) / 3.774114
    np.testing.assert_allclose(stored, first.get_data().T, atol=1e-3)


def test_real_enhanced_ct_matches_highdicom_and_sitk():
    path = pydicom_data_file("eCT_Supplemental.dcm")  # Enhanced CT, 2 frames 10 mm apart, shared + per-frame groups
    ours = read_image(path)
    assert ours.ndim == 3 and ours.spatial_shape == (512, 512, 2) and ours.array.dtype == np.int16
    np.testing.assert_allclose(ours.spacing, (0.388672, 0.388672, 10.0), atol=1e-6)
    volume = hd.imread(str(path)).get_volume(apply_real_world_transform=False, apply_modality_transform=True)
    peer, peer_aff = highdicom_volume(volume)
    np.testing.assert_array_equal(ours.array[0], on_our_grid(peer, peer_aff, ours.affine, ours.spatial_shape))
    peer, peer_aff = sitk_file(path)
    np.testing.assert_array_equal(ours.array[0], on_our_grid(peer, peer_aff, ours.affine, ours.spatial_shape))
    raw = pydicom.dcmread(path).pixel_array
    assert ours.array.min() == int(raw.min()) - 1024  # RescaleIntercept -1024 from the shared functional group: HU


@pytest.mark.slow
def test_real_philips_enhanced_mr_matches_three_peers(tmp_path):
    from nibabel.nicom.dicomwrappers import wrapper_from_file

    path = philips_enhanced_mr(tmp_path)  # oblique sagittal 3D T1, 176 frames, slope 2.1079 per frame
    ours = read_image(path)
    assert ours.spatial_shape == (256, 256, 176) and ours.array.dtype == np.float32
    assert ours.geometry.axcodes()[2] in ("L", "R")  # slices run left-right: a sagittal acquisition
    volume = hd.imread(str(path)).get_volume(apply_real_world_transform=False, apply_modality_transform=True)
    # the frame positions are written to 1e-12 mm but sit up to 0.0013 mm off a regular grid: the peers' grids
    # (step from first to last frame, or from the first two) agree with ours within 0.01 voxel
    tol = dict(atol_voxels=0.01)
    peer, peer_aff = highdicom_volume(volume)
    np.testing.assert_allclose(ours.array[0], on_our_grid(peer, peer_aff, ours.affine, ours.spatial_shape, **tol), rtol=1e-6)
    peer, peer_aff = sitk_file(path)
    np.testing.assert_allclose(ours.array[0], on_our_grid(peer, peer_aff, ours.affine, ours.spatial_shape, **tol), rtol=1e-6)
    wrapper = wrapper_from_file(str(path))
    nib_aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ wrapper.affine
    nib_data = on_our_grid(wrapper.get_data(), nib_aff, ours.affine, ours.spatial_shape, **tol)
    np.testing.assert_allclose(ours.array[0], nib_data, rtol=1e-6)


def _enhanced_from_series(paths, order, per_frame_everything: bool) -> Dataset:
    """An Enhanced MR image holding the single-frame files ``paths`` as frames in ``order``."""
    frames = [pydicom.dcmread(paths[i]) for i in order]
    ds = frames[0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.EnhancedMRImageStorage
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.NumberOfFrames = len(frames)
    ds.PixelData = b"".join(f.PixelData for f in frames)

    def groups(f: Dataset) -> Dataset:
        item = Dataset()
        ori, meas, pvt = Dataset(), Dataset(), Dataset()
        ori.ImageOrientationPatient = f.ImageOrientationPatient
        meas.PixelSpacing, meas.SliceThickness = f.PixelSpacing, f.SliceThickness
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = f.RescaleSlope, f.RescaleIntercept, "US"
        item.PlaneOrientationSequence = Sequence([ori])
        item.PixelMeasuresSequence = Sequence([meas])
        item.PixelValueTransformationSequence = Sequence([pvt])
        return item

    per_frame = []
    for f in frames:
        item = groups(f) if per_frame_everything else Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = f.ImagePositionPatient
        item.PlanePositionSequence = Sequence([pos])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.SharedFunctionalGroupsSequence = Sequence([Dataset() if per_frame_everything else groups(frames[0])])
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, kw)
    return ds


@pytest.mark.parametrize("per_frame_everything", [False, True])
def test_enhanced_multiframe_built_from_real_block_matches_series_and_highdicom(tmp_path, per_frame_everything):
    vol = mni_block()[:20, :24, :7].astype(np.int16)
    paths = write_dicom_series(tmp_path / "series", vol, OBLIQUE[:, 0], OBLIQUE[:, 1], pixel_spacing=(0.8, 0.55),
                               slice_step=2.5, origin=(1.0, 2.0, 3.0), slope=0.5)  # fmt: skip
    series = read_image(tmp_path / "series")
    order = np.random.default_rng(3).permutation(len(paths))  # frames stored in shuffled order
    enhanced = _enhanced_from_series(paths, order, per_frame_everything)
    enhanced.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    ours = read_image(tmp_path / "enhanced.dcm")
    assert ours.array.dtype == np.float32  # slope 0.5 from the (per-frame or shared) Pixel Value Transformation
    np.testing.assert_array_equal(ours.array, series.array)
    np.testing.assert_allclose(ours.affine, series.affine, atol=1e-6)
    volume = hd.imread(str(tmp_path / "enhanced.dcm")).get_volume(apply_real_world_transform=False)
    peer, peer_aff = highdicom_volume(volume)
    np.testing.assert_array_equal(ours.array[0], on_our_grid(peer, peer_aff, ours.affine, ours.spatial_shape))


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm"])
def test_enhanced_mr_without_positions_refused_before_decoding(name):
    # pydicom-data's emri_small files are real Enhanced MR frames whose functional groups were stripped
    with pytest.raises(InputError, match="no per-frame positions") as err:
        read_image(pydicom_data_file(name))
    assert str(err.value).startswith(str(pydicom_data_file(name))) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR2_UNCR.dcm"])
def test_single_real_file_matches_sitk_and_nibabel(name):
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    path = pydicom_test_file(name) if pydicom_test_file(name).exists() else pydicom_data_file(name)
    ours = read_image(path)
    peer, peer_aff = sitk_file(path)  # a one-slice volume, index (column, row, 0)
    np.testing.assert_allclose(ours.array[0], peer[:, :, 0].T, rtol=1e-6)  # ours: (row, column); MR2_UNCR is float
    plane = np.asarray(ours.meta["plane_affine_ras"])  # maps (row, column, 0) to RAS, like the 2D array's index
    np.testing.assert_allclose(plane[:, [0, 1, 3]], peer_aff[:, [1, 0, 3]], atol=1e-4)
    wrapper = wrapper_from_data(pydicom.dcmread(path))  # LPS affine, index (row, column); data with the rescale applied
    np.testing.assert_allclose(plane[:, [0, 1, 3]], (np.diag([-1.0, -1.0, 1.0, 1.0]) @ wrapper.affine)[:, [0, 1, 3]], atol=1e-4)
    if name != "MR2_UNCR.dcm":  # nibabel leaves Philips data unscaled when a private scale tag is missing
        np.testing.assert_allclose(ours.array[0], wrapper.get_data(), rtol=1e-6)


def test_ct_hounsfield_units_from_rescale(tmp_path):
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert read_image(pydicom_test_file("CT_small.dcm")).array[0].tolist() == hu.astype(np.int64).tolist()
    ds.RescaleSlope, ds.RescaleIntercept = "0.25", "-1024.5"  # non-integral: float32 HU
    ds.save_as(tmp_path / "ct.dcm")
    ours = read_image(tmp_path / "ct.dcm")
    assert ours.array.dtype == np.float32
    np.testing.assert_allclose(ours.array[0], ds.pixel_array * 0.25 - 1024.5, rtol=1e-6)


def _ct_small_series(folder, positions, **tags):
    """Copies of the real CT_small slice at ``positions`` (LPS mm), one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, pos in enumerate(positions):
        ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        for key, value in tags.items():
            setattr(ds, key, value)
        paths.append(folder / f"CT{k:03d}.dcm")
        ds.save_as(paths[-1])
    return paths


def test_ct_series_from_real_slices_matches_sitk(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    origin = np.array([float(v) for v in ds.ImagePositionPatient])
    normal = np.cross(*np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3))
    _ct_small_series(tmp_path, [origin + 5.0 * k * normal for k in range(6)][::-1])
    ours = read_image(tmp_path)
    peer, peer_aff = sitk_series(tmp_path)
    np.testing.assert_array_equal(ours.array[0], peer)
    np.testing.assert_allclose(ours.affine, peer_aff, atol=1e-4)


def test_gantry_tilt_refused_with_its_angle(tmp_path):
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    origin = np.array([float(v) for v in ds.ImagePositionPatient])
    tilt = np.deg2rad(15.0)  # slices 5 mm apart along z, each shifted along y: a 15 degree tilted gantry
    positions = [origin + k * np.array([0.0, 5.0 * np.tan(tilt), 5.0]) for k in range(5)]
    _ct_small_series(tmp_path, positions, ImageOrientationPatient=[1, 0, 0, 0, 1, 0], GantryDetectorTilt="15")
    with pytest.raises(GeometryError, match=r"gantry tilt of about 15\.0 degrees") as err:
        read_image(tmp_path)
    assert "\n" not in str(err.value) and "resample" in str(err.value)


def test_positions_rounded_by_the_scanner_are_accepted_but_a_shifted_slice_is_not(tmp_path):
    paths = write_dicom_series(tmp_path, mni_block()[:10, :12, :12], OBLIQUE[:, 0], OBLIQUE[:, 1], slice_step=0.625)
    for p in paths:  # positions written to 0.01 mm, as many scanners do: in-plane noise above 1 % of the 0.625 mm step
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [f"{float(v):.2f}" for v in ds.ImagePositionPatient]
        ds.save_as(p)
    ours = read_image(tmp_path)
    np.testing.assert_allclose(ours.spacing[2], 0.625, atol=0.005)
    np.testing.assert_array_equal(ours.array[0], sitk_series(tmp_path)[0])
    ds = pydicom.dcmread(paths[5])
    ds.ImagePositionPatient = [float(v) + 0.8 * float(c) for v, c in zip(ds.ImagePositionPatient, OBLIQUE[:, 0])]
    ds.save_as(paths[5])  # one slice moved 0.8 pixel along its rows
    with pytest.raises(GeometryError, match="shifted within their plane"):
        read_image(tmp_path)


def test_uneven_spacing_refused_with_the_spacings_found(tmp_path):
    offsets = [0.0, 2.0, 4.0, 6.0, 9.5, 11.5, 13.5, 15.5]  # one step of 3.5 mm among steps of 2 mm
    write_dicom_series(tmp_path, mni_block()[:10, :12, :8], (1, 0, 0), (0, 1, 0), slice_offsets=offsets)
    with pytest.raises(GeometryError, match="uneven slice spacing") as err:
        read_image(tmp_path)
    assert "2.000 mm x 6" in str(err.value) and "3.500 mm x 1" in str(err.value)


def test_missing_slice_named_as_missing(tmp_path):
    write_dicom_series(tmp_path, mni_block()[:10, :12, :6], (1, 0, 0), (0, 1, 0), slice_offsets=[0, 2, 4, 8, 10, 12])
    with pytest.raises(GeometryError, match=r"missing slices: gap of 4\.000 mm .*about 1 slice"):
        read_image(tmp_path)


def _annotate_threshold(source, out, lower, upper):
    from typer.testing import CliRunner

    args = ["annotate", str(source), "--method", "threshold", "-p", f"lower={lower}", "-p", f"upper={upper}", "--out", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (case,) = list(out.iterdir())
    return nib.load(case / "labels.nii.gz")


def test_threshold_labels_overlay_the_series_voxel_for_voxel(tmp_path):
    # an oblique series with non-square pixels, descending slices and files named in reverse order
    vol = mni_block()[:, :, ::3].astype(np.int16) * 2 - 1000
    write_dicom_series(tmp_path / "series", vol, OBLIQUE[:, 0], OBLIQUE[:, 1], pixel_spacing=(1.1, 0.7), slice_step=-3.0,
                       origin=(12.5, -40.0, 33.0), slope=2.0, intercept=-1000.0, reverse_files=True, modality="CT")  # fmt: skip
    labels = _annotate_threshold(tmp_path / "series", tmp_path / "out", -800, -500)
    peer, peer_aff = sitk_series(tmp_path / "series")
    np.testing.assert_allclose(labels.affine, peer_aff, atol=1e-4)
    expected = ((peer >= -800) & (peer <= -500)).astype(np.uint8)
    assert 0.05 < expected.mean() < 0.95
    np.testing.assert_array_equal(np.asarray(labels.dataobj), expected)


def test_threshold_labels_overlay_a_real_enhanced_ct(tmp_path):
    path = pydicom_data_file("eCT_Supplemental.dcm")
    labels = _annotate_threshold(path, tmp_path / "out", 0, 100)  # HU of soft tissue
    ours = read_image(path)
    np.testing.assert_allclose(labels.affine, ours.affine, atol=1e-4)
    peer, peer_aff = sitk_file(path)  # SimpleITK stacks the frames the other way: compare on the same voxel centres
    peer_on_labels = on_our_grid(peer, peer_aff, labels.affine, labels.shape, atol_voxels=1e-4)
    expected = ((peer_on_labels >= 0) & (peer_on_labels <= 100)).astype(np.uint8)
    assert 0.01 < expected.mean() < 0.99
    np.testing.assert_array_equal(np.asarray(labels.dataobj), expected)


@pytest.mark.parametrize("signed", [0, 1])
def test_bits_above_bits_stored_are_ignored_like_pydicom_and_sitk(tmp_path, signed):
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    stored = ds.pixel_array.astype(np.uint16) & 0x0FFF
    junk = np.random.default_rng(0).integers(0, 16, size=stored.shape).astype(np.uint16) << 12  # overlay bits, noise
    ds.PixelData = (stored | junk).tobytes()
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, signed
    ds.save_as(tmp_path / "ct12.dcm")
    ours = read_image(tmp_path / "ct12.dcm").array[0]
    expected = pydicom.dcmread(tmp_path / "ct12.dcm").pixel_array.astype(np.int32) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours, sitk_file(tmp_path / "ct12.dcm")[0][:, :, 0].T)
    real_slice_series(tmp_path / "series", "CT_small.dcm", [0.0, 5.0, 10.0])  # the same in the fast series path
    for p in sorted((tmp_path / "series").iterdir()):
        s = pydicom.dcmread(p)
        s.PixelData, s.BitsStored, s.HighBit, s.PixelRepresentation = ds.PixelData, 12, 11, signed
        s.save_as(p)
    np.testing.assert_array_equal(read_image(tmp_path / "series").array[0], sitk_series(tmp_path / "series")[0])


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_series_of_compressed_big_endian_or_implicit_files_matches_sitk(tmp_path, name):
    real_slice_series(tmp_path, name, [0.0, 2.0, 4.0, 6.0], reverse_names=True)
    ours = read_image(tmp_path)
    peer, peer_aff = sitk_series(tmp_path)
    assert ours.spatial_shape == (64, 64, 4)
    np.testing.assert_array_equal(ours.array[0], peer)
    np.testing.assert_allclose(ours.affine, peer_aff, atol=1e-4)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "int32", "uint32"])
def test_rescale_in_place_is_exact_for_every_stored_type(dtype):
    from medannot.io._dicom_values import apply_rescale

    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    raw = rng.integers(max(info.min, -3000), min(info.max, 3000), size=(3, 5, 7), endpoint=True).astype(dtype)
    slopes, intercepts = np.array([1.0, -2.0, 3.0]), np.array([-1024.0, 7.0, -40000.0 if dtype == "uint32" else 0.0])
    expected = raw.astype(np.float64) * slopes[:, None, None] + intercepts[:, None, None]
    out = apply_rescale(raw.copy(), slopes, intercepts)
    fits = expected.min() >= -32768 and expected.max() <= 32767
    assert out.dtype == (np.int16 if fits else np.float32)
    np.testing.assert_array_equal(out, expected)
    out = apply_rescale(raw.copy(), slopes, intercepts + 0.5)  # non-integral: float32
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected + 0.5, rtol=1e-6)
