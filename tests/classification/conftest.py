"""A classifier trained on SYNTHETIC two-class images (blob top-left vs bottom-right): for pipeline tests only."""

from pathlib import Path

import pytest

from medannot.training.synth_classes import synthetic_classification_config, write_synthetic_class_folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    return write_synthetic_class_folder(tmp_path_factory.mktemp("toy") / "data", n_per_class=24, size=64, seed=0)


@pytest.fixture(scope="session")
def toy_bundle(toy_data, tmp_path_factory) -> Path:
    """Trained through ``medannot.training.trainer.train`` (the task dispatch) on the synthetic folder."""
    from medannot.tasks import train

    out = tmp_path_factory.mktemp("toy-bundle") / "toy-quadrant"
    return train(synthetic_classification_config(toy_data, out), progress=False)
