"""A classifier trained on SYNTHETIC quadrant images (the answer to "where did it look" is known): tests only."""

from pathlib import Path

import pytest

from medannot.training.synth_classes import synthetic_classification_config, write_synthetic_class_folder


@pytest.fixture(scope="session")
def quadrant_bundle(tmp_path_factory) -> Path:
    from medannot.tasks import train

    root = tmp_path_factory.mktemp("quadrant")
    data = write_synthetic_class_folder(root / "data", n_per_class=24, size=64, seed=0)
    return train(synthetic_classification_config(data, root / "bundle"), progress=False)
