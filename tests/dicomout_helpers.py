"""Helpers for the DICOM SEG / RTSTRUCT tests: clinical-looking series from real volumes, and dciodvfy.

Imported by name (tests/conftest.py puts tests/ on sys.path).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from iohelpers import MNI_GM, MNI_T1, rotation, write_dicom_series

OBLIQUE = rotation(20.0, -10.0, 35.0)
ORIENTATIONS = {
    "axial": dict(row_cos=(1, 0, 0), col_cos=(0, 1, 0)),
    "sagittal": dict(row_cos=(0, 1, 0), col_cos=(0, 0, -1)),
    "coronal": dict(row_cos=(1, 0, 0), col_cos=(0, 0, -1)),
    "axial_reversed_files": dict(row_cos=(1, 0, 0), col_cos=(0, 1, 0), reverse_files=True),
    "oblique": dict(row_cos=OBLIQUE[:, 0], col_cos=OBLIQUE[:, 1]),
    "oblique_descending": dict(row_cos=OBLIQUE[:, 0], col_cos=OBLIQUE[:, 1], slice_step=-2.0),
}

_BLOCK = (slice(78, 118), slice(90, 138), slice(70, 106))  # the iohelpers.mni_block region
_TISSUE_CACHE: dict[str, np.ndarray] = {}


def mni_tissue_block() -> tuple[np.ndarray, np.ndarray]:
    """Real MNI152 T1 block (int16) and its tissue labels (uint8: 1 grey matter, 2 white matter), (40, 48, 36).

    Labels are the template's own grey/white-matter probability maps, each voxel given the
    tissue with probability > 50 % (0 elsewhere).
    """
    if "t1" not in _TISSUE_CACHE:
        import nibabel as nib

        t1 = np.asanyarray(nib.load(MNI_T1).dataobj)[_BLOCK].astype(np.int16)
        gm = np.asanyarray(nib.load(MNI_GM).dataobj)[_BLOCK].astype(np.float32)
        wm = np.asanyarray(nib.load(str(MNI_GM).replace("_gm_", "_wm_")).dataobj)[_BLOCK].astype(np.float32)
        scale = 255.0 if max(gm.max(), wm.max()) > 1.5 else 1.0
        labels = np.zeros(t1.shape, np.uint8)
        labels[gm / scale > 0.5] = 1
        labels[wm / scale > 0.5] = 2
        _TISSUE_CACHE["t1"], _TISSUE_CACHE["labels"] = t1, labels
    return _TISSUE_CACHE["t1"], _TISSUE_CACHE["labels"]


def complete_headers(paths: list[Path], frame_of_reference_uid: str | None = None) -> str:
    """Give a test series what a scanner's series has: FrameOfReferenceUID, study date/time, study ID,
    accession number, patient birth date and sex, referring physician. Returns the FrameOfReferenceUID."""
    import pydicom
    from pydicom.uid import generate_uid

    uid = frame_of_reference_uid or generate_uid()
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.FrameOfReferenceUID = uid
        ds.PositionReferenceIndicator = ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "ACC1"
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "19700101", "O", ""
        ds.Manufacturer = "test"
        ds.save_as(p, enforce_file_format=True)
    return uid


def write_clinical_series(folder: Path, volume: np.ndarray, frame_of_reference_uid: str | None = None, **opts) -> list[Path]:
    """``iohelpers.write_dicom_series`` followed by :func:`complete_headers`."""
    paths = write_dicom_series(folder, volume, **opts)
    complete_headers(paths, frame_of_reference_uid)
    return paths


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """Run the DICOM validator (Debian dicom3tools); return (error lines, warning lines).

    Fails (not skips) when dciodvfy is missing: ``make test`` installs it from scripts/system_deps.txt.
    """
    exe = shutil.which("dciodvfy")
    assert exe is not None, "dciodvfy is missing: apt-get install dicom3tools (listed in scripts/system_deps.txt)"
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]
