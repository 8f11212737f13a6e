"""Helpers shared by the tests (imported by name: tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "medannot" / "data_samples"
MNI_T1 = SAMPLES / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
MNI_GM = SAMPLES / "mni152" / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
STARDIST_IMG = SAMPLES / "stardist" / "img2d.tif"
STARDIST_MASK = SAMPLES / "stardist" / "mask2d.tif"


def pydicom_test_file(name: str) -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files" / name


_MNI_CACHE: dict[str, np.ndarray] = {}


def mni_block() -> np.ndarray:
    """A small real block of the MNI T1 (int16), cached: (40, 48, 36) voxels around the brain centre."""
    if "t1" not in _MNI_CACHE:
        import nibabel as nib

        data = np.asanyarray(nib.load(MNI_T1).dataobj)
        _MNI_CACHE["t1"] = np.ascontiguousarray(data[78:118, 90:138, 70:106]).astype(np.int16)
    return _MNI_CACHE["t1"]


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from angles in degrees about x, y, z."""
    a, b, c = np.deg2rad([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_dicom_series(
    folder: Path,
    volume: np.ndarray,
    row_cos,
    col_cos,
    pixel_spacing=(1.0, 1.0),
    slice_step: float = 1.0,
    origin=(0.0, 0.0, 0.0),
    slope: float = 1.0,
    intercept: float = 0.0,
    series_uid: str | None = None,
    reverse_files: bool = False,
    description: str = "test series",
    series_number: int = 1,
    slice_offsets=None,
    modality: str = "MR",
) -> list[Path]:
    """Write ``volume[i, j, k]`` (column i, row j, slice k) as a single-frame DICOM series (LPS geometry).

    Pixel (row j, column i) of slice k sits at origin + i*colsp*row_cos + j*rowsp*col_cos + offset_k*normal.
    Stored values are ``(volume - intercept) / slope`` (must be integral).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    r = np.asarray(row_cos, float)
    c = np.asarray(col_cos, float)
    n = np.cross(r, c)
    series_uid = series_uid or generate_uid()
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    nslices = volume.shape[2]
    offsets = np.arange(nslices) * slice_step if slice_offsets is None else np.asarray(slice_offsets, float)
    paths = []
    for k in range(nslices):
        stored = np.round((volume[:, :, k].T - intercept) / slope).astype(np.int16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientID = "PAT-001"
        ds.PatientName = "Test^Phantom"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.Modality = modality
        ds.InstanceNumber = k + 1
        pos = np.asarray(origin, float) + offsets[k] * n
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.r_[r, c]]
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
        ds.SliceThickness = f"{slice_step:g}"
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelData = stored.tobytes()
        idx = nslices - 1 - k if reverse_files else k
        p = folder / f"IM{idx:04d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
