"""ONNX Runtime engines: the shipped exports against PyTorch on real images, int8 accuracy, the CLI, refusals.

Tolerances (stated in the README): fp32 probabilities within 1e-4 of PyTorch's (float32 kernels sum in another
order), labels equal on at least 99.99 % of voxels (only near-ties may flip), boxes within 1e-3 voxel and scores
within 1e-4; int8 accuracy on held-out data within 0.01 of fp32.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medannot import samples
from medannot.cli import app
from medannot.data import Image
from medannot.errors import ConfigError, ModelError
from medannot.inference.classifier import Classifier
from medannot.inference.detector import Detector
from medannot.inference.engines import Engine
from medannot.inference.onnx_bundle import export_bundle
from medannot.inference.predictor import Predictor
from medannot.io import read_image, write_image
from medannot.models.bundle import Bundle, bundled_root
from medannot.models.onnx_export import OnnxVariant, read_record
from medannot.tasks import PredictOptions, load_predictor

runner = CliRunner()
PROB_TOL = 1e-4


def _right_half(image: Image) -> Image:
    cut = samples.NUCLEI_SPLIT_COLUMN
    return Image(np.ascontiguousarray(image.array[..., cut:]), image.geometry, image.kind, dict(image.meta))


@pytest.fixture(scope="module", autouse=True)
def two_threads() -> None:
    torch.set_num_threads(2)


@pytest.mark.parametrize("name", ["brain-mri", "nuclei", "nuclei-detect"])
def test_bundled_models_ship_a_current_export(name: str) -> None:
    bundle = Bundle.load(name)
    record = read_record(bundle.path)
    assert record is not None and record.weights_sha256 == bundle.spec.sha256
    assert set(record.files) == {"fp32", "int8"}
    for variant in OnnxVariant:
        path = Path(bundle.path) / variant.filename
        assert path.stat().st_size == record.files[variant.value]["bytes"] < 2_000_000  # small enough to ship
    assert record.max_abs_diff["fp32"] < PROB_TOL
    card = (Path(bundle.path) / "MODEL_CARD.md").read_text()
    assert "## ONNX Runtime and int8" in card and "| onnxruntime-int8 |" in card  # int8 accuracy next to fp32


def test_brain_probabilities_match_pytorch_on_the_mni152_head() -> None:
    image = samples.mni152_t1()
    torch_p = Predictor.from_bundle("brain-mri", tta=False)
    onnx_p = Predictor.from_bundle("brain-mri", tta=False, engine="onnxruntime")
    assert onnx_p.engine is Engine.ONNXRUNTIME
    work = torch_p.preprocess(image).array
    a, b = torch_p.network_probabilities(work), onnx_p.network_probabilities(work)
    assert a.shape == b.shape and b.dtype == np.float32
    assert float(np.abs(a - b).max()) < PROB_TOL
    assert np.mean(a.argmax(0) == b.argmax(0)) >= 0.9999


def test_nuclei_labels_match_pytorch_and_int8_keeps_dice() -> None:
    image = _right_half(samples.nuclei_image())
    truth = _right_half(samples.nuclei_instances()).array[0] > 0
    preds = {e: Predictor.from_bundle("nuclei", engine=e).predict(image, keep_probabilities=True) for e in Engine}
    ref = preds[Engine.PYTORCH]
    fp32 = preds[Engine.ONNXRUNTIME]
    assert float(np.abs(ref.probabilities.array - fp32.probabilities.array).max()) < PROB_TOL
    assert np.mean(ref.labels.array == fp32.labels.array) >= 0.9999

    def dice(p: np.ndarray) -> float:
        return 2.0 * float((p & truth).sum()) / float(p.sum() + truth.sum())

    d = {e: dice(p.labels.array[0] > 0) for e, p in preds.items()}
    assert d[Engine.PYTORCH] > 0.9
    assert abs(d[Engine.ONNXRUNTIME_INT8] - d[Engine.ONNXRUNTIME]) <= 0.01
    assert float(np.abs(ref.probabilities.array - preds[Engine.ONNXRUNTIME_INT8].probabilities.array).max()) > PROB_TOL  # really int8


def test_detection_boxes_match_pytorch() -> None:
    image = _right_half(samples.nuclei_image())
    a = Detector.from_bundle("nuclei-detect").detect(image)
    b = Detector.from_bundle("nuclei-detect", engine="onnxruntime").detect(image)
    assert len(a) == len(b) > 50
    np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-3)
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
    np.testing.assert_array_equal(b.labels, a.labels)


@pytest.fixture(scope="module")
def modality_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled classifier copied and exported (fp32) into a temporary folder."""
    folder = tmp_path_factory.mktemp("bundles") / "modality"
    shutil.copytree(bundled_root() / "modality", folder, ignore=shutil.ignore_patterns("*.onnx", "onnx.json"))
    export_bundle(Bundle.load(folder))
    return folder


def test_classifier_export_round_trip(modality_copy: Path) -> None:
    images = [samples.mni152_t1(), samples.nuclei_image()]
    a = Classifier.from_bundle(modality_copy)
    b = Classifier.from_bundle(modality_copy, engine="onnxruntime")
    x = np.stack([a.prepare(im) for im in images])
    la, fa = a.logits_and_features(x)
    lb, fb = b.logits_and_features(x)
    assert lb.shape == la.shape and fb.shape == fa.shape
    assert float(np.abs(la - lb).max()) < 1e-3 and float(np.abs(fa - fb).max()) < 1e-3
    assert [a.predict(im).label for im in images] == [b.predict(im).label for im in images]


def test_cli_annotate_brain_with_onnxruntime(tmp_path: Path) -> None:
    head = tmp_path / "in" / "head.nii.gz"
    head.parent.mkdir()
    write_image(samples.mni152_t1(), head)
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(head), "--model", "brain-mri", "--engine", "onnxruntime", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    case = out / "head"
    ann = json.loads((case / "annotation.json").read_text())
    assert ann["provenance"]["parameters"]["engine"] == "onnxruntime"
    got = read_image(case / "labels.nii.gz").array[0]
    ref = Predictor.from_bundle("brain-mri").predict(samples.mni152_t1()).labels.array[0]
    assert got.shape == ref.shape and np.mean(got == ref) >= 0.9999
    assert set(np.unique(got)) == {0, 1, 2}


def test_refusals(tmp_path: Path) -> None:
    folder = tmp_path / "nuclei"
    shutil.copytree(bundled_root() / "nuclei", folder)
    # stale: the export was made from other weights
    rec = json.loads((folder / "onnx.json").read_text())
    rec["weights_sha256"] = "0" * 64
    (folder / "onnx.json").write_text(json.dumps(rec))
    with pytest.raises(ModelError, match="stale"):
        Predictor.from_bundle(folder, engine="onnxruntime")
    # corrupt file
    rec["weights_sha256"] = Bundle.load(folder).spec.sha256
    (folder / "onnx.json").write_text(json.dumps(rec))
    (folder / "model.int8.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="checksum"):
        Predictor.from_bundle(folder, engine="onnxruntime-int8")
    # no export at all: says how to make one
    for f in ("onnx.json", "model.onnx", "model.int8.onnx"):
        (folder / f).unlink()
    with pytest.raises(ModelError, match="medannot models export nuclei --format onnx"):
        Predictor.from_bundle(folder, engine="onnxruntime")
    with pytest.raises(ConfigError, match="onnxruntime-int8"):
        Engine.parse("tensorrt")
    with pytest.raises(ModelError, match="--engine pytorch"):
        load_predictor("brain-mri", PredictOptions(mc_dropout=2, engine="onnxruntime"))
    with pytest.raises(ConfigError, match="calibration"):
        export_bundle(Bundle.load(folder), int8=True, calibration=[])
    for args, needle in [(["annotate", str(folder), "--model", "nuclei", "--engine", "tensorrt"], "unknown engine"),
                         (["models", "export", "nuclei", "--format", "tflite"], "--format must be onnx"),
                         (["models", "export", "nuclei", "--format", "onnx", "--calibration", "x.tif"], "--calibration is for --int8"),
                         (["models", "nuclei", "--int8"], "go with `medannot models export MODEL`")]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and needle in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1


def test_cli_export_writes_the_bundle_files(tmp_path: Path) -> None:
    folder = tmp_path / "nuclei"
    shutil.copytree(bundled_root() / "nuclei", folder, ignore=shutil.ignore_patterns("*.onnx", "onnx.json"))
    tif = tmp_path / "left.tif"
    left = samples.nuclei_image()
    write_image(Image(np.ascontiguousarray(left.array[..., :128]), left.geometry, left.kind), tif)
    result = runner.invoke(app, ["models", "export", str(folder), "--format", "onnx", "--int8", "--calibration", str(tif)])
    assert result.exit_code == 0, result.output
    assert "model.onnx" in result.output and "model.int8.onnx" in result.output
    record = read_record(folder)
    assert record is not None and record.notes["int8_calibration"].startswith("left.tif")
    assert Predictor.from_bundle(folder, engine="onnxruntime-int8").engine is Engine.ONNXRUNTIME_INT8
