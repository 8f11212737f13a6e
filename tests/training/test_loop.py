"""The one training loop: transfer learning, resume and early stopping for every task, atomic bundles."""

import json

import numpy as np
import pytest
import torch

from medannot.errors import ConfigError, ModelError
from medannot.models import Bundle
from medannot.tasks import train
from medannot.training.synth_classes import synthetic_classification_config, write_synthetic_class_folder
from traininghelpers import tiny_segmentation_config


def _weights(folder):
    return Bundle.load(folder).read_weights()


def test_transfer_learning_copies_what_fits_freezes_it_and_records_the_parent(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "c").mkdir()
    parent_config = tmp_path / "parent.json"  # trained from a file: the child's card names the command
    parent_config.write_text(json.dumps(tiny_segmentation_config(tmp_path / "p")))
    parent = train(parent_config, progress=False)
    three = {"0": {"name": "background"}, "1": {"name": "blob"}, "2": {"name": "other"}}  # a new head
    child = train(tiny_segmentation_config(tmp_path / "c", labels=three, epochs=2,
                                           init={"bundle": str(parent), "freeze": "loaded"}), progress=False)
    p, c = _weights(parent), _weights(child)
    same = [k for k in p if p[k].shape == c[k].shape]
    new = [k for k in c if k not in p or p[k].shape != c[k].shape]
    assert same and new  # the encoder fits, the output layer does not
    trainable = [k for k in same if p[k].is_floating_point() and "running" not in k and "num_batches" not in k]
    assert all(torch.equal(p[k], c[k]) for k in trainable)  # frozen: never moved
    record = json.loads((child / "bundle.json").read_text())["training"]["run"]["parent"]
    assert record["sha256"] == Bundle.load(parent).spec.sha256 and record["bundle"] == "tiny"
    assert record["copied"] == len(same) and record["new"] == len(new)
    assert record["config_path"] == parent_config.as_posix()
    card = (child / "MODEL_CARD.md").read_text()
    assert "## Transfer learning" in card and record["sha256"] in card
    assert f"trained by `medannot train {parent_config.as_posix()}`" in card


def test_unfreeze_epoch_lets_the_copied_weights_train(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "c").mkdir()
    parent = train(tiny_segmentation_config(tmp_path / "p"), progress=False)
    child = train(tiny_segmentation_config(tmp_path / "c", epochs=2, init={"bundle": str(parent), "freeze": "loaded", "unfreeze_epoch": 2}),
                  progress=False)
    p, c = _weights(parent), _weights(child)
    moved = [k for k in p if p[k].is_floating_point() and not torch.equal(p[k], c[k])]
    assert moved  # same head and labels: everything was copied, and trained from epoch 2 on


def test_a_parent_that_does_not_fit_or_bad_prefixes_are_one_line_errors(tmp_path):
    (tmp_path / "p").mkdir()
    parent = train(tiny_segmentation_config(tmp_path / "p"), progress=False)
    other_net = {"name": "basicunet", "params": {"features": [4, 4, 8, 8, 16, 4]}}
    with pytest.raises(ModelError, match="no weight of the parent bundle 'tiny' fits"):
        train(tiny_segmentation_config(tmp_path / "p", network=other_net, out=str(tmp_path / "x"), init={"bundle": str(parent)}),
              progress=False)
    with pytest.raises(ConfigError, match=r"init.freeze prefixes \['nope'\] match no parameter"):
        train(tiny_segmentation_config(tmp_path / "p", out=str(tmp_path / "y"), init={"bundle": str(parent), "freeze": ["nope"]}),
              progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_early_stopping_stops_and_ships_the_best_epoch(tmp_path):
    cfg = tiny_segmentation_config(tmp_path, epochs=30, early_stopping_patience=1, optimizer={"lr": 1e-9})  # nothing improves
    out = train(cfg, progress=False)
    run = json.loads((out / "bundle.json").read_text())["training"]["run"]
    assert run["epochs_run"] == 2 and run["best_epoch"] == 1 and run["selection"] == "best validation score"
    assert len(run["train_loss"]) == 2


@pytest.fixture(scope="module")
def toy_classes(tmp_path_factory):
    return write_synthetic_class_folder(tmp_path_factory.mktemp("cls") / "data", n_per_class=8, size=32, seed=1)


@pytest.mark.slow
def test_classification_resumes_where_it_stopped(toy_classes, tmp_path):
    small = {"epochs": 2, "iterations_per_epoch": 3, "batch_size": 4, "input": {"input_size": [32, 32]}}
    full = train(synthetic_classification_config(toy_classes, tmp_path / "a" / "b", **small), progress=False)
    cut = synthetic_classification_config(toy_classes, tmp_path / "b" / "b", **dict(small, epochs=1))
    train(cut, progress=False)
    resumed = train(dict(cut, epochs=2, resume=True), progress=False)
    a, b = _weights(full), _weights(resumed)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    spec = json.loads((resumed / "bundle.json").read_text())
    assert spec["training"]["run"]["epochs_run"] == 2 and spec["training"]["run"]["selection"] == "last epoch"
    assert spec["classification"]["calibration"]["calibrated"] is True  # measured on the shipped bundle


def test_a_failure_while_measuring_leaves_the_previous_bundle(tmp_path, monkeypatch):
    first = train(tiny_segmentation_config(tmp_path), progress=False)
    before = (first / "bundle.json").read_bytes()
    from medannot.training import trainer

    def boom(self, bundle, selected):
        raise ModelError("measuring failed on purpose")

    monkeypatch.setattr(trainer.SegmentationTraining, "measure_shipped", boom)
    with pytest.raises(ModelError, match="on purpose"):
        train(tiny_segmentation_config(tmp_path, epochs=2), progress=False)
    assert (first / "bundle.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.tmp")]
    assert np.isfinite(json.loads(before)["metrics"]["mean_dice"])


def test_a_run_resumed_with_select_best_false_ships_its_last_weights(tmp_path):
    """Changing ``select_best`` to false after a run and resuming it ships the last epoch's weights, not the best
    validation's weights the checkpoint kept (they are made different here, so the old behaviour fails)."""
    cfg = tiny_segmentation_config(tmp_path, epochs=2)
    train(cfg, progress=False)
    ckpt = tmp_path / "logs" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    state["best_state"] = {k: (v + 1.0 if v.is_floating_point() else v) for k, v in state["model"].items()}
    torch.save(state, ckpt)
    again = train(dict(cfg, select_best=False, resume=True), progress=False)
    shipped = _weights(again)
    assert all(torch.allclose(shipped[k].float(), state["model"][k].float(), atol=1e-6) for k in shipped)
    assert json.loads((again / "bundle.json").read_text())["training"]["run"]["selection"] == "last epoch"
