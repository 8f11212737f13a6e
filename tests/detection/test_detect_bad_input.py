"""Bad input around boxes: boxes outside the image, unknown class names, a label map that does not fit the
bundle, options a detector does not have. One-line errors (exit code 2), nothing written half."""

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from medannot.annotations.coco import coco_ground_truth
from medannot.cli import app

runner = CliRunner()


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("medannot: error: ") and "\n" not in err and "Traceback" not in result.output, err
    for n in needles:
        assert n in err, err
    return err


def _annotate(image, bundle, out):
    result = runner.invoke(app, ["annotate", str(image), "--model", str(bundle), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out / "cells"


def test_detection_bundle_annotates_with_boxes_coco_and_overlay(cells_png, tiny_detect_bundle, tmp_path):
    from pycocotools.coco import COCO

    from medannot.annotations.schema import validate_annotation

    case = _annotate(cells_png, tiny_detect_bundle, tmp_path / "out")
    assert sorted(p.name for p in case.iterdir()) == ["annotation.json", "boxes.coco.json", "overlay_boxes.png"]
    ann = validate_annotation(json.loads((case / "annotation.json").read_text()))
    assert len(ann.boxes) == 25 and ann.instances == [] and ann.provenance.task == "detection"
    assert all(b.source == "detector" and b.instance_id is None and b.label_name == "nucleus" for b in ann.boxes)
    scores = [b.score for b in ann.boxes]
    assert scores == sorted(scores, reverse=True)
    coco = COCO(str(case / "boxes.coco.json"))
    assert len(coco.getAnnIds()) == 25
    assert len(coco.loadRes(json.loads((case / "boxes.coco.json").read_text())["annotations"]).getAnnIds()) == 25


def test_coco_truth_outside_the_image_is_refused_and_nothing_is_written(cells_png, tiny_detect_bundle, tmp_path):
    case = _annotate(cells_png, tiny_detect_bundle, tmp_path / "pred")
    gt = coco_ground_truth([("cells.png", (128, 128), np.array([[10, 10, 30, 30.0], [100, 120, 140, 126]]), np.array([1, 1]))], {1: "nucleus"})
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(gt))
    out = tmp_path / "report"
    err = _one_line_error(runner.invoke(app, ["evaluate", str(case.parent), str(truth), "--boxes", "--out", str(out)]),
                          "truth.json", "box 1", "outside the image of [128, 128] voxels")
    assert "cells.png" in err and not out.exists()


def test_unknown_class_names_are_refused(cells_png, tiny_detect_bundle, tmp_path):
    case = _annotate(cells_png, tiny_detect_bundle, tmp_path / "pred")
    gt = coco_ground_truth([("cells.png", (128, 128), np.array([[10, 10, 30, 30.0]]), np.array([1]))], {1: "cell"})
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(gt))
    out = tmp_path / "report"
    _one_line_error(runner.invoke(app, ["evaluate", str(case.parent), str(truth), "--boxes", "--out", str(out)]),
                    "predicted class name(s) ['nucleus'] are not in the reference", "['cell']")
    assert not out.exists()


def test_predicted_boxes_outside_their_image_are_refused(cells_png, tiny_detect_bundle, tmp_path):
    case = _annotate(cells_png, tiny_detect_bundle, tmp_path / "pred")
    data = json.loads((case / "annotation.json").read_text())
    data["boxes"][0]["box_voxels"] = [100.0, 100.0, 140.0, 110.0]
    (case / "annotation.json").write_text(json.dumps(data))
    gt = tmp_path / "truth.json"
    gt.write_text(json.dumps(coco_ground_truth([("cells.png", (128, 128), np.zeros((0, 4)), np.zeros(0))], {1: "nucleus"})))
    _one_line_error(runner.invoke(app, ["evaluate", str(case.parent), str(gt), "--boxes", "--out", str(tmp_path / "r")]),
                    "annotation.json", "predicted boxes of case 'cells'", "outside the image")


def test_a_label_map_that_does_not_fit_the_bundle_fails_before_anything_is_written(cells_png, tiny_detect_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_detect_bundle, broken)
    spec = json.loads((broken / "bundle.json").read_text())
    spec["labels"]["2"] = {"name": "mitosis", "color": [0, 255, 0]}  # two classes named, the network has one
    (broken / "bundle.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    _one_line_error(runner.invoke(app, ["annotate", str(cells_png), "--model", str(broken), "--out", str(out), "-q"]),
                    "weights do not fit network 'retinanet'")
    assert not out.exists()
    spec["labels"] = {"1": {"name": "nucleus"}}  # no background
    (broken / "bundle.json").write_text(json.dumps(spec))
    _one_line_error(runner.invoke(app, ["annotate", str(cells_png), "--model", str(broken), "--out", str(out), "-q"]),
                    "labels must be keyed '0'")
    assert not out.exists()


def test_tta_and_wrong_dimensionality_are_clear_errors(cells_png, tiny_detect_bundle, tmp_path):
    _one_line_error(runner.invoke(app, ["annotate", str(cells_png), "--model", str(tiny_detect_bundle), "--tta", "--out", str(tmp_path / "o")]),
                    "--tta is not available for detection models")
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 8)).astype(np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    result = runner.invoke(app, ["annotate", str(tmp_path / "vol.nii.gz"), "--model", str(tiny_detect_bundle), "--out", str(tmp_path / "o2"), "-q"])
    assert result.exit_code == 2 and "model 'tiny-detect' is 2D but was given a 3D volume" in result.stderr
    assert not (tmp_path / "o2" / "vol").exists()
