"""PACS in, PACS out through the CLI against a real Orthanc: the DICOM SEG stored back is checked with highdicom."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from dicomout_helpers import dciodvfy
from medannot.cli import app
from medannot.io import discover_inputs, read_image
from medannot.io.dicomweb import PacsClient, load_dicomweb_series, parse_dicomweb_url

runner = CliRunner()


def _seg_series(client: PacsClient, study_uid: str) -> list:
    return client.list_series(study_uid, modality="SEG")


def _retrieve_one_seg(client: PacsClient, study_uid: str, validate_in: Path | None = None) -> hd.seg.Segmentation:
    """The one SEG of the study, retrieved over WADO-RS; with ``validate_in``, also checked by dciodvfy."""
    series = _seg_series(client, study_uid)
    assert len(series) == 1, series
    (seg_ds,) = client.retrieve_series(study_uid, series[0].series_uid)
    buffer = io.BytesIO()  # a full write/read cycle: what a viewer reading the file would get
    seg_ds.save_as(buffer, enforce_file_format=True)
    if validate_in is not None:
        path = validate_in / "seg_from_pacs.dcm"
        path.write_bytes(buffer.getvalue())
        errors, _ = dciodvfy(path)
        assert errors == [], errors
    return hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))


@pytest.mark.slow
@pytest.mark.integration
def test_annotate_study_stores_a_seg_equal_to_the_labels(mr_study, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", mr_study.url, "--model", "brain-mri", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    (case,) = [p for p in out.iterdir() if p.is_dir()]
    labels = np.asarray(nib.load(case / "labels.nii.gz").dataobj)
    source = read_image(mr_study.folder)
    assert labels.shape == source.spatial_shape
    assert {1, 2} <= set(np.unique(labels).tolist())  # the model found both tissues in the real block

    client = PacsClient(mr_study.server.dicomweb_url)
    seg = _retrieve_one_seg(client, mr_study.study_uid, validate_in=tmp_path)  # valid DICOM by dciodvfy
    assert seg.StudyInstanceUID == mr_study.study_uid
    # the SEG references exactly the uploaded series and its instances
    (ref_series,) = seg.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == mr_study.series_uid
    files = sorted(mr_study.folder.glob("*.dcm"))  # IM0000.dcm is slice k = 0 (ascending along the normal)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    assert {str(i.ReferencedSOPInstanceUID) for i in ref_series.ReferencedInstanceSequence} == set(uids)
    # segments: the bundle's names, automatic, made by brain-mri
    described = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert {n: str(s.SegmentLabel) for n, s in described.items()} == {1: "grey matter", 2: "white matter"}
    for item in described.values():
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "brain-mri"
    # voxel for voxel, by source instance: frame of instance k = labels[:, :, k] (columns x rows -> rows x columns)
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False, dtype=np.uint8)
    for k in range(labels.shape[2]):
        np.testing.assert_array_equal(pixels[k], labels[:, :, k].T, err_msg=f"slice {k}")

    # the study now holds the SEG; annotating it again lists only the image series, not the SEG
    items = discover_inputs(mr_study.url)
    assert [i.series_uid for i in items] == [mr_study.series_uid]


def test_wado_retrieval_reads_like_the_local_series(mr_study):
    location = parse_dicomweb_url(f"{mr_study.url}/series/{mr_study.series_uid}")
    image, headers = load_dicomweb_series(location)
    local = read_image(mr_study.folder)
    np.testing.assert_array_equal(image.array, local.array)
    np.testing.assert_allclose(image.affine, local.affine, atol=1e-6)
    assert image.meta["source"] == location.url and image.meta["SeriesInstanceUID"] == mr_study.series_uid
    assert len(headers) == 18 and all("PixelData" not in h for h in headers)


@pytest.mark.integration
def test_pacs_and_study_options_keep_nothing_locally(mr_study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["annotate", "--pacs", mr_study.server.dicomweb_url, "--study", mr_study.study_uid, "--method", "otsu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "DICOM SEG" in result.output and "stored in the PACS" in result.output
    assert list(tmp_path.iterdir()) == []  # no --out: no local copy of patient data
    seg = _retrieve_one_seg(PacsClient(mr_study.server.dicomweb_url), mr_study.study_uid)
    files = sorted(mr_study.folder.glob("*.dcm"))
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False, dtype=np.uint8)
    source = read_image(mr_study.folder)
    from medannot.classical import run_method

    expected = run_method("otsu", source).scalar()
    assert 0.1 < expected.mean() < 0.9
    np.testing.assert_array_equal(pixels, expected.transpose(2, 1, 0))


@pytest.mark.integration
def test_a_bad_series_is_skipped_and_the_rest_of_the_study_goes_on(orthanc, tmp_path):
    from pacs_helpers import write_mr_study
    from pydicom.uid import generate_uid

    from iohelpers import mni_block, write_dicom_series

    study = generate_uid()
    good = write_mr_study(tmp_path / "good", study, description="good", number=1)
    # a "localizer" series: two stacks of different orientation share one SeriesInstanceUID
    bad = generate_uid()
    write_dicom_series(tmp_path / "bad_a", mni_block()[:8, :8, :3], (1, 0, 0), (0, 1, 0), series_uid=bad, description="loc", series_number=2)
    write_dicom_series(tmp_path / "bad_b", mni_block()[:8, :8, :3], (0, 1, 0), (0, 0, -1), series_uid=bad, description="loc", series_number=2)
    files = sorted(tmp_path.glob("bad_*/*.dcm"))
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.save_as(path, enforce_file_format=True)
    client = PacsClient(orthanc.dicomweb_url)
    client.store_files(sorted((tmp_path / "good").glob("*.dcm")) + files)

    result = runner.invoke(app, ["annotate", f"dicomweb+{orthanc.dicomweb_url}/studies/{study}", "--method", "otsu", "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("medannot: skipped")]
    assert len(skipped) == 1 and "orientations" in skipped[0] and f"/series/{bad}" in skipped[0]
    seg = _retrieve_one_seg(client, study)
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [good]


@pytest.mark.integration
def test_deid_on_ingest_keeps_no_identifier_locally_and_the_seg_goes_to_the_real_study(mr_study, tmp_path):
    import json

    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", mr_study.url, "--method", "otsu", "--deid", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["series_1"]  # series descriptions may hold identifiers
    meta = json.loads((out / "series_1" / "annotation.json").read_text())["provenance"]["input"]
    assert meta["PatientID"] not in ("", "PAT-001")
    assert meta["StudyInstanceUID"] != mr_study.study_uid and meta["SeriesInstanceUID"] != mr_study.series_uid
    identifiers = [b"PAT-001", b"Phantom", b"ACC1", mr_study.study_uid.encode(), mr_study.series_uid.encode()]
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [i for i in identifiers if i in data], path
    # the SEG still belongs to the study on the PACS and references the original instances
    seg = _retrieve_one_seg(PacsClient(mr_study.server.dicomweb_url), mr_study.study_uid)
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [mr_study.series_uid]
    files = sorted(mr_study.folder.glob("*.dcm"))
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False, dtype=np.uint8)
    labels = np.asarray(nib.load(out / "series_1" / "labels.nii.gz").dataobj)
    np.testing.assert_array_equal(pixels, labels.transpose(2, 1, 0))


def test_deid_needs_a_pacs_input(tmp_path):
    result = runner.invoke(app, ["annotate", str(tmp_path), "--method", "otsu", "--deid"])
    assert result.exit_code == 2 and "medannot deid" in result.output
