"""`annotate <PACS study> --format dicom-sr` against a real Orthanc: the SR is stored beside the SEG, references it,
passes dciodvfy after a WADO-RS round trip, and holds the volumes of the labels."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from dicomout_helpers import dciodvfy
from medannot.cli import app
from medannot.io import discover_inputs, read_image
from medannot.io.dicomweb import PacsClient

runner = CliRunner()


def _one(client: PacsClient, study_uid: str, modality: str):
    series = client.list_series(study_uid, modality=modality)
    assert len(series) == 1, (modality, series)
    (ds,) = client.retrieve_series(study_uid, series[0].series_uid)
    buffer = io.BytesIO()  # what a viewer reading the file would get
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.integration
def test_annotate_study_stores_an_sr_beside_the_seg(mr_study, tmp_path):
    args = ["annotate", "--pacs", mr_study.server.dicomweb_url, "--study", mr_study.study_uid, "--method", "otsu", "--format", "dicom-sr"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "DICOM SEG" in result.output and "DICOM SR" in result.output

    client = PacsClient(mr_study.server.dicomweb_url)
    seg = pydicom.dcmread(io.BytesIO(_one(client, mr_study.study_uid, "SEG")))
    sr_bytes = _one(client, mr_study.study_uid, "SR")
    (tmp_path / "sr.dcm").write_bytes(sr_bytes)
    errors, _ = dciodvfy(tmp_path / "sr.dcm")
    assert errors == []
    sr = hd.sr.srread(tmp_path / "sr.dcm")
    assert sr.StudyInstanceUID == mr_study.study_uid and sr.SeriesInstanceUID != seg.SeriesInstanceUID
    (group,) = sr.content.get_volumetric_roi_measurement_groups()  # otsu: one label
    ref = group.referenced_segment
    assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID and ref.referenced_segment_numbers == [1]
    assert ref.source_series_for_segmentation.value == mr_study.series_uid
    source = read_image(mr_study.folder)
    from medannot.classical import run_method

    voxels = int(np.count_nonzero(run_method("otsu", source).scalar()))
    assert group.get_measurements()[0].value == pytest.approx(voxels * source.geometry.voxel_volume, rel=1e-6)
    # the study now holds a SEG and an SR; annotating it again finds only the image series
    assert [i.series_uid for i in discover_inputs(mr_study.url)] == [mr_study.series_uid]


@pytest.mark.integration
def test_without_dicom_sr_only_the_seg_is_stored(mr_study):
    result = runner.invoke(app, ["annotate", mr_study.url, "--method", "otsu", "-q"])
    assert result.exit_code == 0, result.output
    client = PacsClient(mr_study.server.dicomweb_url)
    assert len(client.list_series(mr_study.study_uid, modality="SEG")) == 1
    assert client.list_series(mr_study.study_uid, modality="SR") == []
