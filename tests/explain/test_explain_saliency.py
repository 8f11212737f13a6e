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


class QuadrantGate(torch.nn.Module):
    """Keeps feature channel 0 in the top-left quadrant and channel 1 in the bottom-right one (zero elsewhere)."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h, w = f.shape[2] // 2, f.shape[3] // 2
        mask = torch.zeros_like(f)
        mask[:, 0, :h, :w] = 1
        mask[:, 1, h:, w:] = 1
        return f * mask


class QuadrantEvidence(torch.nn.Module):
    """A classifier whose evidence is known by construction: class 0 = mean brightness of the top-left quadrant,
    class 1 = that of the bottom-right quadrant (nothing else enters the logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():
            self.features.weight.fill_(1 / 9)
            self.features.bias.zero_()
        self.gate = QuadrantGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.gate(torch.relu(self.features(x)))
        return 160 * f.mean(dim=(2, 3))  # the mean over the image of a channel that lives in one quadrant


@pytest.mark.parametrize("label, quadrant", [("synthetic_top_left", 0), ("synthetic_bottom_right", 3)])
def test_maps_put_most_mass_where_the_evidence_is_known_to_be(label, quadrant):
    net = QuadrantEvidence().eval()
    k = list(SYNTH_CLASSES).index(label)
    rng = np.random.default_rng(2024)
    for _ in range(4):
        x = (synthetic_blob_image(label, 64, rng).astype(np.float32) / 255.0)[None]
        cam = gradcam_map(net, "gate", x, k)
        occ = occlusion_map(net, x, k, mask_size=10)
        assert cam.shape == occ.shape == (64, 64) and cam.min() >= 0 and cam.max() <= 1 and occ.max() == pytest.approx(1.0)
        assert int(np.argmax(quadrant_mass(cam))) == quadrant and quadrant_mass(cam)[quadrant] > 0.9
        assert int(np.argmax(quadrant_mass(occ))) == quadrant and quadrant_mass(occ)[quadrant] > 0.5


def test_occluding_the_evidence_lowers_the_class_and_elsewhere_nothing():
    net = QuadrantEvidence().eval()
    x = (synthetic_blob_image("synthetic_top_left", 64, np.random.default_rng(5)).astype(np.float32) / 255.0)[None]
    drop = occlusion_drop(net, x, 0, mask_size=10)
    assert drop[:32, :32].max() > 1.0  # nats of log-odds lost when the blob is hidden
    assert drop[40:, 40:].max() <= 1e-5  # hiding the bottom-right only lowers class 1, which raises class 0's odds


def test_the_trained_toy_is_explained_without_error(quadrant_bundle):
    """End to end on the trained toy: maps on the right grid and range (where it looks depends on training)."""
    clf = Classifier.from_bundle(quadrant_bundle)
    x = clf.prepare(Image.from_spatial(synthetic_blob_image("synthetic_top_left", 64, np.random.default_rng(5)).astype(np.float32)))
    k = clf.class_names.index("synthetic_top_left")
    cam = gradcam_map(clf.network, gradcam_layer("densenet-small"), x, k)
    occ = occlusion_map(clf.network, x, k, mask_size=10)
    assert cam.shape == occ.shape == (64, 64) and 0 <= cam.min() and cam.max() <= 1 and 0 <= occ.min() and occ.max() <= 1
    assert cam.std() > 0  # not a constant map


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
