"""The demo end to end on the bundled real samples, with the bundled models (what `make demo` runs)."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from medannot import samples
from medannot.workflows.demo import BRAIN_CASE, NUCLEI_CASE, run_demo

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    run_demo(out)
    return out


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_demo_writes_every_case_with_provenance(demo_out):
    for sub, case in (("nuclei", NUCLEI_CASE), ("brain", BRAIN_CASE), ("nuclei-otsu", NUCLEI_CASE)):
        folder = demo_out / "annotations" / sub / case
        meta = json.loads((folder / "annotation.json").read_text())
        assert meta["provenance"]["name"] in {"nuclei", "brain-mri", "otsu"}
        assert (folder / "labels.nii.gz").exists()
        assert list(folder.glob("overlay*.png"))
    brain = json.loads((demo_out / "annotations" / "brain" / BRAIN_CASE / "annotation.json").read_text())
    assert len(brain["provenance"]["sha256"]) == 64
    assert {lab["name"] for lab in brain["labels"]} == {"grey matter", "white matter"}


def test_brain_labels_are_on_the_input_grid(demo_out):
    pred = nib.load(demo_out / "annotations" / "brain" / BRAIN_CASE / "labels.nii.gz")
    src = nib.load(samples.mni152_path("t1"))
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-5)


def test_demo_scores(demo_out):
    nuclei = read_rows(demo_out / "evaluation" / "nuclei" / "metrics.csv")
    otsu = read_rows(demo_out / "evaluation" / "nuclei-otsu" / "metrics.csv")
    brain = read_rows(demo_out / "evaluation" / "brain" / "metrics.csv")
    assert float(nuclei[0]["dice"]) >= 0.75  # held-out right half
    assert float(nuclei[0]["dice"]) > float(otsu[0]["dice"])  # the trained model beats the baseline
    dice = {row["label"]: float(row["dice"]) for row in brain}
    assert dice["grey matter"] >= 0.7 and dice["white matter"] >= 0.75, dice
    for sub in ("nuclei", "brain", "nuclei-otsu"):
        assert "<html" in (demo_out / "evaluation" / sub / "report.html").read_text().lower()
