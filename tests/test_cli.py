"""The command line as a user meets it: one-line errors, exit codes, outputs on disk."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot import __version__, samples
from medannot.cli import app

runner = CliRunner()


@pytest.fixture()
def nuclei_png(tmp_path):
    """A real image: a 128x128 crop of the stardist nuclei sample, as 8-bit PNG."""
    arr = samples.nuclei_image().scalar()[:128, 300:428].astype(np.float32)
    arr = (255 * (arr - arr.min()) / (arr.max() - arr.min())).astype(np.uint8)
    folder = tmp_path / "in"
    folder.mkdir()
    PILImage.fromarray(arr).save(folder / "cells.png")
    return folder / "cells.png"


def test_version_and_help():
    assert __version__ in runner.invoke(app, ["--version"]).output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("annotate", "evaluate", "train", "models", "methods", "demo"):
        assert command in result.output


def test_annotate_with_classical_method_writes_case(nuclei_png, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(nuclei_png), "--method", "otsu", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    folder = out / "cells"
    meta = json.loads((folder / "annotation.json").read_text())
    assert meta["provenance"]["source"] == "classical" and meta["provenance"]["name"] == "otsu"
    labels = np.asarray(PILImage.open(folder / "labels.png"))
    assert labels.shape == (128, 128) and set(np.unique(labels)) == {0, 1}
    assert meta["labels"][0]["instance_count"] > 3  # several nuclei in the crop
    assert (folder / "overlay.png").exists() and (folder / "labels.nii.gz").exists()


def test_batch_skips_bad_file_and_finishes_the_rest(nuclei_png, tmp_path):
    folder = nuclei_png.parent
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (folder / "empty.nii.gz").write_bytes(b"")
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(folder), "--method", "otsu", "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert (out / "cells" / "annotation.json").exists()
    assert not (out / "broken").exists() and not (out / "empty").exists()
    errors = [line for line in result.output.splitlines() if line.startswith("medannot: skipped")]
    assert len(errors) == 2 and any("broken.png" in e for e in errors) and any("empty.nii.gz" in e for e in errors)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["annotate", "{img}", "--model", "no-such-model"], "no-such-model"),
        (["annotate", "{img}"], "exactly one of --model"),
        (["annotate", "{img}", "--method", "magic"], "unknown classical method"),
        (["annotate", "{missing}", "--method", "otsu"], "no such file"),
        (["evaluate", "{missing}", "{img}"], "missing"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(args, message, nuclei_png, tmp_path):
    args = [a.format(img=nuclei_png, missing=tmp_path / "missing.nii.gz") for a in args]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medannot: error:") and message in lines[0]


def test_real_entry_point_prints_no_traceback(tmp_path):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 truncated gzip")
    proc = subprocess.run(
        [sys.executable, "-m", "medannot.cli", "annotate", str(bad), "--method", "otsu", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "scan.nii.gz" in proc.stderr
    assert not (tmp_path / "o" / "scan").exists()


def test_evaluate_files_writes_csv_json_html(tmp_path):
    truth = np.zeros((40, 40), np.uint8)
    truth[10:30, 10:30] = 1
    pred = np.zeros_like(truth)
    pred[12:30, 10:30] = 1
    for name, arr in (("pred", pred), ("truth", truth)):
        (tmp_path / name).mkdir()
        PILImage.fromarray(arr).save(tmp_path / name / "case1.png")
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "--out", str(out), "--print", "json"])
    assert result.exit_code == 0, result.output
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("case,label,dice,iou,precision,recall,hd95,hd95_pooled,assd")
    row = json.loads((out / "metrics.json").read_text())["rows"][0]
    assert row["dice"] == pytest.approx(2 * 360 / (400 + 360))
    assert "<html" in (out / "report.html").read_text().lower()


def test_annotate_then_evaluate_a_2d_case(nuclei_png, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["annotate", str(nuclei_png), "--method", "otsu", "--out", str(out), "-q"]).exit_code == 0
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    truth = (samples.nuclei_instances().scalar()[:128, 300:428] > 0).astype(np.uint8)
    PILImage.fromarray(truth).save(truth_dir / "cells.png")
    result = runner.invoke(app, ["evaluate", str(out), str(truth_dir), "--out", str(tmp_path / "ev"), "--labels", '{"1": "nucleus"}'])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "ev" / "metrics.json").read_text())["rows"][0]
    pred = np.asarray(PILImage.open(out / "cells" / "labels.png")) == 1
    expected = 2 * (pred & (truth == 1)).sum() / (pred.sum() + (truth == 1).sum())
    assert row["label"] == "nucleus" and row["dice"] == pytest.approx(expected) and row["dice"] > 0.6


def test_agree_three_readers_writes_consensus(tmp_path):
    import nibabel as nib

    truth = (samples.nuclei_instances().scalar()[:96, :96] > 0).astype(np.uint8)
    from scipy import ndimage

    readers = {"r1": truth, "r2": ndimage.binary_erosion(truth).astype(np.uint8), "r3": ndimage.binary_dilation(truth).astype(np.uint8)}
    paths = []
    for name, arr in readers.items():
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(arr[:, :, None], np.diag([0.5, 0.5, 1.0, 1.0])), path)
        paths.append(str(path))
    out = tmp_path / "agree"
    result = runner.invoke(app, ["agree", *paths, "--out", str(out), "--labels", '{"1": "nucleus"}', "--print", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["readers"] == ["r1", "r2", "r3"] and len(data["pairs"]) == 3
    pair = next(p for p in data["pairs"] if (p["reader_a"], p["reader_b"]) == ("r1", "r2"))
    r1, r2 = readers["r1"] == 1, readers["r2"] == 1
    assert pair["dice"] == pytest.approx(2 * (r1 & r2).sum() / (r1.sum() + r2.sum()))
    consensus = np.asarray(nib.load(out / "consensus_staple.nii.gz").dataobj)[:, :, 0]
    # the eroded and dilated readers bracket the truth: consensus lies between them
    assert ((consensus == 1) >= (readers["r2"] == 1)).all() and ((consensus == 1) <= (readers["r3"] == 1)).all()
    sens = data["staple"]["1"]["sensitivity"]
    assert sens["r3"] > sens["r2"]  # the dilating reader misses less
    bad = runner.invoke(app, ["agree", paths[0], "--out", str(out)])
    assert bad.exit_code == 2 and "at least two reader files" in bad.output
