"""A PACS that is down, slow, refusing, failing for a while, or missing the study: typed one-line errors, retries.

Every server here is real: Orthanc processes, a TCP socket that never answers, and a small HTTP front that
answers 503 for its first requests and then forwards to Orthanc (as a load balancer in front of a PACS
that is restarting would).
"""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.error
import urllib.request

import pytest
from pacs_helpers import write_mr_study
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from medannot.cli import app
from medannot.errors import InputError, PacsError
from medannot.io.dicomweb import PacsClient, PacsSettings
from medannot.testing.orthanc import OrthancServer, free_port

runner = CliRunner()


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("medannot: error: ")
    return lines[0]


def test_server_down_is_one_line_and_exit_2():
    url = f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web/studies/1.2.3.4"  # nothing listens there
    result = runner.invoke(app, ["annotate", url, "--method", "otsu", "--pacs-retries", "1", "--pacs-timeout", "5"])
    line = _one_line_error(result)
    assert "cannot reach the PACS" in line and "connection refused" in line and "2 attempts" in line


def test_unknown_study_is_a_clear_error(orthanc):
    study = generate_uid()
    result = runner.invoke(app, ["annotate", f"dicomweb+{orthanc.dicomweb_url}/studies/{study}", "--method", "otsu"])
    line = _one_line_error(result)
    assert f"study {study} not found" in line
    with pytest.raises(InputError, match="not found"):
        PacsClient(orthanc.dicomweb_url).require_study(study)


def test_unknown_series_is_a_clear_error(mr_study):
    result = runner.invoke(app, ["annotate", f"{mr_study.url}/series/1.2.3.999", "--method", "otsu"])
    line = _one_line_error(result)
    assert "series 1.2.3.999 not found" in line


def test_uid_that_looks_like_a_path_is_refused_before_any_request():
    result = runner.invoke(app, ["annotate", "dicomweb+http://127.0.0.1:9/dicom-web/studies/..%2F..%2Fetc", "--method", "otsu"])
    line = _one_line_error(result)
    assert "is not a DICOM UID" in line


def test_access_refused_then_allowed_with_credentials(tmp_path):
    with OrthancServer(tmp_path / "locked", users={"alice": "s3cret"}) as locked:
        with pytest.raises(PacsError, match=r"refused access \(HTTP 401"):
            PacsClient(locked.dicomweb_url).list_series("1.2.3")
        result = runner.invoke(app, ["annotate", "--pacs", locked.dicomweb_url, "--study", "1.2.3", "--method", "otsu"])
        line = _one_line_error(result)
        assert "HTTP 401" in line and "s3cret" not in line
        # the same server with the credentials in the address answers (the study is simply not there)
        authorised = locked.dicomweb_url.replace("http://", "http://alice:s3cret@")
        assert PacsClient(authorised).list_series("1.2.3") == []
        result = runner.invoke(app, ["annotate", f"dicomweb+{authorised}/studies/1.2.3", "--method", "otsu"])
        line = _one_line_error(result)
        assert "study 1.2.3 not found" in line and "s3cret" not in line


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_retries_reach_a_server_that_starts_late(tmp_path):
    port = free_port()
    series = tmp_path / "series"
    study = generate_uid()
    write_mr_study(series, study)
    files = sorted(series.glob("*.dcm"))
    base = f"http://127.0.0.1:{port}/dicom-web"
    with pytest.raises(PacsError, match="connection refused"):
        PacsClient(base, PacsSettings(timeout_s=5, retries=0)).store_files(files)
    server = OrthancServer(tmp_path / "late", port=port)
    starter = threading.Timer(1.0, server.start)
    starter.start()
    try:
        # attempts at about 0, 0, 0.5, 1.5, 3.5 s: the server is up (about 1.5 s) before they run out
        stored = PacsClient(base, PacsSettings(timeout_s=5, retries=5, backoff_s=0.25)).store_files(files)
        starter.join()
        assert len(stored) == len(files)
        assert [s.instances for s in PacsClient(base).list_series(study)] == [len(files)]
    finally:
        starter.join()
        server.stop()


@pytest.mark.timeout(20)  # a hang guard: were the 0.5 s ignored (requests waits forever, the CLI default is 30 s) it trips
def test_timeout_is_honoured_when_the_server_never_answers():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web"
        with pytest.raises(PacsError, match=r"did not answer within 0.5 s"):
            PacsClient(base, PacsSettings(timeout_s=0.5, retries=3)).list_series("1.2.3")
        result = runner.invoke(app, ["annotate", f"dicomweb+{base}/studies/1.2.3", "--method", "otsu", "--pacs-timeout", "0.5"])
        line = _one_line_error(result)
        assert "did not answer within 0.5 s" in line


class _FlakyFront(http.server.ThreadingHTTPServer):
    """Answers HTTP 503 to its first ``failures`` requests, then forwards every request to ``target``."""

    def __init__(self, target: str, failures: int) -> None:
        self.target, self.failures, self.seen = target, failures, 0
        super().__init__(("127.0.0.1", 0), _FlakyHandler)


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    server: _FlakyFront

    def _relay(self) -> None:
        self.server.seen += 1
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.seen <= self.server.failures:
            self.send_response(503, "Service Unavailable")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        request = urllib.request.Request(self.server.target + self.path, data=body or None, headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, reason, payload, answer_headers = answer.status, answer.reason, answer.read(), answer.headers
        except urllib.error.HTTPError as exc:
            status, reason, payload, answer_headers = exc.code, exc.reason, exc.read(), exc.headers
        self.send_response(status, reason)
        for key, value in answer_headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _relay

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.mark.parametrize("failures, retries, succeeds", [(2, 3, True), (3, 1, False)])
def test_http_503_is_retried_with_back_off(orthanc, failures, retries, succeeds):
    front = _FlakyFront(orthanc.url, failures)
    thread = threading.Thread(target=front.serve_forever, daemon=True)
    thread.start()
    try:
        client = PacsClient(f"http://127.0.0.1:{front.server_address[1]}/dicom-web", PacsSettings(timeout_s=5, retries=retries, backoff_s=0.05))
        if succeeds:
            assert client.list_series(generate_uid()) == []
            assert front.seen == failures + 1
        else:
            with pytest.raises(PacsError, match="answered HTTP 503"):
                client.list_series(generate_uid())
            assert front.seen == retries + 1
    finally:
        front.shutdown()
        front.server_close()


def test_retrieving_a_missing_series_is_an_input_error(mr_study):
    client = PacsClient(mr_study.server.dicomweb_url)
    with pytest.raises(InputError, match=rf"series 1.2.3 of study {mr_study.study_uid} not found .*HTTP 404"):
        client.retrieve_series(mr_study.study_uid, "1.2.3")


def test_an_instance_the_pacs_refuses_is_named_with_the_reason(mr_study):
    import pydicom

    ds = pydicom.dcmread(sorted(mr_study.folder.glob("*.dcm"))[0])
    with pytest.raises(PacsError, match=r"HTTP 409 .*1 of 1 instance\(s\) refused \(first [0-9.]+: FailureReason 0x"):
        PacsClient(mr_study.server.dicomweb_url).store([ds], generate_uid())  # posted to a study it does not belong to


def test_seg_not_stored_when_the_pacs_went_down_meanwhile(mr_study, tmp_path):
    from medannot.annotations import LabelMap, Provenance
    from medannot.annotations.pacs_store import store_segmentation
    from medannot.classical import run_method
    from medannot.io.dicomweb import DicomWebLocation, load_dicomweb_series

    location = DicomWebLocation(mr_study.server.dicomweb_url, mr_study.study_uid, mr_study.series_uid)
    image, headers = load_dicomweb_series(location)
    labels = run_method("otsu", image)
    gone = DicomWebLocation(f"http://127.0.0.1:{free_port()}/dicom-web", mr_study.study_uid, mr_study.series_uid)
    with pytest.raises(PacsError, match=r"/series/[0-9.]+: DICOM SEG not stored \((listing the series of study|storing 1 instance\(s\))[^)]*: cannot reach"):
        store_segmentation(gone, labels, headers, LabelMap.parse({1: "tissue"}), Provenance(source="classical", name="otsu"),
                           PacsSettings(retries=0))  # fmt: skip
