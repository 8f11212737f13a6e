"""Helpers of the PACS tests: a real-volume MR study written as DICOM, and where it lies on the PACS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from dicomout_helpers import complete_headers
from iohelpers import mni_block, write_dicom_series
from medannot.testing.orthanc import OrthancServer


@dataclass
class PacsStudy:
    """A study stored on the session's Orthanc."""

    server: OrthancServer
    study_uid: str
    series_uid: str
    folder: Path  # the DICOM files that were uploaded

    @property
    def url(self) -> str:
        """``dicomweb+http://127.0.0.1:PORT/dicom-web/studies/UID``."""
        return f"dicomweb+{self.server.dicomweb_url}/studies/{self.study_uid}"


def write_mr_study(folder: Path, study_uid: str, volume: np.ndarray | None = None, description: str = "T1 block", number: int = 1) -> str:
    """Write a real-volume MR series (MNI152 T1 block, 1 x 1 mm pixels, 2 mm slices, RAS-preserving LPS cosines)
    into ``folder`` as study ``study_uid`` with a FrameOfReferenceUID; returns its SeriesInstanceUID."""
    vol = mni_block()[:, :, ::2] if volume is None else volume
    series_uid = generate_uid()
    files = write_dicom_series(
        folder, vol, row_cos=(-1, 0, 0), col_cos=(0, -1, 0), pixel_spacing=(1.0, 1.0), slice_step=2.0,
        origin=(20.0, 18.0, -10.0), series_uid=series_uid, description=description, series_number=number,
    )  # fmt: skip
    complete_headers(files)  # FrameOfReferenceUID, study date/time/ID, accession number, ... as a scanner writes them
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.save_as(path, enforce_file_format=True)
    return series_uid
