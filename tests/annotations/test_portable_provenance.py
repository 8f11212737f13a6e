"""annotation.json holds no absolute path of the machine, and the host and user only when asked."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot import samples
from medannot.annotations.schema import Provenance, portable_path, portable_provenance
from medannot.cli import app
from medannot.evaluation import evaluate_paths

runner = CliRunner()


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _cells(folder: Path) -> Path:
    arr = samples.nuclei_image().scalar()[:96, 300:396].astype(np.float32)
    arr = (255 * (arr - arr.min()) / (arr.max() - arr.min())).astype(np.uint8)
    folder.mkdir(parents=True)
    PILImage.fromarray(arr).save(folder / "cells.png")
    return folder / "cells.png"


def test_portable_paths(tmp_path):
    (tmp_path / "data" / "p7").mkdir(parents=True)
    (tmp_path / "data" / "p7" / "ct.nii.gz").write_bytes(b"")
    assert portable_path(tmp_path / "data" / "p7" / "ct.nii.gz", tmp_path / "data") == "p7/ct.nii.gz"
    assert portable_path(tmp_path / "data" / "p7" / "ct.nii.gz", tmp_path / "data" / "p7" / "ct.nii.gz") == "ct.nii.gz"
    assert portable_path(tmp_path / "data" / "p7", tmp_path / "data" / "p7") == "p7"
    assert portable_path("/opt/models/brain-mri", tmp_path) == "brain-mri"
    assert portable_path("http://alice:secret@pacs:8042/dicom-web/studies/1.2") == "http://pacs:8042/dicom-web/studies/1.2"
    prov = Provenance("model", "m", parameters={"bundle_path": "/site-packages/medannot/bundled/m", "tta": True},
                      input={"path": str(tmp_path / "data" / "p7" / "ct.nii.gz"), "PatientID": "P1"})
    clean = portable_provenance(prov, tmp_path / "data")
    assert clean.input == {"path": "p7/ct.nii.gz", "PatientID": "P1"} and clean.parameters == {"bundle_path": "m", "tta": True}
    assert (clean.host, clean.user) == ("", "") and Provenance("classical", "otsu").host == ""
    assert portable_provenance(prov, tmp_path / "data", record_machine=True).host == platform.node()


def test_annotate_writes_no_absolute_path_and_no_machine_unless_asked(tmp_path):
    _cells(tmp_path / "in")
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(tmp_path / "in"), "--model", "nuclei", "--out", str(out), "-q", "--no-tta"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "cells" / "annotation.json").read_text())
    texts = list(_strings(doc))
    assert not [t for t in texts if t.startswith("/") or str(tmp_path) in t], texts
    prov = doc["provenance"]
    assert prov["input"]["path"] == "cells.png" and "root" not in prov["input"]  # an absolute INPUT is not recorded
    assert prov["parameters"]["bundle_path"] == "nuclei" and prov["host"] == "" and prov["user"] == ""
    coco = json.loads((out / "cells" / "boxes.coco.json").read_text())
    assert not [t for t in _strings(coco) if t.startswith("/")]
    again = runner.invoke(app, ["annotate", str(tmp_path / "in"), "--method", "otsu", "--out", str(out), "-q", "--record-machine"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "cells" / "annotation.json").read_text())["provenance"]["host"] == platform.node()


def test_a_relative_input_is_found_again_by_evaluate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _cells(Path("in"))
    assert runner.invoke(app, ["annotate", "in", "--method", "otsu", "--out", "out", "-q"]).exit_code == 0
    info = json.loads(Path("out/cells/annotation.json").read_text())["provenance"]["input"]
    assert info["path"] == "cells.png" and info["root"] == "in"
    truth = Path("truth")
    truth.mkdir()
    labels = np.asarray(PILImage.open("out/cells/labels.png"))
    PILImage.fromarray((labels > 0).astype(np.uint8)[::-1].copy()).save(truth / "cells.png")  # a different mask
    result = evaluate_paths("out", truth, "ev", labels={1: "nucleus"})
    assert all(t.image for t in result.thumbnails.values()) and result.thumbnails  # drawn on the input image, found again
