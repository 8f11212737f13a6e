"""The bundled brain-mri model through the real inference path on a held-out semi-synthetic subject.

The subject is semi-synthetic, derived from the training template (MNI152) with a seed never
used in training or validation; it is stored LPS at 1.2 x 1.2 x 3 mm with skull, scalp, bias
field and noise, so the Predictor must reorient, resample to 2 mm and map the labels back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medannot.evaluation import dice
from medannot.inference import Predictor
from medannot.models.bundle import bundled_root
from medannot.training.synth import SynthParams
from medannot.training.synth_source import make_subject

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def predicted():
    if not (bundled_root() / "brain-mri" / "bundle.json").is_file():
        pytest.fail("the bundled brain-mri model is missing; train it with: medannot train configs/brain_mri.yaml")
    torch.set_num_threads(2)
    image, truth = make_subject(20101, spacing=(1.2, 1.2, 3.0), axcodes="LPS", params=SynthParams(p_t1_like=1.0))
    pred = Predictor.from_bundle("brain-mri").predict(image)
    return image, truth, pred


def test_labels_come_back_on_the_input_grid(predicted) -> None:
    image, _, pred = predicted
    assert image.geometry.axcodes() == ("L", "P", "S")
    assert pred.labels.same_grid(image)
    assert pred.labels.is_label and pred.labels.array.dtype == np.uint8
    assert set(np.unique(pred.labels.array).tolist()) <= {0, 1, 2}


def test_brain_region_dice(predicted) -> None:
    _, truth, pred = predicted
    p, t = pred.labels.array[0], truth.array[0]
    assert dice(p > 0, t > 0) >= 0.85
    # Both tissues are found, not just the brain outline.
    assert dice(p == 2, t == 2) >= 0.6
    assert dice(p == 1, t == 1) >= 0.4
