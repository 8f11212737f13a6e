"""Classification training on SYNTHETIC quadrant images: converges, splits by group, writes a bundle that round-trips."""

import json

import numpy as np
import pytest

from medannot.data import Image
from medannot.errors import ConfigError, InputError
from medannot.inference.classifier import Classifier
from medannot.models import Bundle
from medannot.training.classification_data import ClassSample, split_by_group
from medannot.training.classification_trainer import class_weights
from medannot.training.synth_classes import SYNTH_CLASSES, synthetic_blob_image, synthetic_classification_config

pytestmark = pytest.mark.slow  # the session fixture trains a network (about 20-40 s on 2 busy cores)


def test_training_converges_and_holds_out_whole_groups(toy_bundle):
    spec = json.loads((toy_bundle / "bundle.json").read_text())
    run = spec["training"]["run"]
    assert run["train_loss"][-1] < 0.5 * run["train_loss"][0]
    assert not set(run["train_groups"]) & set(run["val_groups"])
    assert run["n_val"] >= 10
    assert spec["metrics"]["accuracy"] >= 0.9  # the blob's quadrant is an easy, exact cue
    assert spec["task"] == "classification" and [spec["labels"][k]["name"] for k in ("0", "1")] == list(SYNTH_CLASSES)
    card = (toy_bundle / "MODEL_CARD.md").read_text()
    assert "Held-out results" in card and "SYNTHETIC" in card


def test_fresh_images_are_classified_right(toy_bundle):
    clf = Classifier.from_bundle(toy_bundle)
    rng = np.random.default_rng(123)  # never seen: the training folder used seed 0
    right = 0
    for label in SYNTH_CLASSES * 5:
        pred = clf.predict(Image.from_spatial(synthetic_blob_image(label, 64, rng).astype(np.float32)))
        assert abs(sum(pred.probabilities.values()) - 1.0) < 1e-4
        right += pred.label == label
    assert right >= 9


def test_bundle_round_trip_gives_identical_probabilities(toy_bundle, tmp_path):
    image = Image.from_spatial(synthetic_blob_image("synthetic_top_left", 64, np.random.default_rng(7)).astype(np.float32))
    first = Classifier.from_bundle(toy_bundle).predict(image)
    Bundle.load(toy_bundle).save(tmp_path / "copy", card=(toy_bundle / "MODEL_CARD.md").read_text())
    again = Classifier.from_bundle(tmp_path / "copy").predict(image)
    assert again.probabilities == first.probabilities and again.label == first.label
    assert again.calibrated == first.calibrated and again.temperature == pytest.approx(first.temperature)
    np.testing.assert_allclose(again.embedding, first.embedding, rtol=1e-6)
    assert Bundle.load(tmp_path / "copy").spec.sha256 == Bundle.load(toy_bundle).spec.sha256


def test_class_weights_balanced_and_none():
    y = np.array([0] * 30 + [1] * 10)
    w = class_weights(y, 2, "balanced")
    np.testing.assert_allclose(w, [40 / (2 * 30), 40 / (2 * 10)])
    assert (w * np.bincount(y)).std() < 1e-6  # every class weighs the same in total
    np.testing.assert_array_equal(class_weights(y, 2, "none"), [1.0, 1.0])
    with pytest.raises(ConfigError, match=r"classes \[2\] have no training sample"):
        class_weights(y, 3, "balanced")


def test_split_never_cuts_a_group():
    samples = [ClassSample(np.zeros((1, 4, 4), np.float32), lab, f"{lab}-{g}", f"{lab}-{g}#{v}")
               for lab in ("a", "b") for g in range(4) for v in range(3)]
    train, val = split_by_group(samples, None, 0.25, seed=0)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(samples)
    assert {samples[i].group for i in train}.isdisjoint({samples[i].group for i in val})
    assert {samples[i].label for i in val} == {"a", "b"}
    with pytest.raises(ConfigError, match="not in the data"):
        split_by_group(samples, ["nope"], 0.25, 0)


def test_csv_with_an_unknown_class_is_refused_before_anything_is_written(toy_data, tmp_path):
    from medannot.tasks import train

    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(toy_data.rglob("*.png"))[:6]]
    rows.append(f"{next(toy_data.rglob('*.png'))},synthetic_middle")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = synthetic_classification_config(toy_data, tmp_path / "out", data={"source": "csv", "params": {"path": str(tmp_path / "labels.csv")}})
    with pytest.raises(ConfigError) as err:
        train(cfg, progress=False)
    assert "synthetic_middle" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_csv_with_a_missing_image_names_the_row(toy_data, tmp_path):
    from medannot.training.classification_data import csv_samples

    (tmp_path / "labels.csv").write_text("path,label\nmissing.png,synthetic_top_left\n")
    with pytest.raises(InputError, match="row 2") as err:
        csv_samples(tmp_path / "labels.csv", 2)
    assert "\n" not in str(err.value)
