"""Grad-CAM and occlusion point at the discriminative region of a SYNTHETIC toy whose answer is known."""

import numpy as np
import pytest
import torch

from medannot.data import Image
from medannot.explain.saliency import gradcam_map, log_odds, map_on_image, occlusion_drop, occlusion_map, quadrant_mass
from medannot.inference.classifier import Classifier
from medannot.models.classification import gradcam_layer
from medannot.training.synth_classes import SYNTH_CLASSES, synthetic_blob_image

pytestmark = pytest.mark.slow  # trains the toy classifier once per session


@pytest.mark.parametrize("label, quadrant", [("synthetic_top_left", 0), ("synthetic_bottom_right", 3)])
def test_maps_put_most_mass_in_the_blob_quadrant(quadrant_bundle, label, quadrant):
    clf = Classifier.from_bundle(quadrant_bundle)
    k = clf.class_names.index(label)
    rng = np.random.default_rng(2024)
    cam_mass, occ_mass = [], []
    for _ in range(4):
        x = clf.prepare(Image.from_spatial(synthetic_blob_image(label, 64, rng).astype(np.float32)))
        cam = gradcam_map(clf.network, gradcam_layer("densenet-small"), x, k)
        occ = occlusion_map(clf.network, x, k, mask_size=10)
        assert cam.shape == occ.shape == (64, 64) and cam.min() >= 0 and cam.max() <= 1 and occ.max() == pytest.approx(1.0)
        cam_mass.append(quadrant_mass(cam))
        occ_mass.append(quadrant_mass(occ))
    cam_mean, occ_mean = np.mean(cam_mass, axis=0), np.mean(occ_mass, axis=0)
    assert int(np.argmax(cam_mean)) == quadrant and cam_mean[quadrant] > 0.4
    assert int(np.argmax(occ_mean)) == quadrant and occ_mean[quadrant] > 0.5


def test_occluding_the_blob_lowers_the_class_and_background_barely(quadrant_bundle):
    clf = Classifier.from_bundle(quadrant_bundle)
    k = clf.class_names.index("synthetic_top_left")
    x = clf.prepare(Image.from_spatial(synthetic_blob_image("synthetic_top_left", 64, np.random.default_rng(5)).astype(np.float32)))
    drop = occlusion_drop(clf.network, x, k, mask_size=10)
    assert drop[:32, :32].max() > 1.0  # nats of log-odds lost when the blob is hidden
    assert drop[:32, :32].max() > 3 * abs(drop[40:, 40:]).mean()


def test_log_odds_match_probabilities():
    z = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    p = torch.softmax(z, 1)
    np.testing.assert_allclose(log_odds(z).numpy(), torch.log(p / (1 - p)).numpy(), rtol=1e-5, atol=1e-6)


def test_map_on_image_undoes_pad_and_resize():
    m = np.zeros((32, 32), np.float32)
    m[8:24, 0:16] = 1.0  # left half of the square's middle band, where a 100 x 50 (rows x cols) image sits
    back = map_on_image(m, (100, 50))
    assert back.shape == (100, 50)
    assert back[25:75, :20].mean() > 0.9 and back[:, 30:].mean() < 0.1


def test_classes_are_the_synthetic_pair(quadrant_bundle):
    assert Classifier.from_bundle(quadrant_bundle).class_names == list(SYNTH_CLASSES)
