"""Training boxes from label patches: instances vs components, and slivers cut off by the patch edge
(``detection.boxes.min_extent``) left out of training but kept in the validation truth."""

from pathlib import Path

import numpy as np
import pytest
from skimage.measure import label as cc_label
from skimage.measure import regionprops

from medannot.data import Geometry, Image
from medannot.data.image import ImageKind
from medannot.models.detection_spec import BoxSource
from medannot.training.config import load_config
from medannot.training.detection_trainer import label_patch_boxes, truth_boxes
from medannot.training.sources import ValidationCase


def _patch() -> np.ndarray:
    lab = np.zeros((40, 40), dtype=np.int64)
    lab[0:12, 0:2] = 1  # a nucleus cut by the top-left patch edge: 2 px visible
    lab[10:25, 10:24] = 2  # a whole nucleus
    lab[37:40, 20:35] = 3  # cut by the bottom edge: 3 px visible
    lab[30:36, 2:6] = 4  # small but whole: 6 x 4 px
    return lab


def test_instances_give_one_box_per_id_as_regionprops():
    boxes, classes = label_patch_boxes(_patch(), BoxSource(mode="instances"))
    np.testing.assert_array_equal(boxes, [r.bbox for r in regionprops(_patch())])
    assert classes.tolist() == [0, 0, 0, 0] and boxes.dtype == np.float32


def test_components_give_one_box_per_connected_component_with_the_label_as_class():
    lab = np.zeros((30, 30), dtype=np.int64)
    lab[2:6, 2:6] = 1
    lab[10:14, 10:14] = 1
    lab[20:25, 3:9] = 2
    boxes, classes = label_patch_boxes(lab, BoxSource(mode="components"))
    expected = sorted((r.bbox, v - 1) for v in (1, 2) for r in regionprops(cc_label(lab == v)))
    assert sorted(zip(map(tuple, boxes.astype(int).tolist()), classes.tolist())) == expected


def test_min_extent_leaves_out_slivers_from_training_but_the_truth_keeps_them():
    lab = _patch()
    kept, _ = label_patch_boxes(lab, BoxSource(min_extent=4))
    np.testing.assert_array_equal(kept, [[10, 10, 25, 24], [30, 2, 36, 6]])  # the 2 px and 3 px slivers are gone
    assert len(label_patch_boxes(lab, BoxSource(min_extent=5))[0]) == 1  # the 6 x 4 px nucleus is thinner than 5
    assert len(label_patch_boxes(np.zeros((8, 8), int), BoxSource(min_extent=4))[0]) == 0
    truth = Image(lab[None].astype(np.uint16), Geometry(spacing=(1.0, 1.0)), ImageKind.LABEL)
    boxes, values = truth_boxes(ValidationCase("patch", truth, truth, instances=lab), BoxSource(min_extent=4))
    assert len(boxes) == 4 and values.tolist() == [1, 1, 1, 1]


def test_min_extent_is_validated_and_read_from_the_nuclei_detect_config():
    with pytest.raises(ValueError):
        BoxSource(min_extent=0)
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "nuclei_detect.yaml", {})
    assert cfg.detection.boxes.min_extent == 4


def test_config_without_min_extent_keeps_every_sliver():
    source = BoxSource.model_validate({"mode": "instances", "min_voxels": 1})
    assert source.min_extent == 1 and len(label_patch_boxes(_patch(), source)[0]) == 4
    with pytest.raises(ValueError):
        BoxSource.model_validate({"mode": "instances", "min_size": 3})  # unknown keys are refused
