"""The 3D path of classification: an UNTRAINED (random weights) 3D ResNet bundle, for plumbing only, never accuracy."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medannot import samples
from medannot.cli import app
from medannot.errors import InputError
from medannot.inference.classifier import Classifier
from medannot.models import Bundle, create_network
from medannot.retrieval.features import FeatureExtractor

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle3d(tmp_path_factory):
    torch.manual_seed(0)
    net = create_network("resnet-small", 3, 1, 3)
    spec = {
        "name": "untrained-3d", "task": "classification", "spatial_dims": 3,
        "network": {"name": "resnet-small", "params": {}},
        "labels": {str(i): {"name": n} for i, n in enumerate(["head", "chest", "abdomen"])},
        "inference": {"patch_size": [32, 32, 32]},
        "classification": {"input": {"input_size": [32, 32, 32]}, "calibration": {"temperature": 1.5, "calibrated": True}},
    }
    folder = tmp_path_factory.mktemp("b3d") / "untrained-3d"
    Bundle.from_dict(spec, state_dict=net.state_dict()).save(folder, card="# untrained-3d\n\nRandom weights; tests only.\n")
    return folder


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A real sub-volume of the MNI152 T1 template (anisotropic crop, so the pad-to-cube step matters)."""
    t1 = nib.load(samples.mni152_path("t1"))
    path = tmp_path_factory.mktemp("vol") / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj, np.float32)[30:170:2, 40:200:2, 60:120:2], t1.affine @ np.diag([2, 2, 2, 1])), path)
    return path


def test_annotate_a_volume_with_a_3d_classifier(bundle3d, volume, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(volume), "--model", str(bundle3d), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    ann = json.loads((out / "t1" / "annotation.json").read_text())
    c = ann["classification"]
    assert c["calibrated"] is True and c["temperature"] == 1.5 and set(c["probabilities"]) == {"head", "chest", "abdomen"}
    cam = np.asarray(nib.load(out / "t1" / "gradcam.nii.gz").dataobj)
    assert cam.shape == (70, 80, 30) and "slice" not in ann["explanations"]["gradcam"]  # the whole volume is explained
    assert {"gradcam_axial_png", "gradcam_coronal_png", "gradcam_sagittal_png"} <= set(ann["files"])


def test_temperature_divides_the_logits(bundle3d, volume):
    from medannot.io import read_image

    image = read_image(volume)
    cal, raw = Classifier.from_bundle(bundle3d), Classifier.from_bundle(bundle3d, calibrated=False)
    p_cal, p_raw = cal.predict(image), raw.predict(image)
    logits, _ = raw.logits_and_features(raw.prepare(image)[None])
    expected = torch.softmax(torch.from_numpy(logits[0]) / 1.5, 0).numpy()
    np.testing.assert_allclose(list(p_cal.probabilities.values()), expected, atol=1e-6)
    assert p_cal.label == p_raw.label and raw.temperature == 1.0


def test_a_2d_image_is_refused_by_a_3d_classifier(bundle3d):
    from medannot.data import Image

    with pytest.raises(InputError, match="3D classifier was given a 2D image"):
        Classifier.from_bundle(bundle3d).predict(Image.from_spatial(np.zeros((20, 20), np.float32)))


def test_3d_embedding_for_retrieval(bundle3d, volume):
    from medannot.io import read_image

    ext = FeatureExtractor(model=str(bundle3d))
    v = ext.vector(read_image(volume))
    a, b = ext.blocks["embedding"]
    assert b - a == 128 and np.abs(v[a:b]).sum() > 0 and np.linalg.norm(v) == pytest.approx(1.0, rel=1e-5)
