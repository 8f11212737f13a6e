"""`medannot annotate --model <classifier>` end to end: annotation.json, classifications.csv, maps; bad inputs."""

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot import samples
from medannot.annotations.schema import validate_annotation
from medannot.cli import app
from medannot.training.synth_classes import synthetic_blob_image

runner = CliRunner()


@pytest.fixture()
def toy_inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(99)
    PILImage.fromarray(synthetic_blob_image("synthetic_top_left", 64, rng)).save(folder / "tl.png")
    PILImage.fromarray(synthetic_blob_image("synthetic_bottom_right", 96, rng)).save(folder / "br.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    return folder


@pytest.mark.slow
def test_annotate_folder_writes_json_csv_and_maps(toy_bundle, toy_inputs, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(toy_inputs), "--model", str(toy_bundle), "--out", str(out)])
    assert result.exit_code == 2, result.output  # one input was unreadable
    assert sum(line.startswith("medannot: skipped") and "broken.png" in line for line in result.output.splitlines()) == 1
    assert not (out / "broken").exists() and not list(out.glob(".*tmp*"))
    for case, truth, shape in (("tl", "synthetic_top_left", (64, 64)), ("br", "synthetic_bottom_right", (96, 96))):
        data = json.loads((out / case / "annotation.json").read_text())
        validate_annotation(data)
        c = data["classification"]
        assert c["label"] == truth and c["probability"] == max(c["probabilities"].values())
        assert abs(sum(c["probabilities"].values()) - 1) < 1e-4
        assert data["provenance"]["name"] == "toy-quadrant" and data["provenance"]["sha256"]
        for name in ("gradcam", "occlusion"):
            assert data["files"][name] == f"{name}.nii.gz" and data["files"][f"{name}_png"] == f"{name}.png"
            m = np.asarray(nib.load(out / case / f"{name}.nii.gz").dataobj)
            assert m.shape[:2] == shape and 0.0 <= m.min() and m.max() <= 1.0 + 1e-6
            assert data["explanations"][name]["class_explained"] == truth
        # the summary's peak is the written map's peak (where the toy looks depends on training: the saliency
        # methods themselves are checked against a network whose evidence is known, tests/explain)
        cam = np.asarray(nib.load(out / case / "gradcam.nii.gz").dataobj)[..., 0]
        assert tuple(data["explanations"]["gradcam"]["peak_voxel"][:2]) == np.unravel_index(int(np.argmax(cam)), cam.shape)
    rows = list(csv.DictReader((out / "classifications.csv").read_text().splitlines()))
    assert [r["case"] for r in rows] == ["br", "tl"]
    assert {r["label"] for r in rows} == {"synthetic_top_left", "synthetic_bottom_right"}
    assert set(rows[0]) >= {"p_synthetic_top_left", "p_synthetic_bottom_right", "calibrated", "model", "version"}


@pytest.mark.slow
def test_label_map_not_matching_the_bundle_is_one_line_and_writes_nothing(toy_bundle, toy_inputs, tmp_path):
    bad = tmp_path / "bad-bundle"
    shutil.copytree(toy_bundle, bad)
    spec = json.loads((bad / "bundle.json").read_text())
    spec["labels"]["2"] = {"name": "synthetic_centre", "color": [1, 2, 3]}
    (bad / "bundle.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(toy_inputs / "tl.png"), "--model", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "lists 3 classes but the weights have 2 outputs" in lines[0]
    assert not out.exists()


def test_bundled_modality_model_on_real_images(tmp_path):
    """Smoke test of the shipped bundle on two of its TRAINING sources (not an accuracy claim: see its card)."""
    out = tmp_path / "out"
    nuclei = samples.sample_dir() / "stardist" / "img2d.tif"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(nuclei, folder / "nuclei.tif")
    t1 = nib.load(samples.mni152_path("t1"))
    small = nib.Nifti1Image(np.asarray(t1.dataobj)[::3, ::3, ::3].astype(np.float32), t1.affine @ np.diag([3, 3, 3, 1]))
    nib.save(small, folder / "t1.nii.gz")
    result = runner.invoke(app, ["annotate", str(folder), "--model", "modality", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    labels = {r["case"]: r["label"] for r in csv.DictReader((out / "classifications.csv").read_text().splitlines())}
    assert labels == {"nuclei": "microscopy", "t1": "mr"}
    ann = json.loads((out / "t1" / "annotation.json").read_text())
    assert ann["classification"]["calibrated"] is True and ann["ndim"] == 3
    assert "middle slice" in ann["explanations"]["gradcam"]["slice"]
    assert (out / "t1" / "gradcam_axial.png").is_file()


def test_models_lists_the_classifier_with_held_out_metrics():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "modality" in line)
    assert "classification" in row and "accuracy" in row


@pytest.mark.slow
def test_evaluate_classifications_against_a_truth_csv(toy_bundle, toy_inputs, tmp_path):
    (toy_inputs / "broken.png").unlink()
    out = tmp_path / "out"
    assert runner.invoke(app, ["annotate", str(toy_inputs), "--model", str(toy_bundle), "--out", str(out), "-q"]).exit_code == 0
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\nin/tl.png,synthetic_top_left\nin/br.png,synthetic_top_left\nin/other.png,synthetic_top_left\n")
    result = runner.invoke(app, ["evaluate", str(out), str(truth), "--out", str(tmp_path / "report"), "--print", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["n"] == 2 and doc["metrics"]["accuracy"] == pytest.approx(0.5)  # br is truly bottom-right: the truth says otherwise
    assert doc["missing_predictions"] == ["other"]
    page = (tmp_path / "report" / "classification.html").read_text()
    assert "Where to look first" in page and "✗ wrong" in page and "data:image/png;base64," in page
    # least confident first: the ranks follow the probabilities
    probs = {r["case"]: float(r["probability"]) for r in csv.DictReader((out / "classifications.csv").read_text().splitlines())}
    order = sorted(probs, key=lambda c: (probs[c], c))
    assert page.index(f"<b>{order[0]}</b>") < page.index(f"<b>{order[1]}</b>")


def test_truth_csv_with_unknown_class_names_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "classifications.csv").write_text("case,path,label,probability,p_a,p_b,calibrated,model,version\nx,x.png,a,0.9,0.9,0.1,True,m,1\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("case,label\nx,pneumonia\n")
    result = runner.invoke(app, ["evaluate", str(out), str(truth), "--out", str(tmp_path / "report")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pneumonia" in lines[0] and "truth.csv" in lines[0]
    assert not (tmp_path / "report").exists()


def test_a_classifier_gets_the_classification_predictor_and_refuses_segmentation_options():
    from medannot.errors import ConfigError
    from medannot.tasks import PredictOptions, Task, load_predictor
    from medannot.tasks.classification import ImageClassifier

    predictor = load_predictor("modality")
    assert isinstance(predictor, ImageClassifier) and predictor.task is Task.CLASSIFICATION
    with pytest.raises(ConfigError, match="segmentation models"):
        load_predictor("modality", PredictOptions(tta=True))
