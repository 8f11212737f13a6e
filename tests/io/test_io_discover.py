import shutil

import nibabel as nib
import numpy as np
import pytest

from iohelpers import MNI_T1, STARDIST_IMG, mni_block, pydicom_test_file, write_dicom_series
from medannot.errors import InputError
from medannot.io import InputItem, discover_inputs
from medannot.io.discover import safe_name


def test_single_file(tmp_path):
    items = discover_inputs(MNI_T1)
    assert len(items) == 1 and items[0].name == "mni_icbm152_t1_tal_nlin_sym_09a_converted"
    case = items[0].load()
    assert case.name == items[0].name and case.image.spatial_shape == (197, 233, 189)


def test_folder_of_files_sorted_hidden_skipped(tmp_path):
    shutil.copy(STARDIST_IMG, tmp_path / "b_nuclei.tif")
    nib.save(nib.Nifti1Image(mni_block(), np.eye(4)), tmp_path / "a brain (1).nii.gz")
    (tmp_path / "._b_nuclei.tif").write_bytes(b"junk")
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    items = discover_inputs(tmp_path)
    assert [i.name for i in items] == ["a_brain_1", "b_nuclei"]
    assert all(isinstance(i, InputItem) for i in items)
    assert items[1].load().image.ndim == 2


def test_dicom_series_folder_one_case(tmp_path):
    folder = tmp_path / "CT head"
    write_dicom_series(folder, mni_block()[:10, :12, :5], (1, 0, 0), (0, 1, 0))
    items = discover_inputs(folder)
    assert len(items) == 1 and items[0].name == "CT_head" and items[0].source == "dicom-series"
    case = items[0].load()
    assert case.image.spatial_shape == (10, 12, 5)
    assert case.identifiers["PatientID"] == "PAT-001" and "SeriesInstanceUID" in case.identifiers


def test_dicom_folder_several_series_named_by_description(tmp_path):
    blk = mni_block()[:10, :12, :5]
    write_dicom_series(tmp_path / "s1", blk, (1, 0, 0), (0, 1, 0), series_uid="1.2.3.1", description="T1 axial", series_number=3)
    write_dicom_series(tmp_path / "s2", blk, (0, 1, 0), (0, 0, -1), series_uid="1.2.3.2", description="../../etc/passwd",
                       series_number=4)  # fmt: skip
    write_dicom_series(tmp_path / "s3", blk[:, :, :2], (1, 0, 0), (0, 1, 0), series_uid="1.2.3.3", description="", series_number=5)
    items = discover_inputs(tmp_path)
    names = sorted(i.name for i in items)
    assert names == ["5", "T1_axial_3", "etc_passwd_4"]
    assert all("/" not in n and ".." not in n for n in names)
    by = {i.name: i for i in items}
    assert by["T1_axial_3"].load().image.spatial_shape == (10, 12, 5)
    assert by["5"].load().image.spatial_shape == (10, 12, 2)


def test_load_errors_name_the_file(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"this is not gzip")
    shutil.copy(STARDIST_IMG, tmp_path / "ok.tif")
    items = discover_inputs(tmp_path)
    assert [i.name for i in items] == ["broken", "ok"]
    with pytest.raises(InputError) as err:
        items[0].load()
    assert str(err.value).startswith(str(tmp_path / "broken.nii.gz")) and "\n" not in str(err.value)
    assert items[1].load().image.array.shape == (1, 512, 512)


def test_single_dicom_file_and_missing(tmp_path):
    items = discover_inputs(pydicom_test_file("CT_small.dcm"))
    assert items[0].name == "CT_small" and items[0].load().image.ndim == 2
    with pytest.raises(InputError, match="not found"):
        discover_inputs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image found"):
        discover_inputs(tmp_path / "empty")


def test_safe_name():
    assert safe_name("../..") == "case"
    assert safe_name("a/b\\c") == "a_b_c"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("1.2.840.10008/../x") == "1.2.840.10008_._x"
    assert safe_name("") == "case" and safe_name("???", "series_2") == "series_2"
