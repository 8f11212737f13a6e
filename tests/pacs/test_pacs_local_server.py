"""`python -m medannot.testing.orthanc` (what `make pacs` runs): start detached, upload, status, stop by pid."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pacs_helpers import write_mr_study
from pydicom.uid import generate_uid

from medannot.io.dicomweb import PacsClient
from medannot.testing.orthanc import OrthancServer, _is_orthanc_process


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medannot.testing.orthanc", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_start_upload_status_stop(tmp_path):
    folder = tmp_path / "pacs"
    started = _run("start", str(folder), "--port", "0")
    assert started.returncode == 0, started.stderr
    server = OrthancServer.attach(folder)
    try:
        assert server is not None and server.is_running()
        assert server.dicomweb_url in started.stdout
        again = _run("start", str(folder))  # a second start finds the running one
        assert again.returncode == 0 and "already runs" in again.stdout
        study = generate_uid()
        write_mr_study(tmp_path / "series", study)
        uploaded = _run("upload", str(tmp_path / "series"), str(folder))
        assert uploaded.returncode == 0, uploaded.stderr
        assert f"dicomweb+{server.dicomweb_url}/studies/{study}" in uploaded.stdout
        assert [s.instances for s in PacsClient(server.dicomweb_url).list_series(study)] == [18]
        assert _run("status", str(folder)).returncode == 0
    finally:
        stopped = _run("stop", str(folder))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not _is_orthanc_process(server.pid)
    assert _run("status", str(folder)).returncode == 1
    assert OrthancServer.attach(folder) is None


def test_missing_server_is_reported_by_status_and_upload(tmp_path):
    assert _run("status", str(tmp_path)).returncode == 1
    upload = _run("upload", str(tmp_path), str(tmp_path))
    assert upload.returncode == 2 and upload.stderr.startswith("medannot: error: no Orthanc runs")
