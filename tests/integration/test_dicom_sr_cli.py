"""`annotate --format dicom-sr,report`: the SR beside the SEG (dciodvfy-clean, its numbers those of annotation.json)
and the per-case HTML report, end to end on a real volume written as a DICOM series."""

from __future__ import annotations

import json
import re
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from dicomout_helpers import dciodvfy, mni_tissue_block, write_clinical_series
from iohelpers import MNI_T1
from medannot.annotations import LabelMap
from medannot.annotations.results import SegmentationResult
from medannot.cli import app
from medannot.data import Image
from medannot.io import write_image
from medannot.models.bundle import Bundle
from medannot.tasks.segmentation import ClassicalSegmenter
from medannot.workflows.annotate import annotate_inputs

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def brain_series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sr_cli")
    t1 = np.asanyarray(nib.load(MNI_T1).dataobj)[50:150:2, 60:180:2, 70:118:2].astype(np.int16)
    write_clinical_series(root / "brain", t1, row_cos=(1, 0, 0), col_cos=(0, 1, 0), pixel_spacing=(2.0, 2.0), slice_step=2.0,
                          origin=(-50.0, -70.0, -10.0))  # fmt: skip
    return root / "brain"


@pytest.mark.slow
@pytest.mark.integration
def test_annotate_writes_an_sr_measuring_the_seg_and_a_case_report(brain_series, tmp_path):
    result = _invoke("annotate", brain_series, "--model", "brain-mri", "--out", tmp_path / "out", "--format", "dicom-sr,report", "-q")
    assert result.exit_code == 0, result.output
    case = tmp_path / "out" / "brain"
    meta = json.loads((case / "annotation.json").read_text())
    assert {"dicom_seg": "seg.dcm", "dicom_sr": "sr.dcm", "report": "report.html"}.items() <= meta["files"].items()
    errors, _ = dciodvfy(case / "sr.dcm")
    assert errors == []
    seg = pydicom.dcmread(case / "seg.dcm")
    sr = hd.sr.srread(case / "sr.dcm")
    assert sr.StudyInstanceUID == seg.StudyInstanceUID
    groups = sr.content.get_volumetric_roi_measurement_groups()
    sizes = {lab["name"]: lab["size"] for lab in meta["labels"]}
    bundle = Bundle.load("brain-mri")
    assert len(groups) == len(sizes) == 2
    for group in groups:
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID  # the SEG of this folder
        name = str(group.tracking_identifier).split(" (segment")[0]
        assert group.get_measurements()[0].value == pytest.approx(sizes[name], rel=1e-6)

    page = (case / "report.html").read_text()
    assert "grey matter" in page and "white matter" in page and f"{bundle.name} {bundle.version}" in page
    assert f"{sizes['grey matter']:,.1f}" in page  # the volume, as annotation.json has it
    assert len(re.findall(r"<img alt=", page)) == 2  # a key slice per label
    assert "Not reviewed" in page and bundle.spec.sha256 in page
    no_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|<script|<link", no_data)


class _TumourModel(ClassicalSegmenter):
    """A stand-in model: the MNI tissue classes plus a 'tumour' it splits into two instances (as a bundle with instances)."""

    def __init__(self) -> None:
        super().__init__("otsu")

    def predict(self, image: Image) -> SegmentationResult:
        lab = np.zeros(image.spatial_shape, np.uint8)
        lab[10:20, 10:16, 5:9] = 3
        inst = np.zeros(lab.shape, np.uint32)
        inst[10:15, 10:16, 5:9], inst[15:20, 10:16, 5:9] = 1, 2  # touching: only the model's split separates them
        lab[30:34, 40:42, 12] = 3
        inst[30:34, 40:42, 12] = 3
        return SegmentationResult(labels=image.with_array(lab[None], kind="label"), instance_maps={3: inst},
                                  label_map=LabelMap.parse({3: "tumour"}))


@pytest.mark.slow
@pytest.mark.integration
def test_lesions_of_a_model_with_instances_get_their_diameters_in_the_sr_and_the_report(brain_series, tmp_path):
    (result,) = annotate_inputs(brain_series, _TumourModel(), tmp_path / "out", formats=["dicom-sr", "report"])
    assert result.ok, result.reason
    case = tmp_path / "out" / "brain"
    assert dciodvfy(case / "sr.dcm")[0] == []
    planar = hd.sr.srread(case / "sr.dcm").content.get_planar_roi_measurement_groups()
    diameters = [g.get_measurements()[0].value for g in planar]
    # three lesions: 5 x 6 voxels of 2 mm (twice, split by the model) and 4 x 2 voxels
    assert diameters == pytest.approx([np.hypot(8, 10), np.hypot(8, 10), np.hypot(6, 2)])
    page = (case / "report.html").read_text()
    assert "tumour lesion 1" in page and f"{np.hypot(8, 10):.1f}" in page
    assert len(re.findall(r"<img alt=", page)) == 1 + 3  # the label's slice and one per lesion


@pytest.mark.slow
@pytest.mark.integration
def test_report_needs_no_dicom_but_the_sr_does(tmp_path):
    t1, _ = mni_tissue_block()
    write_image(Image.from_spatial(t1[::2, ::2, ::2].astype(np.float32), spacing=(2.0, 2.0, 2.0)), tmp_path / "t1.nii.gz")
    ok = _invoke("annotate", tmp_path / "t1.nii.gz", "--method", "otsu", "--out", tmp_path / "o", "--format", "report", "-q")
    assert ok.exit_code == 0, ok.output
    assert "otsu_1" in (tmp_path / "o" / "t1" / "report.html").read_text()
    bad = _invoke("annotate", tmp_path / "t1.nii.gz", "--method", "otsu", "--out", tmp_path / "o2", "--format", "dicom-sr", "-q")
    assert bad.exit_code == 2 and "needs a DICOM series input" in bad.output and "--format" in bad.output
    refused = _invoke("convert", tmp_path / "o" / "t1" / "labels.nii.gz", tmp_path / "x.dcm", "--to", "dicom-sr")
    assert refused.exit_code == 2 and "unknown target format" in refused.output
