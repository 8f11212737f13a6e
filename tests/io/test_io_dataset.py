import json

import nibabel as nib
import numpy as np
import pytest

from iohelpers import mni_block
from medannot.errors import GeometryError, InputError
from medannot.io import discover_inputs
from medannot.io.dataset import load_dataset_case, open_dataset, parse_label_map


def _save(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 2.0, 1.0]) if affine is None else affine), path)


def _labels(block):
    return (block > np.percentile(block, 60)).astype(np.uint8) + (block > np.percentile(block, 85)).astype(np.uint8)


@pytest.fixture
def msd(tmp_path):
    root = tmp_path / "Task01_Test"
    blk = mni_block()
    for i in range(2):
        vol = blk[i * 10 : i * 10 + 16, :16, :8]
        _save(root / "imagesTr" / f"case_{i:03d}.nii.gz", np.stack([vol, 2 * vol], axis=-1))  # 4D, 2 channels
        _save(root / "labelsTr" / f"case_{i:03d}.nii.gz", _labels(vol))
    _save(root / "imagesTs" / "case_100.nii.gz", np.stack([blk[:16, :16, :8]] * 2, axis=-1))
    (root / "imagesTr" / "._case_000.nii.gz").write_bytes(b"junk")
    meta = {
        "name": "TestTask",
        "modality": {"0": "T1", "1": "T1x2"},
        "labels": {"0": "background", "1": "tissue", "2": "bright"},
        "numTraining": 2,
        "numTest": 1,
        "training": [{"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"} for i in range(2)],
        "test": ["./imagesTs/case_100.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.fixture
def nnunet(tmp_path):
    root = tmp_path / "Dataset001_Test"
    blk = mni_block()
    for name in ("brainA", "brainB"):
        vol = blk[:12, :14, :6] if name == "brainA" else blk[5:17, :14, :6]
        _save(root / "imagesTr" / f"{name}_0000.nii.gz", vol)
        _save(root / "imagesTr" / f"{name}_0001.nii.gz", (vol // 2).astype(np.int16))
        _save(root / "labelsTr" / f"{name}.nii.gz", _labels(vol))
    _save(root / "imagesTs" / "brainC_0000.nii.gz", blk[:12, :14, :6])
    _save(root / "imagesTs" / "brainC_0001.nii.gz", blk[:12, :14, :6])
    meta = {"channel_names": {"0": "T1", "1": "half"}, "labels": {"background": 0, "tissue": 1, "bright": 2, "all": [1, 2]},
            "numTraining": 2, "file_ending": ".nii.gz"}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_label_map_both_forms():
    assert parse_label_map({"0": "background", "1": "liver", "2": "tumour"}) == {0: "background", 1: "liver", 2: "tumour"}
    assert parse_label_map({"background": 0, "liver": 1, "tumour": 2, "liver+tumour": [1, 2]}) == {
        0: "background", 1: "liver", 2: "tumour"}  # fmt: skip
    with pytest.raises(InputError, match="named twice"):
        parse_label_map({"a": 1, "b": 1})
    with pytest.raises(InputError, match="neither"):
        parse_label_map({"a": "b"})


def test_msd_layout(msd):
    layout = open_dataset(msd)
    assert layout.name == "TestTask" and layout.labels == {0: "background", 1: "tissue", 2: "bright"}
    assert layout.channel_names == {0: "T1", 1: "T1x2"}
    assert [(c.name, c.split, c.label is not None) for c in layout.cases] == [
        ("case_000", "train", True), ("case_001", "train", True), ("case_100", "test", False)]  # fmt: skip
    case = load_dataset_case(layout.cases[1], layout)
    img, lab = case["image"], case["label"]
    assert img.array.shape == (2, 16, 16, 8) and lab.is_label and lab.array.dtype == np.uint8
    blk = mni_block()
    np.testing.assert_array_equal(img.array[1], 2 * blk[10:26, :16, :8])
    np.testing.assert_array_equal(lab.array[0], _labels(blk[10:26, :16, :8]))
    assert case.meta["labels"][2] == "bright"


def test_nnunet_layout_channels(nnunet):
    layout = open_dataset(nnunet)
    assert layout.labels == {0: "background", 1: "tissue", 2: "bright"} and layout.file_ending == ".nii.gz"
    assert [(c.name, c.split, len(c.images)) for c in layout.cases] == [
        ("brainA", "train", 2), ("brainB", "train", 2), ("brainC", "test", 2)]  # fmt: skip
    case = load_dataset_case(layout.cases[0], layout)
    blk = mni_block()[:12, :14, :6]
    np.testing.assert_array_equal(case["image"].array[0], blk)
    np.testing.assert_array_equal(case["image"].array[1], blk // 2)
    assert "label" in case and case["label"].spatial_shape == (12, 14, 6)


def test_discover_dataset(nnunet):
    items = discover_inputs(nnunet)
    assert [i.name for i in items] == ["brainA", "brainB", "brainC"]
    case = items[1].load()
    assert set(case.images) == {"image", "label"} and case.meta["split"] == "train"
    assert "label" not in items[2].load()


def test_label_on_other_grid_refused(nnunet):
    _save(nnunet / "labelsTr" / "brainA.nii.gz", np.zeros((12, 14, 6), np.uint8), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(GeometryError, match="different grid") as err:
        discover_inputs(nnunet)[0].load()
    assert str(err.value).startswith(str(nnunet / "labelsTr" / "brainA.nii.gz"))


def test_bad_dataset_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read dataset.json"):
        open_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {}, "training": [{"image": "../outside.nii.gz"}]}))
    with pytest.raises(InputError, match="outside the dataset"):
        open_dataset(tmp_path)
