"""Precision at k on a real labelled set: the modality images (CT, MR, US, X-ray, microscopy) that ship in packages.

Queries are the images of the sources the bundled ``modality`` model never trained on (its held-out groups);
neighbours from the query's own source are left out, so a slice never finds its sister slices.
"""

import json

import pytest

from medannot.models import Bundle
from medannot.retrieval import build_index, precision_at_k, search
from medannot.training.modality_samples import export_modality_folder, modality_sources_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def modality_folder(tmp_path_factory):
    status = modality_sources_status()
    held_out = Bundle.load("modality").spec.training["run"]["val_groups"]
    missing = sorted(set(held_out) - set(status["found"]))
    if missing:  # dev dependencies (pydicom-data, deid-data) and Debian mricron-data: see pyproject and scripts/system_deps.txt
        pytest.fail(f"held-out modality sources missing on this machine: {missing}; run make install system-deps")
    root = tmp_path_factory.mktemp("modality") / "images"
    assert export_modality_folder(root) > 150
    return root, set(held_out)


def _held_out_rows(idx, held_out):
    return [i for i, c in enumerate(idx.cases) if c["name"].split("__")[0] in held_out]


@pytest.mark.parametrize("model, factor", [("modality", 2.0), (None, 1.4)])
def test_precision_at_5_beats_chance_on_unseen_sources(modality_folder, tmp_path, model, factor):
    root, held_out = modality_folder
    idx = build_index(root, tmp_path / "index", model=model)
    queries = _held_out_rows(idx, held_out)
    assert len(queries) >= 40
    res = precision_at_k(idx, k=5, queries=queries)
    assert res["queries"] == len(queries)
    assert res["precision_at_k"] >= factor * res["chance"], res
    assert set(res["per_label"]) == {"ct", "mr", "us", "xray", "microscopy"}
    # without leaving out the query's own source, its sister views make it look far easier
    assert precision_at_k(idx, k=5, queries=queries, exclude_same_group=False)["precision_at_k"] > res["precision_at_k"]
    # a query returns itself first (or tied with an identical view: some multi-frame files repeat a frame)
    for row in queries:
        hits = search(idx, idx.features[row], k=3)
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert row in [r for r, score in hits if score >= hits[0][1] - 1e-6]
    info = json.loads((tmp_path / "index" / "cases.json").read_text())
    assert ("model" in info["features"]) == (model is not None)
