"""`medannot annotate` on the files people get from 3D Slicer, ITK-SNAP and FreeSurfer (NRRD, MetaImage, MGZ,
NIfTI-2), and `--format nrrd`: labels.seg.nrrd that SimpleITK reads on the input's grid (same geometry as the input
read by SimpleITK), with the same voxels as labels.nii.gz."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from iohelpers import mni_block, rotation
from medannot.cli import app
from medannot.io import read_image

runner = CliRunner()

ROT = rotation(8.0, -12.0, 20.0) @ np.diag([1.0, -1.0, 1.0])
SPACING = (0.9, 1.1, 2.0)
ORIGIN_RAS = (-40.0, 25.5, 10.0)


def _affine():
    aff = np.eye(4)
    aff[:3, :3] = ROT * np.asarray(SPACING)[None, :]
    aff[:3, 3] = ORIGIN_RAS
    return aff


def _write_input(path):
    data = mni_block()[:40, :36, :14].astype(np.int16)
    name = path.name.lower()
    if name.endswith((".mgz", ".mgh")):
        nib.save(nib.MGHImage(data.astype(np.float32), _affine()), path)
    elif name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti2Image(data, _affine()), path)
    else:
        img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
        img.SetSpacing(SPACING)
        flip = np.diag([-1.0, -1.0, 1.0])
        img.SetOrigin(list(flip @ np.asarray(ORIGIN_RAS)))
        img.SetDirection(list((flip @ ROT).ravel()))
        sitk.WriteImage(img, str(path), useCompression=name.endswith((".nrrd", ".mha")))
    return data


@pytest.mark.integration
@pytest.mark.parametrize("name", ["lesion.nrrd", "lesion.nhdr", "lesion.mha", "lesion.mhd", "lesion.mgz", "lesion.nii"])
def test_annotate_reads_the_format(tmp_path, name):
    (tmp_path / "in").mkdir()
    _write_input(tmp_path / "in" / name)
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(tmp_path / "in" / name), "--method", "otsu", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    labels = nib.load(out / "lesion" / "labels.nii.gz")
    np.testing.assert_allclose(labels.affine, _affine(), atol=1e-4)  # the input's grid, whatever the format
    assert labels.shape == (40, 36, 14) and np.asanyarray(labels.dataobj).any()


@pytest.mark.integration
def test_format_nrrd_writes_a_slicer_segmentation_on_the_input_grid(tmp_path):
    src = tmp_path / "lesion.nrrd"
    _write_input(src)
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(src), "--method", "otsu", "--format", "nrrd", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    seg = sitk.ReadImage(str(out / "lesion" / "labels.seg.nrrd"))
    ref = sitk.ReadImage(str(src))
    assert seg.GetSize() == ref.GetSize()
    np.testing.assert_allclose(seg.GetOrigin(), ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(seg.GetSpacing(), ref.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(seg.GetDirection(), ref.GetDirection(), atol=1e-9)
    nifti = np.asanyarray(nib.load(out / "lesion" / "labels.nii.gz").dataobj)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg).transpose(2, 1, 0), nifti)
    assert seg.GetMetaData("Segment0_LabelValue") == "1" and seg.GetPixelID() == sitk.sitkUInt8
    assert read_image(out / "lesion" / "labels.seg.nrrd", kind="label").same_grid(read_image(src))
    import json

    files = json.loads((out / "lesion" / "annotation.json").read_text())["files"]
    assert files["labels_nrrd"] == "labels.seg.nrrd"
