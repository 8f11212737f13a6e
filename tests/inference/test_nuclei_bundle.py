"""End-to-end regression: the bundled nuclei model on the held-out right half of the real stardist sample."""

import pytest

from medannot.inference import Predictor
from medannot.io import read_image
from medannot.models import Bundle, list_bundles
from medannot.training.sources import crop_image
from medannot.training.validation import dice_score, instance_f1


@pytest.fixture(scope="module")
def right_half():
    from pathlib import Path

    import medannot

    root = Path(medannot.__file__).resolve().parent / "data_samples" / "stardist"
    img = read_image(root / "img2d.tif")
    lab = read_image(root / "mask2d.tif", kind="label")
    return crop_image(img, (0, 256), (512, 512)), crop_image(lab, (0, 256), (512, 512))


def test_nuclei_is_listed_and_small():
    b = Bundle.load("nuclei")
    assert "nuclei" in [x.name for x in list_bundles()]
    assert b.labels == {0: "background", 1: "nucleus"} and b.spatial_dims == 2
    assert (b.path / "weights.pt").stat().st_size < 5_000_000
    assert b.card_path is not None and "Dice" in b.card_path.read_text()


@pytest.mark.slow
def test_nuclei_right_half_dice_and_instances(right_half):
    image, truth = right_half
    pred = Predictor.from_bundle("nuclei").predict(image)
    assert pred.labels.same_grid(image)
    d = dice_score(pred.labels.array[0] == 1, truth.array[0] > 0)
    assert d >= 0.75
    f1 = instance_f1(pred.instances[1], truth.array[0])["f1"]
    assert f1 >= 0.7
    # The bundle's recorded validation agrees with what we measure now.
    assert abs(Bundle.load("nuclei").spec.metrics["dice"]["nucleus"] - d) < 1e-4
