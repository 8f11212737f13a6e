"""NIfTI qform/sform codes are kept as they came: the reader records them, the label files of a NIfTI input carry
the same codes (checked with nibabel)."""

import nibabel as nib
import numpy as np
import pytest

from iohelpers import mni_block
from medannot.data import Geometry, Image, ImageKind
from medannot.io import read_image, write_image
from medannot.tasks.segmentation import ClassicalSegmenter
from medannot.workflows.annotate import annotate_inputs

AFFINE = np.array([[0.0, -1.2, 0.0, 40.0], [1.1, 0.0, 0.0, -30.0], [0.0, 0.0, 2.0, 12.5], [0.0, 0.0, 0.0, 1.0]])


def _nifti(path, qcode, scode, affine=AFFINE):
    img = nib.Nifti1Image(mni_block()[:24, :20, :10].astype(np.int16), affine)
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    nib.save(img, path)
    return path


@pytest.mark.parametrize(("qcode", "scode"), [(0, 4), (1, 0), (2, 3), (1, 1), (4, 2)])
def test_annotated_labels_keep_the_input_codes(tmp_path, qcode, scode):
    (tmp_path / "in").mkdir()
    src = _nifti(tmp_path / "in" / "t1.nii.gz", qcode, scode)
    im = read_image(src)
    assert (im.meta["nifti_qform_code"], im.meta["nifti_sform_code"]) == (qcode, scode)
    results = annotate_inputs(src, ClassicalSegmenter("otsu", {}, progress=False), tmp_path / "out")
    assert results[0].ok, results[0].reason
    for name in ("labels.nii.gz", "instances.nii.gz"):
        hdr = nib.load(tmp_path / "out" / "t1" / name).header
        assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (qcode, scode), name
        np.testing.assert_allclose(nib.load(tmp_path / "out" / "t1" / name).affine, nib.load(src).affine, atol=1e-5)


def test_writer_codes(tmp_path):
    im = read_image(_nifti(tmp_path / "a.nii.gz", 0, 4))
    back = nib.load(write_image(im.with_array(im.array), tmp_path / "b.nii.gz")).header
    assert (int(back["qform_code"]), int(back["sform_code"])) == (0, 4)
    plain = Image(np.zeros((1, 3, 4, 5), np.uint8), Geometry.from_affine(AFFINE), ImageKind.LABEL)
    hdr = nib.load(write_image(plain, tmp_path / "c.nii.gz")).header  # not from NIfTI: scanner / aligned
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 2)
    none = read_image(_nifti(tmp_path / "d.nii.gz", 0, 0))  # both unknown: nibabel's default placement
    out = nib.load(write_image(none, tmp_path / "e.nii.gz"))
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (0, 0)
    np.testing.assert_allclose(out.affine, nib.load(tmp_path / "d.nii.gz").affine, atol=1e-5)
    moved = Image(none.array, Geometry.from_affine(AFFINE), meta=dict(none.meta))  # codes 0 cannot place this grid
    hdr = nib.load(write_image(moved, tmp_path / "f.nii.gz"))
    assert (int(hdr.header["qform_code"]), int(hdr.header["sform_code"])) == (1, 2)
    np.testing.assert_allclose(hdr.affine, AFFINE, atol=1e-5)
