"""A real Orthanc PACS (Debian orthanc + orthanc-dicomweb) on 127.0.0.1 for the whole session; each test that
asks for ``mr_study`` gets a fresh real-volume study (a block of the MNI152 T1 as a DICOM MR series) stored over
STOW-RS.

Orthanc must be installed (scripts/system_deps.txt; `make test` installs it): a missing binary FAILS these
tests, it does not skip them.
"""

from __future__ import annotations

import pytest
from pacs_helpers import PacsStudy, write_mr_study
from pydicom.uid import generate_uid

from medannot.io.dicomweb import PacsClient
from medannot.testing.orthanc import OrthancServer


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> OrthancServer:
    """A running Orthanc with DICOMweb on a free port; stopped (by pid) after the session."""
    server = OrthancServer(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


@pytest.fixture
def mr_study(orthanc, tmp_path_factory) -> PacsStudy:
    """A fresh MR study (one series, 18 slices) uploaded through STOW-RS, so each test has its own study."""
    folder = tmp_path_factory.mktemp("mr_study")
    study_uid = generate_uid()
    series_uid = write_mr_study(folder, study_uid)
    stored = PacsClient(orthanc.dicomweb_url).store_files(sorted(folder.glob("*.dcm")))
    assert len(stored) == len(list(folder.glob("*.dcm")))
    return PacsStudy(orthanc, study_uid, series_uid, folder)
