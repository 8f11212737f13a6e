"""Re-running on a PACS is idempotent (issue 15 item 4), against the local Orthanc: the SEG and SR UIDs are derived from
the source series and the model, annotating the same study again adds no series (skip, the default), keep-both adds a
second, replace deletes and stores again (Orthanc's DICOMweb plugin refuses DELETE: its REST API does it)."""

from __future__ import annotations

import http.server
import threading

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from medannot.annotations import LabelMap
from medannot.annotations.dicom_uids import output_uids
from medannot.annotations.pacs_store import OnExisting, existing_outputs, store_segmentation
from medannot.cli import app
from medannot.errors import ConfigError, PacsError
from medannot.io.dicomweb import DicomWebLocation, PacsClient, load_dicomweb_series
from medannot.tasks.segmentation import ClassicalSegmenter
from medannot.testing.orthanc import free_port
from medannot.workflows.annotate import annotate_inputs

runner = CliRunner()


def _series(mr_study, modality):
    return PacsClient(mr_study.server.dicomweb_url).list_series(mr_study.study_uid, modality=modality)


def _annotate(mr_study, *extra):
    result = runner.invoke(app, ["annotate", mr_study.url, "--method", "otsu", *extra])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.integration
def test_annotating_twice_stores_one_seg_and_one_sr(mr_study):
    first = _annotate(mr_study, "--format", "dicom-sr")
    assert "already in the PACS" not in first
    (seg,) = _series(mr_study, "SEG")
    (sr,) = _series(mr_study, "SR")
    maker = ClassicalSegmenter("otsu", {}, progress=False).provenance({})
    uids = output_uids(mr_study.series_uid, maker)
    assert (seg.series_uid, sr.series_uid) == (uids.seg.series, uids.sr.series)  # derived, 2.25.<uuid5>
    assert seg.series_uid.startswith("2.25.") and len(seg.series_uid) <= 64
    second = _annotate(mr_study, "--format", "dicom-sr")
    assert "already in the PACS, kept: DICOM SEG series " + seg.series_uid in second
    assert [s.series_uid for s in _series(mr_study, "SEG")] == [seg.series_uid]
    assert [s.series_uid for s in _series(mr_study, "SR")] == [sr.series_uid]
    assert len(PacsClient(mr_study.server.dicomweb_url).retrieve_series(mr_study.study_uid, seg.series_uid)) == 1


@pytest.mark.integration
def test_keep_both_adds_a_second_series(mr_study):
    _annotate(mr_study, "-q")
    _annotate(mr_study, "-q", "--on-existing", "keep-both")
    segs = _series(mr_study, "SEG")
    assert len(segs) == 2 and len({s.series_uid for s in segs}) == 2
    _annotate(mr_study, "-q")  # the default skips: the derived series is there
    assert len(_series(mr_study, "SEG")) == 2


@pytest.mark.integration
def test_another_model_or_parameters_is_another_series(mr_study):
    _annotate(mr_study, "-q")
    _annotate(mr_study, "-q", "-p", "sigma_mm=1")
    assert len(_series(mr_study, "SEG")) == 2


@pytest.mark.integration
def test_skip_adds_a_missing_sr_beside_the_existing_seg(mr_study, tmp_path):
    _annotate(mr_study, "-q")
    (seg,) = _series(mr_study, "SEG")
    assert _series(mr_study, "SR") == []
    results = annotate_inputs(mr_study.url, ClassicalSegmenter("otsu", {}, progress=False), tmp_path / "out", formats=["dicom-sr"])
    assert results[0].ok, results[0].reason
    assert "already in the PACS, kept: DICOM SEG series" in results[0].pacs_note and len(results[0].stored) == 1
    assert [s.series_uid for s in _series(mr_study, "SEG")] == [seg.series_uid]
    (sr_series,) = _series(mr_study, "SR")
    (sr,) = PacsClient(mr_study.server.dicomweb_url).retrieve_series(mr_study.study_uid, sr_series.series_uid)
    (stored_seg,) = PacsClient(mr_study.server.dicomweb_url).retrieve_series(mr_study.study_uid, seg.series_uid)
    refs = [str(item.ReferencedSOPInstanceUID) for evidence in sr.CurrentRequestedProcedureEvidenceSequence
            for series in evidence.ReferencedSeriesSequence for item in series.ReferencedSOPSequence]
    assert str(stored_seg.SOPInstanceUID) in refs
    # the local seg.dcm is the stored object (same UIDs)
    local = pydicom.dcmread(tmp_path / "out" / results[0].name / "seg.dcm")
    assert local.SOPInstanceUID == stored_seg.SOPInstanceUID
    # all there: the series is not retrieved or annotated again, no case folder is written
    again = annotate_inputs(mr_study.url, ClassicalSegmenter("otsu", {}, progress=False), tmp_path / "again", formats=["dicom-sr"])
    assert again[0].ok and again[0].folder is None and again[0].stored == [] and "DICOM SR series" in again[0].pacs_note
    assert not (tmp_path / "again" / again[0].name).exists()


def _stored_voxels(mr_study, series_uid) -> int:
    (ds,) = PacsClient(mr_study.server.dicomweb_url).retrieve_series(mr_study.study_uid, series_uid)
    return int(np.count_nonzero(ds.pixel_array)) if "PixelData" in ds else 0


@pytest.mark.integration
def test_replace_deletes_then_stores_the_new_content(mr_study):
    from medannot.classical import run_method

    location = DicomWebLocation(mr_study.server.dicomweb_url, mr_study.study_uid, mr_study.series_uid)
    image, headers = load_dicomweb_series(location)
    otsu = run_method("otsu", image)
    labels = LabelMap.parse({1: "tissue"})
    maker = ClassicalSegmenter("otsu", {}, progress=False).provenance({})
    first = store_segmentation(location, otsu, headers, labels, maker)
    (seg,) = _series(mr_study, "SEG")
    assert first.stored and not first.existing and _stored_voxels(mr_study, seg.series_uid) > 0
    assert existing_outputs(location, maker) == [("DICOM SEG", seg.series_uid)]
    emptier = otsu.with_array(np.zeros_like(otsu.array))  # other content under the same model identity
    kept = store_segmentation(location, emptier, headers, labels, maker)  # skip: the PACS keeps what it has
    assert kept.stored == [] and kept.existing == [("DICOM SEG", seg.series_uid)]
    assert _stored_voxels(mr_study, seg.series_uid) > 0
    replaced = store_segmentation(location, emptier, headers, labels, maker, on_existing="replace")
    assert replaced.replaced == [("DICOM SEG", seg.series_uid, "Orthanc REST API")] and replaced.stored
    assert [s.series_uid for s in _series(mr_study, "SEG")] == [seg.series_uid]
    assert _stored_voxels(mr_study, seg.series_uid) == 0
    with pytest.raises(ConfigError, match="skip, replace, keep-both"):
        store_segmentation(location, otsu, headers, labels, maker, on_existing="overwrite")


class _NoDelete(http.server.BaseHTTPRequestHandler):
    """A DICOMweb server that refuses DELETE (405) and is no Orthanc (no /system)."""

    def do_DELETE(self):  # noqa: N802 - http.server's naming
        self.send_response(405)
        self.send_header("Allow", "GET")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_pacs_without_delete_is_an_error_that_says_so():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _NoDelete)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = PacsClient(f"http://127.0.0.1:{server.server_address[1]}/dicom-web")
        with pytest.raises(PacsError, match=r"does not delete series over DICOMweb \(HTTP 405\).*nothing was deleted.*keep-both"):
            client.delete_series("1.2.3", "1.2.3.4")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_on_existing_names():
    assert OnExisting.parse("Keep-Both") is OnExisting.KEEP_BOTH
    result = runner.invoke(app, ["annotate", "x.nii.gz", "--method", "otsu", "--on-existing", "nope"])
    assert result.exit_code != 0
