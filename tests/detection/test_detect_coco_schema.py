"""One annotation schema with boxes (IDs consistent, validates against the pydantic model) and COCO
outputs that pycocotools loads, evaluated equal to medannot's own AP."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from typer.testing import CliRunner

from medannot.annotations.coco import coco_ground_truth, coco_results, pycocotools_eval, read_coco_truth, to_coco_bbox
from medannot.annotations.schema import annotation_json_schema, validate_annotation
from medannot.cli import app
from medannot.errors import InputError
from medannot.evaluation.detection import average_precision

runner = CliRunner()


@pytest.fixture(scope="module")
def seg_case(cells_png, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    result = runner.invoke(app, ["annotate", str(cells_png), "--model", "nuclei", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out / "cells"


def test_segmentation_instances_yield_boxes_with_ids_scores_and_names(seg_case):
    data = json.loads((seg_case / "annotation.json").read_text())
    ann = validate_annotation(data)
    assert len(ann.boxes) == len(ann.instances) > 3
    by_id = {i.id: i for i in ann.instances}
    for box in ann.boxes:
        inst = by_id[box.instance_id]
        assert box.source == "instance" and box.label == inst.label and box.label_name == inst.label_name == "nucleus"
        assert box.score == inst.score and 0.5 < box.score <= 1.0  # mean foreground probability inside the instance
        # The box bounds exactly the instance's voxels (exclusive max corner).
        assert box.box_voxels == [inst.bbox_voxels[0][0], inst.bbox_voxels[1][0], inst.bbox_voxels[0][1] + 1, inst.bbox_voxels[1][1] + 1]
    assert ann.labels[0].box_count == len(ann.boxes)
    assert {"overlay_boxes", "boxes_coco"} <= set(data["files"])


def test_coco_file_loads_in_pycocotools_and_its_annotations_load_as_results(seg_case):
    data = json.loads((seg_case / "annotation.json").read_text())
    coco = COCO(str(seg_case / "boxes.coco.json"))
    assert coco.getCatIds() == [1] and coco.loadCats(1)[0]["name"] == "nucleus"
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(data["boxes"])
    img = coco.loadImgs(1)[0]
    assert (img["height"], img["width"]) == (128, 128)
    first = data["boxes"][0]
    np.testing.assert_allclose(anns[0]["bbox"], to_coco_bbox(np.array([first["box_voxels"]]))[0])
    results = json.loads((seg_case / "boxes.coco.json").read_text())["annotations"]
    dt = coco.loadRes(results)
    assert len(dt.getAnnIds()) == len(results) and all("score" in a for a in results)


def test_medannot_ap_equals_pycocotools_on_the_same_boxes():
    rng = np.random.default_rng(5)
    cases, dets, gts = [], [], []
    for i in range(4):
        lo = rng.uniform(0, 80, size=(6, 2))
        truth = np.concatenate([lo, lo + rng.uniform(4, 20, size=(6, 2))], axis=1)
        pred = truth + rng.normal(0, 2.0, truth.shape)
        pred = np.concatenate([pred, truth[:2] + 30], axis=0).clip(0, 100)
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        scores = rng.uniform(0, 1, len(pred))
        cases.append((f"im{i}.png", (100, 100), truth, np.ones(6, int)))
        dets.append((pred, scores, np.ones(len(pred), int)))
        gts.append((truth, np.ones(6, int)))
    stats = pycocotools_eval(coco_ground_truth(cases, {1: "nucleus"}), coco_results([(i + 1, *d) for i, d in enumerate(dets)]))
    ours = average_precision(dets, gts)
    assert ours["ap"] == pytest.approx(stats[0], abs=1e-9) and ours["ap50"] == pytest.approx(stats[1], abs=1e-9)


def test_schema_rejects_inconsistent_ids_and_names(seg_case):
    data = json.loads((seg_case / "annotation.json").read_text())
    bad = json.loads(json.dumps(data))
    bad["boxes"][0]["instance_id"] = 9999
    with pytest.raises(InputError, match="refers to instance 9999, which does not exist"):
        validate_annotation(bad)
    bad = json.loads(json.dumps(data))
    bad["boxes"][1]["label_name"] = "tumour"
    with pytest.raises(InputError, match="named 'tumour' but label 1 is 'nucleus'"):
        validate_annotation(bad)
    bad = json.loads(json.dumps(data))
    bad["boxes"][0]["box_voxels"] = "oops"
    with pytest.raises(InputError, match=r"does not follow the schema: boxes\.0\.box_voxels"):
        validate_annotation(bad)
    schema = annotation_json_schema()
    assert {"boxes", "instances", "labels", "provenance"} <= set(schema["properties"])


def test_coco_truth_with_boxes_outside_the_image_or_unknown_categories_is_refused(tmp_path):
    gt = coco_ground_truth([("a.png", (50, 60), np.array([[10, 10, 20, 20.0]]), np.array([1]))], {1: "nucleus"})
    good = tmp_path / "good.json"
    good.write_text(json.dumps(gt))
    per, cats = read_coco_truth(good)
    np.testing.assert_array_equal(per["a"][1], [[10, 10, 20, 20]])
    assert cats == {1: "nucleus"} and per["a"][0] == (50, 60)
    gt["annotations"][0]["bbox"] = [55.0, 10.0, 10.0, 10.0]  # x 55..65 > width 60
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(gt))
    with pytest.raises(InputError, match=r"outside\.json: COCO image 'a\.png' \(id 1\) ground-truth boxes: box 0 .* lies outside the image of \[50, 60\]"):
        read_coco_truth(outside)
    gt["annotations"][0].update(bbox=[1, 1, 2, 2], category_id=7)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(gt))
    with pytest.raises(InputError, match="unknown category_id 7"):
        read_coco_truth(unknown)
