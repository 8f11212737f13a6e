"""`medannot annotate` on each kind of input a user hands over: DICOM series folder, dataset folder, NIfTI file."""

import json

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from iohelpers import mni_block, write_dicom_series
from medannot.classical import run_method
from medannot.cli import app
from medannot.io import read_image

runner = CliRunner()


def test_dicom_series_folder_annotated_on_its_own_grid(tmp_path):
    series = tmp_path / "series"
    # a sagittal acquisition with non-square pixels, files written in reverse order
    write_dicom_series(
        series, mni_block()[:, :, ::2], row_cos=(0, 1, 0), col_cos=(0, 0, -1), pixel_spacing=(1.0, 0.8),
        slice_step=2.0, origin=(-20, -30, 40), reverse_files=True,
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(series), "--method", "otsu", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    source = read_image(series)
    labels = nib.load(out / "series" / "labels.nii.gz")
    assert labels.shape == source.spatial_shape
    np.testing.assert_allclose(labels.affine, source.affine, atol=1e-4)
    # the label map overlays the source voxel for voxel: the same method on the in-memory series gives the same mask
    expected = run_method("otsu", source).scalar()
    assert 0.2 < expected.mean() < 0.9
    assert np.array_equal(np.asarray(labels.dataobj), expected)
    meta = json.loads((out / "series" / "annotation.json").read_text())
    assert meta["provenance"]["input"]["source"] == "dicom-series"
    assert meta["provenance"]["input"]["SeriesInstanceUID"] == source.meta["SeriesInstanceUID"]


def test_dataset_folder_annotated_and_evaluated(tmp_path):
    root = tmp_path / "Dataset001_Brain"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    block = mni_block().astype(np.float32)
    for i, sl in enumerate((slice(0, 20), slice(20, 40))):
        vol = block[sl]
        aff = np.diag([1.0, 1.0, 1.0, 1.0])
        aff[0, 3] = sl.start
        nib.save(nib.Nifti1Image(vol, aff), root / "imagesTr" / f"brain_{i:03d}_0000.nii.gz")
        nib.save(nib.Nifti1Image((vol > 60).astype(np.uint8), aff), root / "labelsTr" / f"brain_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "labels": {"background": 0, "tissue": 1}, "numTraining": 2, "file_ending": ".nii.gz",
    }))
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(root), "--method", "threshold", "-p", "lower=60.0001", "-p", "upper=1e9", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["brain_000", "brain_001"]
    ev = tmp_path / "ev"
    result = runner.invoke(app, ["evaluate", str(out), str(root / "labelsTr"), "--out", str(ev), "--labels", '{"1": "tissue"}'])
    assert result.exit_code == 0, result.output
    rows = json.loads((ev / "metrics.json").read_text())["rows"]
    assert [r["dice"] for r in rows] == [1.0, 1.0]  # the same rule gives the same mask
