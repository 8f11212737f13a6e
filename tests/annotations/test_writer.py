import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medannot.annotations import LabelMap, Provenance, write_case
from medannot.annotations.results import SegmentationResult
from medannot.annotations.summary import summarise
from medannot.data import Geometry, Image, ImageKind
from medannot.errors import GeometryError


def oblique_geometry() -> Geometry:
    a = np.deg2rad(25)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return Geometry(spacing=(0.9, 1.1, 2.5), origin=(-20, 5, 10), direction=rot @ np.diag([-1, 1, 1]))


def test_summary_sizes_instances_and_boxes_3d():
    g = oblique_geometry()
    lab = np.zeros((20, 16, 8), np.uint8)
    lab[2:5, 3:7, 1:3] = 1  # 3*4*2 = 24 voxels
    lab[10:12, 10:12, 5:6] = 1  # 4 voxels, second instance
    lab[15:18, 1:2, 0:8] = 2  # 24 voxels
    lm = LabelMap.parse({"1": {"name": "lesion"}, "2": {"name": "organ"}, "3": {"name": "absent"}})
    labels, instances, inst_map = summarise(lab, g, lm)
    by_value = {s.value: s for s in labels}
    assert by_value[1].voxels == 28 and by_value[1].instance_count == 2
    assert by_value[1].size == pytest.approx(28 * 0.9 * 1.1 * 2.5)
    assert by_value[3].voxels == 0 and by_value[3].instance_count == 0  # absent labels are listed
    first = instances[0]
    assert first.label == 1 and first.voxels == 24 and first.bbox_voxels == [[2, 4], [3, 6], [1, 2]]
    corners = np.array([[i, j, k] for i in (2, 4) for j in (3, 6) for k in (1, 2)], float)
    world = nib.affines.apply_affine(g.affine, corners)
    np.testing.assert_allclose(np.array(first.bbox_mm)[:, 0], world.min(0), atol=1e-3)
    np.testing.assert_allclose(np.array(first.bbox_mm)[:, 1], world.max(0), atol=1e-3)
    assert sorted(np.unique(inst_map).tolist()) == [0, 1, 2, 3]
    assert (inst_map[lab == 2] == 3).all()


def test_model_instances_are_renumbered_and_kept_separate():
    lab = np.zeros((10, 10), np.uint8)
    lab[2:8, 2:8] = 1
    split = np.zeros_like(lab, dtype=np.int32)
    split[2:8, 2:5] = 7
    split[2:8, 5:8] = 9  # two touching instances a connected-component pass would merge
    _, instances, inst_map = summarise(lab, Geometry((0.5, 0.5)), LabelMap.parse({1: "cell"}), {1: split})
    assert [i.id for i in instances] == [1, 2]
    assert [i.size for i in instances] == [pytest.approx(18 * 0.25)] * 2
    assert set(np.unique(inst_map)) == {0, 1, 2}


def test_write_case_3d_round_trip(tmp_path):
    g = oblique_geometry()
    rng = np.random.default_rng(0)
    image = Image.from_spatial(rng.normal(size=(20, 16, 8)).astype(np.float32), g)
    lab = np.zeros((20, 16, 8), np.uint8)
    lab[4:9, 4:9, 2:5] = 1
    lab[12:15, 2:6, 3:7] = 2
    labels = Image.from_spatial(lab, g, kind="label")
    lm = LabelMap.parse({"1": {"name": "grey matter", "color": [255, 0, 0]}, "2": "white matter"})
    ann = write_case(tmp_path, "case01", image, SegmentationResult(labels=labels, label_map=lm), Provenance("model", "m", "1.0", "abc", {"tta": True}))
    folder = tmp_path / "case01"
    nii = nib.load(folder / "labels.nii.gz")
    np.testing.assert_array_equal(np.asarray(nii.dataobj), lab)
    np.testing.assert_allclose(nii.affine, g.affine, atol=1e-6)
    assert nii.get_data_dtype() == np.uint8
    meta = json.loads((folder / "annotation.json").read_text())
    assert meta["provenance"]["name"] == "m" and meta["provenance"]["parameters"] == {"tta": True}
    assert meta["size_unit"] == "mm3"
    assert {lab["name"]: lab["voxels"] for lab in meta["labels"]} == {"grey matter": 75, "white matter": 48}
    for plane in ("axial", "coronal", "sagittal"):
        assert (folder / f"overlay_{plane}.png").stat().st_size > 0
    assert ann.case == "case01"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_write_case_2d_png_and_replaces_previous(tmp_path):
    image = Image(np.random.default_rng(1).integers(0, 255, (3, 30, 40)).astype(np.uint8), Geometry((0.5, 0.5)))
    lab = np.zeros((30, 40), np.uint8)
    lab[5:10, 5:15] = 1
    labels = Image.from_spatial(lab, image.geometry, kind=ImageKind.LABEL)
    lm = LabelMap.parse({1: "nucleus"})
    write_case(tmp_path, "img", image, SegmentationResult(labels=labels, label_map=lm), Provenance("classical", "otsu"))
    (tmp_path / "img" / "stale.txt").write_text("old run")
    write_case(tmp_path, "img", image, SegmentationResult(labels=labels, label_map=lm), Provenance("classical", "otsu"))
    folder = tmp_path / "img"
    assert not (folder / "stale.txt").exists()
    np.testing.assert_array_equal(np.asarray(PILImage.open(folder / "labels.png")), lab)
    overlay = np.asarray(PILImage.open(folder / "overlay.png"))
    assert overlay.ndim == 3 and overlay.shape[2] == 3
    meta = json.loads((folder / "annotation.json").read_text())
    assert meta["size_unit"] == "mm2" and meta["labels"][0]["size"] == pytest.approx(50 * 0.25)
    assert meta["instances"][0]["bbox_voxels"] == [[5, 9], [5, 14]]


def test_write_case_refuses_other_grid_and_leaves_nothing(tmp_path):
    image = Image.from_spatial(np.zeros((8, 8, 8), np.float32), spacing=(1, 1, 1))
    labels = Image.from_spatial(np.zeros((8, 8, 8), np.uint8), spacing=(1, 1, 2), kind="label")
    with pytest.raises(GeometryError, match="different grids"):
        write_case(tmp_path, "c", image, SegmentationResult(labels=labels, label_map=LabelMap.parse({1: "x"})), Provenance("model", "m"))
    assert list(tmp_path.iterdir()) == []
