"""The shipped `nuclei-detect` bundle end to end: `medannot annotate --model nuclei-detect` on the real nuclei
sample (boxes in annotation.json in voxels and mm, a COCO file that pycocotools loads and scores against the
truth boxes of the held-out right half, an overlay with the boxes drawn), `medannot evaluate --boxes` on it,
and the held-out metrics stored in bundle.json and the model card recomputed here.

Held-out = columns 256..511 of the stardist sample, which no training patch saw (configs/nuclei_detect.yaml).
Truth boxes here come from scikit-image's regionprops of the expert instance mask, not from medannot.
"""

import json

import numpy as np
import pytest
from PIL import Image as PILImage
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from skimage.measure import regionprops
from typer.testing import CliRunner

from medannot import samples
from medannot.annotations.schema import validate_annotation
from medannot.cli import app
from medannot.data.boxes import voxel_boxes_to_world
from medannot.evaluation.detection import average_precision, box_iou, detection_froc
from medannot.io import read_image, write_image
from medannot.models import Bundle
from medannot.models.bundle import bundled_root

runner = CliRunner()
MODEL = "nuclei-detect"
SPLIT = samples.NUCLEI_SPLIT_COLUMN
#: Held-out floors: the shipped bundle measured AP@[.5:.95] 0.533 and AP@0.5 0.907 on the right half (bundle.json,
#: pycocotools and medannot agree), less a margin of 0.05 for other CPUs and BLAS builds.
AP_FLOOR = 0.533 - 0.05
AP50_FLOOR = 0.907 - 0.05
#: FROC score measured 0.982; a single confident false positive costs up to 3/7 of it (one validation image).
FROC_FLOOR = 0.982 - 0.05
YELLOW = (255, 220, 0)  # the bundle's colour of label 1 (nucleus)


def _truth_boxes(instances: np.ndarray) -> np.ndarray:
    """Voxel boxes (row0, col0, row1, col1; max exclusive) of every instance, by scikit-image."""
    return np.array([r.bbox for r in regionprops(instances.astype(np.int32))], dtype=np.float64).reshape(-1, 4)


def _annotate(path, out):
    result = runner.invoke(app, ["annotate", str(path), "--model", MODEL, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out / path.name.split(".")[0]


@pytest.fixture(scope="module")
def bundle():
    return Bundle.load(MODEL)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """The right half of the nuclei sample (image and expert instance mask) as TIFF files, same case name."""
    image, inst = samples.nuclei_image(), samples.nuclei_instances()
    root = tmp_path_factory.mktemp("held_out")
    (root / "images").mkdir()
    (root / "truth").mkdir()
    write_image(image.with_array(np.ascontiguousarray(image.array[:, :, SPLIT:])), root / "images" / "right.tif")
    write_image(inst.with_array(np.ascontiguousarray(inst.array[:, :, SPLIT:])), root / "truth" / "right.tif")
    return root


@pytest.fixture(scope="module")
def right_case(held_out, tmp_path_factory):
    return _annotate(held_out / "images" / "right.tif", tmp_path_factory.mktemp("ann_right"))


@pytest.fixture(scope="module")
def full_case(tmp_path_factory):
    return _annotate(samples.sample_dir() / "stardist" / "img2d.tif", tmp_path_factory.mktemp("ann_full"))


def test_the_bundle_is_shipped_small_and_describes_its_thresholds(bundle):
    folder = bundled_root() / MODEL
    assert {"bundle.json", "weights.pt", "MODEL_CARD.md"} <= {p.name for p in folder.iterdir()}
    assert (folder / "weights.pt").stat().st_size < 5_000_000
    det = bundle.spec.detection
    assert bundle.task == "detection" and bundle.spatial_dims == 2 and bundle.labels == {0: "background", 1: "nucleus"}
    assert 0 < det.score_threshold < det.overlay_threshold <= 1 and det.nms_iou == 0.3 and det.boxes.min_extent == 4
    assert bundle.spec.metrics["n_truth"] == 57  # nuclei touching the right half (DATA.md)


def test_annotate_full_image_writes_boxes_in_voxels_and_mm(full_case, bundle):
    data = json.loads((full_case / "annotation.json").read_text())
    ann = validate_annotation(data)
    assert ann.shape == [512, 512] and ann.provenance.name == MODEL and ann.provenance.sha256 == bundle.spec.sha256
    assert data["files"]["overlay_boxes"] == "overlay_boxes.png" and data["files"]["boxes_coco"] == "boxes.coco.json"
    assert not (full_case / "labels.png").exists()  # a detection model writes boxes, no label map
    boxes = np.array([b.box_voxels for b in ann.boxes])
    scores = np.array([b.score for b in ann.boxes])
    # The image holds 125 nuclei; at the bundle's overlay threshold the detector finds most of them and not many more.
    confident = scores >= bundle.spec.detection.overlay_threshold
    assert 100 <= confident.sum() <= 150
    assert np.all(scores >= bundle.spec.detection.score_threshold - 1e-4) and np.all(np.diff(scores) <= 0)
    assert {b.label_name for b in ann.boxes} == {"nucleus"} and all(b.instance_id is None for b in ann.boxes)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 512) and np.all(boxes[:, 2:] > boxes[:, :2])
    # The bundle's NMS IoU holds between every pair of boxes written (one class).
    iou = box_iou(boxes, boxes)
    np.fill_diagonal(iou, 0.0)
    assert iou.max() <= bundle.spec.detection.nms_iou + 0.02
    sizes = boxes[confident, 2:] - boxes[confident, :2]
    assert 8 < np.median(sizes) < 40  # nuclei are 13-39 pixels across
    # mm: the world extent of the box's corner edges on the image's own grid.
    geo = read_image(samples.sample_dir() / "stardist" / "img2d.tif").geometry
    np.testing.assert_allclose(np.array([b.box_mm for b in ann.boxes]), voxel_boxes_to_world(boxes, geo), atol=2e-3)


def test_overlay_draws_the_confident_boxes_in_the_label_colour(full_case, bundle):
    data = json.loads((full_case / "annotation.json").read_text())
    pic = np.asarray(PILImage.open(full_case / "overlay_boxes.png").convert("RGB"))
    assert pic.shape[1:] == (512, 3) and pic.shape[0] > 512  # the 512x512 image at scale 1, the legend strip below it
    pic = pic[:512]
    yellow = np.all(pic == YELLOW, axis=-1)
    grey = (pic[..., 0] == pic[..., 1]) & (pic[..., 1] == pic[..., 2])
    threshold = bundle.spec.detection.overlay_threshold
    drawn = [b["box_voxels"] for b in data["boxes"] if b["score"] >= threshold]
    assert len(drawn) >= 100
    on_edge, centres_grey = [], []
    for r0, c0, r1, c1 in drawn:
        r0, c0, r1, c1 = int(np.floor(r0)), int(np.floor(c0)), int(np.ceil(r1)) - 1, int(np.ceil(c1)) - 1
        rows = np.linspace(r0, r1, 7).round().astype(int)
        cols = np.linspace(c0, c1, 7).round().astype(int)
        points = [(r0, c) for c in cols] + [(r1, c) for c in cols] + [(r, c0) for r in rows] + [(r, c1) for r in rows]
        on_edge += [yellow[max(0, r - 1):r + 2, max(0, c - 1):c + 2].any() for r, c in points]
        centres_grey.append(grey[(r0 + r1) // 2, (c0 + c1) // 2])
    assert np.mean(on_edge) > 0.97  # every drawn box's outline is in the nucleus colour
    assert np.mean(centres_grey) > 0.8  # outlines, not filled boxes: the nucleus stays visible
    assert yellow.mean() < 0.25


def test_coco_file_loads_and_cocoeval_scores_the_held_out_half(right_case, held_out, bundle):
    coco = COCO(str(right_case / "boxes.coco.json"))
    img = coco.loadImgs(coco.getImgIds())[0]
    assert (img["height"], img["width"]) == (512, 512 - SPLIT) and coco.loadCats(coco.getCatIds())[0]["name"] == "nucleus"
    truth = _truth_boxes(read_image(held_out / "truth" / "right.tif", kind="label").array[0])
    assert len(truth) == 57
    gt = COCO()
    gt.dataset = {
        "images": [{"id": img["id"], "height": img["height"], "width": img["width"]}],
        "categories": [{"id": 1, "name": "nucleus"}],
        "annotations": [{"id": i + 1, "image_id": img["id"], "category_id": 1, "iscrowd": 0, "area": float((b[2] - b[0]) * (b[3] - b[1])),
                         "bbox": [float(b[1]), float(b[0]), float(b[3] - b[1]), float(b[2] - b[0])]} for i, b in enumerate(truth)],
    }
    gt.createIndex()
    dt = gt.loadRes(coco.loadAnns(coco.getAnnIds()))
    ev = COCOeval(gt, dt, iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ap, ap50 = ev.stats[0], ev.stats[1]
    assert ap >= AP_FLOOR and ap50 >= AP50_FLOOR
    # The bundle's stored cross-check is the same number (boxes rounded to 1/1000 pixel in the files).
    assert ap == pytest.approx(bundle.spec.metrics["pycocotools"]["ap"], abs=0.01)
    assert ap50 == pytest.approx(bundle.spec.metrics["pycocotools"]["ap50"], abs=0.01)


def test_held_out_metrics_in_bundle_json_and_card_match_a_recomputation(right_case, held_out, bundle):
    ann = validate_annotation(json.loads((right_case / "annotation.json").read_text()))
    det = (np.array([b.box_voxels for b in ann.boxes]).reshape(-1, 4), np.array([b.score for b in ann.boxes]), np.ones(len(ann.boxes), int))
    truth = _truth_boxes(read_image(held_out / "truth" / "right.tif", kind="label").array[0])
    gt = (truth, np.ones(len(truth), int))
    ap = average_precision([det], [gt])
    froc = detection_froc([det], [gt], iou_threshold=0.1)
    m = bundle.spec.metrics
    assert m["n_truth"] == len(truth) and m["n_detections"] == len(ann.boxes)
    assert ap["ap"] == pytest.approx(m["ap"], abs=0.01) and ap["ap50"] == pytest.approx(m["ap50"], abs=0.01)
    assert froc["score"] == pytest.approx(m["froc"]["score"], abs=0.01) and froc["score"] >= FROC_FLOOR
    for rate, value in m["froc"]["sensitivity_at"].items():
        assert froc["sensitivity_at"][float(rate)] == pytest.approx(value, abs=0.02)
    card = (bundled_root() / MODEL / "MODEL_CARD.md").read_text()
    assert f"| AP@[.5:.95] (COCO, medannot.evaluation.detection) | {m['ap']:.3f} |" in card
    assert f"{m['froc']['score']:.3f}" in card and "shipped bundle" in card


def test_evaluate_boxes_on_the_annotated_held_out_half(right_case, held_out, tmp_path, bundle):
    result = runner.invoke(app, ["evaluate", str(right_case.parent), str(held_out / "truth"), "--boxes", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "ev" / "boxes_metrics.json").read_text())["overall"]
    assert out["n_cases"] == 1 and out["n_truth"] == 57 and out["n_predicted"] == bundle.spec.metrics["n_detections"]
    assert out["ap"] >= AP_FLOOR and out["ap50"] >= AP50_FLOOR
    assert out["froc_score"] == pytest.approx(bundle.spec.metrics["froc"]["score"], abs=0.01)
    assert "AP@0.5" in result.output and (tmp_path / "ev" / "boxes_metrics.csv").is_file()
