"""evaluate_paths with lesions, FROC from annotate-style folders, manifests, thumbnails and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from medannot.cli import app
from medannot.data import Geometry, Image
from medannot.errors import InputError
from medannot.evaluation import evaluate_paths
from medannot.evaluation.instances import froc
from medannot.io import write_image

SPACING = (2.0, 1.0, 1.0)


def _nifti(path, array, spacing=SPACING):
    return write_image(Image.from_spatial(array, Geometry(spacing=spacing), kind="label"), path)


def _hand_made() -> tuple[np.ndarray, np.ndarray]:
    """Two true lesions (A found, B missed) and one false-positive prediction C."""
    truth = np.zeros((8, 20, 20), np.uint8)
    truth[2:5, 2:7, 2:7] = 1  # A
    truth[2:5, 12:16, 12:16] = 1  # B, missed
    pred = np.zeros_like(truth)
    pred[2:5, 2:7, 3:7] = 1  # A, IoU 0.8
    pred[5:7, 14:18, 2:5] = 1  # C, false positive
    return pred, truth


def test_lesion_columns_on_a_hand_made_case(tmp_path):
    pred, truth = _hand_made()
    _nifti(tmp_path / "t" / "c1.nii.gz", truth)
    _nifti(tmp_path / "p" / "c1.nii.gz", pred)
    result = evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "out", labels={1: "lesion"}, lesions=True)
    (row,) = result.rows
    assert row["n_truth_lesions"] == 2 and row["n_pred_lesions"] == 2
    assert row["lesion_tp"] == 1 and row["false_positives"] == 1 and row["lesion_fn"] == 1
    assert row["lesion_sensitivity"] == 0.5 and row["lesion_precision"] == 0.5 and row["lesion_f1"] == 0.5
    # PQ = IoU of the one match / (TP + FP/2 + FN/2) = 0.8 / 2
    assert row["sq"] == pytest.approx(0.8) and row["pq"] == pytest.approx(0.4) and row["rq"] == pytest.approx(0.5)
    les = result.summary["lesions"]["lesion"]
    assert (les["tp"], les["fp"], les["fn"], les["fp_per_case"]) == (1, 1, 1, 1.0)
    assert "FROC not computed" in result.summary["froc"]["skipped"]  # plain files carry no scores
    header = (tmp_path / "out" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"lesion_sensitivity", "lesion_precision", "lesion_f1", "false_positives", "pq"} <= set(header)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Lesions</h2>" in page and "1 of 2 found" in page

    # The overlap criterion with threshold 0 counts any overlap as a match; same counts here.
    r2 = evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "o2", lesions=True, match="overlap", match_threshold=0.0)
    assert r2.rows[0]["lesion_tp"] == 1 and r2.settings["match"] == "overlap"
    # Without lesions, no lesion column.
    r3 = evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "o3")
    assert "lesion_f1" not in r3.rows[0] and "lesions" not in r3.summary


def _annotate_folder(root, case, pred, instances, scores, spacing=SPACING):
    folder = root / case
    _nifti(folder / "labels.nii.gz", pred, spacing)
    _nifti(folder / "instances.nii.gz", instances, spacing)
    doc = {
        "instances": [{"id": i, "label": 1, "score": s} for i, s in scores.items()],
        "provenance": {"input": {"path": str(root / "no_such_image.nii.gz")}},
    }
    (folder / "annotation.json").write_text(json.dumps(doc))


def test_froc_from_annotate_folders_matches_instances_froc(tmp_path):
    rng = np.random.default_rng(3)
    cases = []
    for k in range(3):
        truth = np.zeros((6, 24, 24), np.uint8)
        inst = np.zeros((6, 24, 24), np.uint16)
        for j in range(3):
            y, x = 2 + 7 * j, 2 + 6 * k
            truth[1:4, y : y + 5, x : x + 5] = 1
            if (j + k) % 3:  # found lesions, with scores
                inst[1:4, y : y + 5, x + (k % 2) : x + 5] = len(np.unique(inst))
        fp_id = int(inst.max()) + 1
        inst[4:6, 20:23, 18:22] = fp_id  # a false positive
        scores = {int(i): float(rng.uniform(0.2, 0.99)) for i in np.unique(inst) if i}
        _annotate_folder(tmp_path / "p", f"case{k}", (inst > 0).astype(np.uint8), inst, scores)
        _nifti(tmp_path / "t" / f"case{k}.nii.gz", truth)
        from medannot.evaluation.instances import to_instances

        cases.append((inst, to_instances(truth > 0), scores))
    result = evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "out", labels={1: "nodule"}, lesions=True, max_workers=1)
    curve = result.summary["froc"]["curves"]["nodule"]
    expected = froc(cases)
    assert curve["score"] == pytest.approx(expected["score"])
    assert curve["sensitivity"] == pytest.approx(expected["sensitivity"])
    assert curve["fp_per_case"] == pytest.approx(expected["fp_per_case"])
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h3>FROC</h3>" in page and "FROC score" in page

    # A classical method writes score None: FROC is skipped with the reason.
    doc = json.loads((tmp_path / "p" / "case1" / "annotation.json").read_text())
    doc["instances"][0]["score"] = None
    (tmp_path / "p" / "case1" / "annotation.json").write_text(json.dumps(doc))
    r2 = evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "o2", labels={1: "nodule"}, lesions=True, max_workers=1)
    assert "scores are missing" in r2.summary["froc"]["skipped"]
    assert r2.rows[0]["lesion_f1"] == result.rows[0]["lesion_f1"]


def _two_structures(seed: int):
    rng = np.random.default_rng(seed)
    truth = np.zeros((10, 30, 30), np.uint8)
    truth[2:8, 5:20, 5:20] = 1
    truth[3:7, 22:27, 22:27] = 2
    pred = truth.copy()
    d = int(rng.integers(0, 3))
    pred[2:8, 5 + d : 20 + d, 5:20][truth[2:8, 5 + d : 20 + d, 5:20] != 2] = 1
    return pred, truth


def test_manifest_breakdown_lists_missing_cases(tmp_path):
    dice = {}
    for i, name in enumerate(["a1", "a2", "b1", "b2"]):
        pred, truth = _two_structures(i)
        if name == "b2":
            pred[pred == 2] = 0  # structure 2 missed
        _nifti(tmp_path / "t" / f"{name}.nii.gz", truth)
        _nifti(tmp_path / "p" / f"{name}.nii.gz", pred)
    (tmp_path / "m.csv").write_text("case,site,scanner\na1,A,x\na2,A,y\nb1,B,x\nghost,B,x\n")
    result = evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "out", labels={1: "liver", 2: "spleen"}, manifest=tmp_path / "m.csv")
    for r in result.rows:
        dice[(r["case"], r["label"])] = r["dice"]
    by_case = {r["case"]: r for r in result.rows}
    assert by_case["a1"]["site"] == "A" and by_case["b2"]["site"] == "(not in manifest)"
    man = result.summary["manifest"]
    assert man["not_evaluated"] == ["ghost"] and man["not_in_manifest"] == ["b2"]
    site = man["groups"]["site"]
    assert set(site) == {"A", "B", "(not in manifest)"}
    assert site["A"]["n_cases"] == 2 and site["A"]["labels"]["liver"]["n"] == 2
    assert site["A"]["labels"]["liver"]["dice"]["mean"] == pytest.approx(np.mean([dice[("a1", "liver")], dice[("a2", "liver")]]))
    assert site["(not in manifest)"]["labels"]["spleen"]["dice"]["mean"] == 0.0  # the missed structure is kept
    assert set(man["groups"]["scanner"]) == {"x", "y", "(not in manifest)"}
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Breakdown by manifest" in page and "ghost" in page and "by scanner" in page
    assert "site" in (tmp_path / "out" / "metrics.csv").read_text().splitlines()[0]

    (tmp_path / "bad.csv").write_text("name,site\na1,A\n")
    with pytest.raises(InputError, match="no 'case' column"):
        evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "o", manifest=tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text("case,dice\na1,A\n")
    with pytest.raises(InputError, match="names of result columns"):
        evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "o", manifest=tmp_path / "dup.csv")


def test_thumbnails_self_contained_and_capped(tmp_path):
    image = np.random.default_rng(0).normal(100, 20, (10, 30, 30)).astype(np.float32)
    write_image(Image.from_spatial(image, Geometry(spacing=SPACING)), tmp_path / "img.nii.gz")
    for i, name in enumerate(["c1", "c2", "c3"]):
        pred, truth = _two_structures(i)
        if name == "c3":
            pred[:] = 0
        _nifti(tmp_path / "p" / name / "labels.nii.gz", pred)
        (tmp_path / "p" / name / "annotation.json").write_text(json.dumps({"provenance": {"input": {"path": str(tmp_path / "img.nii.gz")}}}))
        _nifti(tmp_path / "t" / f"{name}.nii.gz", truth)
    result = evaluate_paths(tmp_path / "p", tmp_path / "t", tmp_path / "out", labels={1: "liver", 2: "spleen"}, max_thumbnails=4)
    assert len(result.thumbnails) == 4
    assert set(list(result.thumbnails)[:2]) == {("c3", "liver"), ("c3", "spleen")}  # missed entirely: worst first
    assert all(t["image"] for t in result.thumbnails.values())  # the grey image was found via annotation.json
    page = (tmp_path / "out" / "report.html").read_text()
    assert len(re.findall(r"<img ", page)) == 2 + 4  # two box plots + four thumbnails
    assert "false positive (predicted only)" in page and "missed entirely" in page
    no_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|//", no_data, flags=re.IGNORECASE)
    assert not re.search(r"<link|<script|url\(|@import", no_data, flags=re.IGNORECASE)
    assert len(page) < 5_000_000


def test_cli_evaluate_json_and_table(tmp_path):
    pred, truth = _hand_made()
    _nifti(tmp_path / "t" / "c1.nii.gz", truth)
    _nifti(tmp_path / "p" / "c1.nii.gz", pred)
    (tmp_path / "m.csv").write_text("case,site\nc1,A\n")
    runner = CliRunner()
    args = ["evaluate", str(tmp_path / "p"), str(tmp_path / "t"), "-o", str(tmp_path / "ev"), "--lesions", "--match", "iou",
            "--match-threshold", "0.5", "--tolerance", "2", "--manifest", str(tmp_path / "m.csv"), "--labels", '{"1": "lesion"}']
    result = runner.invoke(app, [*args, "--print", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # nothing but JSON on stdout
    assert doc["settings"]["tolerance_mm"] == 2.0 and doc["rows"][0]["lesion_f1"] == 0.5
    assert doc["summary"]["manifest"]["groups"]["site"]["A"]["n_cases"] == 1
    short = runner.invoke(app, [*args[:-2], "--labels", "1=lesion", "--print", "json"])  # the other --labels syntax
    assert short.exit_code == 0, short.output
    assert json.loads(short.stdout)["rows"] == doc["rows"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "lesion" in table.stdout and "0.500" in table.stdout and "report.html" in table.stdout
    bad = runner.invoke(app, [*args[:6], "--match", "centre"])
    assert bad.exit_code == 2 and "--match" in bad.output
    typo = runner.invoke(app, [*args[:4], str(tmp_path / "ev2"), *args[5:], "--print", "xml"])  # --format is annotate's file formats
    assert typo.exit_code == 2 and "--print must be one of: table, json" in typo.output and "'xml'" in typo.output
    assert not (tmp_path / "ev2").exists() and "--format" not in runner.invoke(app, ["evaluate", "--help"]).output
