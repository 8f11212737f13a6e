"""`medannot annotate --format dicom-seg,rtstruct` and `medannot convert`, end to end through the CLI.

The series are real volumes (MNI152 T1) written as DICOM; the SEG and RTSTRUCT files are checked by
the external validator (dciodvfy) and read back to exactly the labels written as NIfTI.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from dicomout_helpers import dciodvfy, mni_tissue_block, write_clinical_series
from iohelpers import MNI_T1
from medannot.annotations.dicom_grid import load_source_datasets, series_grid
from medannot.annotations.dicom_seg import read_dicom_seg
from medannot.annotations.rtstruct import read_rtstruct
from medannot.cli import app
from medannot.io import read_image, write_image
from medannot.models.bundle import Bundle
from medannot.transforms.spatial import reorient

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """The bundled brain-mri model on a small real brain series (2 mm, 50 x 60 x 24), with SEG and RTSTRUCT out."""
    root = tmp_path_factory.mktemp("dicom_outputs")
    t1 = np.asanyarray(nib.load(MNI_T1).dataobj)[50:150:2, 60:180:2, 70:118:2].astype(np.int16)
    write_clinical_series(root / "brain", t1, row_cos=(1, 0, 0), col_cos=(0, 1, 0), pixel_spacing=(2.0, 2.0), slice_step=2.0,
                          origin=(-50.0, -70.0, -10.0), reverse_files=True)  # fmt: skip
    result = _invoke("annotate", root / "brain", "--model", "brain-mri", "--out", root / "out", "--format", "dicom-seg",
                     "--format", "rtstruct", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    return root, root / "out" / "brain"


@pytest.mark.slow
@pytest.mark.integration
def test_annotate_writes_seg_and_rtstruct_next_to_the_nifti(annotated):
    root, case = annotated
    assert {"labels.nii.gz", "seg.dcm", "rtstruct.dcm", "annotation.json"} <= {p.name for p in case.iterdir()}
    meta = json.loads((case / "annotation.json").read_text())
    assert meta["files"]["dicom_seg"] == "seg.dcm" and meta["files"]["rtstruct"] == "rtstruct.dcm"
    labels = read_image(case / "labels.nii.gz", kind="label")
    assert {1, 2} <= set(np.unique(labels.array).tolist())  # the model found both tissues
    sources = load_source_datasets(root / "brain")
    grid = series_grid(sources)

    errors, _ = dciodvfy(case / "seg.dcm")
    assert errors == []
    seg = read_dicom_seg(case / "seg.dcm", *grid)
    np.testing.assert_array_equal(seg.array, labels.array)
    ds = pydicom.dcmread(case / "seg.dcm")
    bundle = Bundle.load("brain-mri")
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["grey matter", "white matter"]
    algo = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == (bundle.name, bundle.version)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID

    errors, _ = dciodvfy(case / "rtstruct.dcm")
    assert errors == []
    rt = read_rtstruct(case / "rtstruct.dcm", *grid)
    np.testing.assert_array_equal(rt.array, labels.array)


@pytest.mark.slow
@pytest.mark.integration
def test_convert_round_trips_between_nifti_seg_and_rtstruct(annotated, tmp_path):
    root, case = annotated
    labels = read_image(case / "labels.nii.gz", kind="label")
    series = root / "brain"
    steps = [
        ("labels.nii.gz", "a_seg.dcm", ["--model", "brain-mri"]),
        ("a_seg.dcm", "b.nii.gz", []),
        ("labels.nii.gz", "c_rt.dcm", ["--to", "rtstruct", "--labels", "1=grey matter,2=white matter"]),
        ("c_rt.dcm", "d.nii.gz", []),
        ("a_seg.dcm", "e_rt.dcm", ["--to", "rtstruct"]),
        ("e_rt.dcm", "f_seg.dcm", []),
        ("f_seg.dcm", "g.nii.gz", []),
    ]
    for src, dst, extra in steps:
        source = case / src if src == "labels.nii.gz" else tmp_path / src
        result = _invoke("convert", source, tmp_path / dst, "--reference", series, *extra)
        assert result.exit_code == 0, (src, dst, result.output)
    for name in ("b.nii.gz", "d.nii.gz", "g.nii.gz"):
        back = read_image(tmp_path / name, kind="label")
        assert back.same_grid(labels)
        np.testing.assert_array_equal(back.array, labels.array)
    for name in ("a_seg.dcm", "c_rt.dcm", "e_rt.dcm", "f_seg.dcm"):
        assert dciodvfy(tmp_path / name)[0] == []
    # names and the algorithm travel: --model names it AUTOMATIC brain-mri; the RTSTRUCT -> SEG keeps that
    f_seg = pydicom.dcmread(tmp_path / "f_seg.dcm")
    assert [s.SegmentLabel for s in f_seg.SegmentSequence] == ["grey matter", "white matter"]
    assert f_seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert f_seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "brain-mri"


def _tissue_series(tmp_path: Path) -> tuple[Path, object]:
    t1, tissue = mni_tissue_block()
    crop = (slice(4, 28), slice(6, 34), slice(8, 20))
    opts = dict(row_cos=(0, 1, 0), col_cos=(0, 0, -1), pixel_spacing=(0.9, 0.7), slice_step=1.5)  # sagittal
    write_clinical_series(tmp_path / "series", t1[crop], **opts)
    frame_uid = pydicom.dcmread(next((tmp_path / "series").iterdir())).FrameOfReferenceUID
    write_clinical_series(tmp_path / "truth", tissue[crop].astype(np.int16), frame_uid, **opts)
    return tmp_path / "series", read_image(tmp_path / "truth", kind="label")


def test_convert_moves_reoriented_nifti_onto_the_series_exactly(tmp_path):
    series, labels = _tissue_series(tmp_path)
    ras = reorient(labels, "RAS")  # same voxels, other axis order: what many tools write
    assert ras.spatial_shape != labels.spatial_shape or not ras.geometry.isclose(labels.geometry)
    write_image(ras, tmp_path / "ras.nii.gz")
    result = _invoke("convert", tmp_path / "ras.nii.gz", tmp_path / "seg.dcm", "--reference", series,
                     "--labels", "1=grey matter,2=white matter")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert dciodvfy(tmp_path / "seg.dcm")[0] == []
    back = read_dicom_seg(tmp_path / "seg.dcm", *series_grid(load_source_datasets(series)))
    np.testing.assert_array_equal(back.array, labels.array)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"  # converting claims no model
    assert "SegmentationAlgorithmIdentificationSequence" not in ds.SegmentSequence[0]


def test_convert_and_annotate_refuse_with_one_line_errors(tmp_path):
    series, labels = _tissue_series(tmp_path)
    write_image(labels, tmp_path / "labels.nii.gz")
    assert _invoke("convert", tmp_path / "labels.nii.gz", tmp_path / "rt.dcm", "--reference", series, "--to", "rtstruct").exit_code == 0
    cases = [
        (["convert", tmp_path / "rt.dcm", tmp_path / "x.nii.gz"], "--reference SERIES_DIR"),
        (["convert", tmp_path / "labels.nii.gz", tmp_path / "x.dcm"], "--reference SERIES_DIR"),
        (["convert", tmp_path / "labels.nii.gz", tmp_path / "x.nii.gz"], "nothing to convert"),
        (["convert", tmp_path / "labels.nii.gz", tmp_path / "x.dcm", "-r", series, "--labels", "one=liver"], "not an integer"),
        (["convert", next(series.iterdir()), tmp_path / "x.nii.gz"], "neither a SEG nor an RTSTRUCT"),
        (["annotate", tmp_path / "labels.nii.gz", "--method", "otsu", "--out", tmp_path / "o", "--format", "dicom-seg", "-q"],
         "needs a DICOM series input"),
        (["annotate", series, "--method", "otsu", "--out", tmp_path / "o", "--format", "dicom-sg", "-q"], "unknown output format"),
    ]  # fmt: skip
    for args, message in cases:
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        errors = [ln for ln in result.output.splitlines() if "error" in ln or "skipped" in ln]
        assert errors and message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "labels").exists()  # the NIfTI case asked for a SEG was skipped, not half-written


def test_annotate_classical_method_on_a_series_writes_a_valid_seg(tmp_path):
    series, _ = _tissue_series(tmp_path)
    result = _invoke("annotate", series, "--method", "otsu", "--out", tmp_path / "o", "--format", "dicom-seg", "-q")
    assert result.exit_code == 0, result.output
    case = tmp_path / "o" / "series"
    assert dciodvfy(case / "seg.dcm")[0] == []
    labels = read_image(case / "labels.nii.gz", kind="label")
    back = read_dicom_seg(case / "seg.dcm", *series_grid(load_source_datasets(series)))
    np.testing.assert_array_equal(back.array, labels.array)
    algo = pydicom.dcmread(case / "seg.dcm").SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "otsu"


def test_convert_real_liver_seg_to_nifti(tmp_path):
    import data_store

    liver = Path(data_store.__file__).parent / "data" / "liver.dcm"
    result = _invoke("convert", liver, tmp_path / "liver.nii.gz")
    assert result.exit_code == 0, result.output
    nifti = read_image(tmp_path / "liver.nii.gz", kind="label")
    direct = read_dicom_seg(liver)
    assert nifti.same_grid(direct, atol=1e-4)  # NIfTI stores the affine in float32
    np.testing.assert_array_equal(nifti.array, direct.array)
    assert int(nifti.array.sum()) == int(pydicom.dcmread(liver).pixel_array.sum())
