"""``medannot segment`` end to end on real files: 2D nuclei, 3D MNI152 and Colin27; PROMPTS.json; bad prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medannot.cli import app
from medannot.data import Task
from medannot.data.prompts import Prompts
from medannot.evaluation.interactive import first_click
from medannot.io import read_image, write_image
from medannot.tasks.promptable import default_engine
from medannot.training.promptable_sources import DATA_SAMPLES, MRICRON, object_cases

runner = CliRunner()
NUCLEI = DATA_SAMPLES / "stardist" / "img2d.tif"
MNI_T1 = DATA_SAMPLES / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def nuclei():
    """Two held-out (right-half) nuclei: their masks and first clicks on the FULL image's grid."""
    inst = read_image(DATA_SAMPLES / "stardist" / "mask2d.tif", kind="label").array[0]
    out = []
    for c in object_cases("held-out", 2, ["nuclei-right"])[:2]:
        value = int(c.name.split("/")[1])
        mask = inst == value
        out.append((mask, first_click(mask).index))
    return out


def _run(*args: str):
    return runner.invoke(app, ["segment", *map(str, args)])


def _case(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _labels(out: Path) -> np.ndarray:
    """The case's labels.nii.gz as an array (a 2D image's labels are a one-slice volume: the slice)."""
    arr = read_image(_case(out) / "labels.nii.gz", kind="label").array[0]
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def test_one_click_on_a_nucleus_with_the_default_engine(nuclei, tmp_path):
    mask, click = nuclei[0]
    out = tmp_path / "out"
    result = _run(NUCLEI, "--point", f"{click[0]},{click[1]}", "--voxel", "--out", out)
    assert result.exit_code == 0, result.output
    folder = _case(out)
    labels = _labels(out)
    assert labels.shape == (512, 512) and set(np.unique(labels)) == {0, 1}
    assert _dice(labels == 1, mask) > 0.6
    ann = json.loads((folder / "annotation.json").read_text())
    prov = ann["provenance"]
    assert Task.parse(prov["task"]) is Task.PROMPTABLE and prov["name"] == default_engine(2)
    assert prov["parameters"]["engine"]["engine"] == default_engine(2)
    assert prov["parameters"]["prompts"][0]["points"] == [{"ijk": [float(click[0]), float(click[1])], "positive": True}]
    assert (folder / "labels.png").is_file()


def test_world_coordinates_give_the_same_voxels_as_indices(nuclei, tmp_path):
    mask, click = nuclei[0]
    image = read_image(NUCLEI)
    xyz = image.geometry.index_to_world(np.array(click, float)[None])[0]
    a = _run(NUCLEI, "--point", ",".join(f"{v:.4f}" for v in xyz), "--engine", "growcut", "--out", tmp_path / "ras")
    b = _run(NUCLEI, "--point", f"{click[0]},{click[1]}", "--voxel", "--engine", "growcut", "--out", tmp_path / "vox")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    la, lb = _labels(tmp_path / "ras"), _labels(tmp_path / "vox")
    assert np.array_equal(la, lb) and la.any()


def test_prompts_json_of_two_objects_round_trips_into_provenance_and_labels(nuclei, tmp_path):
    sessions = [Prompts(label=f"nucleus {n}").with_point(click) for n, (_, click) in enumerate(nuclei, 1)]
    data = [s.to_dict() for s in sessions]
    assert [Prompts.from_dict(d).to_dict() for d in data] == data  # the file format round-trips
    path = tmp_path / "PROMPTS.json"
    path.write_text(json.dumps({"objects": data}))
    out = tmp_path / "out"
    result = _run(NUCLEI, "--prompts", path, "--engine", "growcut", "--out", out)
    assert result.exit_code == 0, result.output
    folder = _case(out)
    ann = json.loads((folder / "annotation.json").read_text())
    assert ann["provenance"]["parameters"]["prompts"] == data
    assert [(lab["value"], lab["name"]) for lab in ann["labels"]] == [(1, "nucleus 1"), (2, "nucleus 2")]
    labels = _labels(out)
    for value, (mask, _) in enumerate(nuclei, 1):
        assert _dice(labels == value, mask) > 0.5


def test_previous_labels_are_refined_and_other_labels_kept(nuclei, tmp_path):
    (mask_a, click_a), (mask_b, _) = nuclei
    image = read_image(NUCLEI)
    prev = np.zeros((1, 512, 512), np.uint8)
    prev[0][mask_a] = 1
    prev[0, 0:5, 0:5] = 1  # a stray bit of label 1 far from the object
    prev[0][mask_b] = 2
    from medannot.data import Image, ImageKind

    prev_path = tmp_path / "prev.nii.gz"
    write_image(Image(prev, image.geometry, ImageKind.LABEL), prev_path)
    out = tmp_path / "out"
    result = _run(NUCLEI, "--point", f"{click_a[0]},{click_a[1]}", "--voxel", "--previous", prev_path, "--engine", "growcut",
                  "--out", out)
    assert result.exit_code == 0, result.output
    labels = _labels(out)
    assert np.array_equal(labels == 2, mask_b)  # the other object untouched
    assert not (labels[0:5, 0:5] == 1).any()  # label 1 replaced by the new mask
    ann = json.loads((_case(out) / "annotation.json").read_text())
    assert ann["provenance"]["parameters"]["previous_mask"] is True


@pytest.mark.parametrize("args,words", [
    (["--point", "100,900", "--voxel"], "outside the image"),
    (["--box", "10,10,10,10", "--voxel"], "zero size"),
    ([], "empty prompt set"),
    (["--point", "1,2,3,4"], "expected 2 or 3"),
    (["--point", "100,100", "--voxel", "--engine", "magic-wand"], "unknown engine"),
])
def test_bad_prompts_are_one_line_and_nothing_is_written(args, words, tmp_path):
    out = tmp_path / "out"
    result = _run(NUCLEI, *args, "--out", out)
    assert result.exit_code == 2 and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_a_previous_mask_on_another_grid_and_a_bad_prompts_file_are_refused(tmp_path):
    from medannot.data import Image, ImageKind

    prev = tmp_path / "small.nii.gz"
    write_image(Image(np.zeros((1, 64, 64), np.uint8), read_image(NUCLEI).geometry, ImageKind.LABEL), prev)
    out = tmp_path / "out"
    result = _run(NUCLEI, "--point", "100,100", "--voxel", "--previous", prev, "--out", out)
    assert result.exit_code == 2 and "another grid" in result.output and not out.exists()
    bad = tmp_path / "PROMPTS.json"
    bad.write_text('{"space": "voxel", "points": [{"xyz": [1, 2]}]}')
    result = _run(NUCLEI, "--prompts", bad, "--out", out)
    assert result.exit_code == 2 and "has no 'ijk'" in result.output and not out.exists()


def test_3d_mni152_ventricles_from_one_click_in_world_millimetres(tmp_path):
    case = next(c for c in object_cases("train", 3, ["mni152-tissue-3d"]) if "/csf/" in c.name)
    click = first_click(case.mask, case.image.spacing).index
    xyz = case.image.geometry.index_to_world(np.array(click, float)[None])[0]
    out = tmp_path / "out"
    result = _run(MNI_T1, "--point", ",".join(f"{v:.3f}" for v in xyz), "--engine", "growcut", "--label", "ventricles", "--out", out)
    assert result.exit_code == 0, result.output
    labels = read_image(_case(out) / "labels.nii.gz", kind="label")
    assert labels.same_grid(read_image(MNI_T1)) and labels.array[0][click] == 1
    assert _dice(labels.array[0] == 1, case.mask) > 0.3
    ann = json.loads((_case(out) / "annotation.json").read_text())
    assert ann["labels"][0]["name"] == "ventricles" and ann["provenance"]["parameters"]["prompts"][0]["space"] == "ras"
    assert (_case(out) / "overlay_axial.png").is_file()


def test_3d_colin27_with_a_box_and_a_2d_network_refused_on_a_volume(tmp_path):
    ch2 = MRICRON / "ch2.nii.gz"
    case = next(c for c in object_cases("held-out", 3, ["colin27-aal"]) if c.name.endswith("Thalamus_L"))
    nz = np.argwhere(case.mask)
    lo, hi = nz.min(0), nz.max(0)
    out = tmp_path / "out"
    result = _run(ch2, "--box", ",".join(str(int(v)) for v in [*lo, *hi]), "--voxel", "--engine", "growcut", "--out", out)
    assert result.exit_code == 0, result.output
    labels = _labels(out) == 1
    inside = np.zeros_like(labels)
    inside[tuple(slice(a, b + 1) for a, b in zip(lo, hi))] = True
    assert labels.any() and not (labels & ~inside).any()  # the object stays within its box
    result = _run(ch2, "--point", "0,0,0", "--engine", "promptable-2d", "--out", tmp_path / "net")
    assert result.exit_code == 2 and "works on 2D images and the image is 3D" in result.output, result.output
    assert result.output.count("promptable-3d") == 1  # the 3D network is offered, once
    assert not (tmp_path / "net").exists() or not any((tmp_path / "net").iterdir())


def test_3d_network_from_the_shell_gives_the_mask_its_card_measured(tmp_path):
    """One click with the bundled 3D network on a held-out Colin27 structure: the shell's mask is the one the bundle's
    held-out run scored (same Dice after one click), and the provenance names the bundle."""
    import csv

    from medannot.models.bundle import Bundle, bundled_root
    from medannot.training.promptable_training import HELD_OUT_CSV

    case = next(c for c in object_cases("held-out", 3, ["colin27-aal"]) if c.name.endswith("Thalamus_L"))
    with (bundled_root() / "promptable-3d" / HELD_OUT_CSV).open() as fh:
        stored = next(float(r["dice_1"]) for r in csv.DictReader(fh) if r["engine"] == "promptable-3d" and r["case"] == case.name)
    click = first_click(case.mask, case.image.spacing).index
    out = tmp_path / "out"
    result = _run(MRICRON / "ch2.nii.gz", "--point", ",".join(map(str, click)), "--voxel", "--engine", "promptable-3d", "--out", out)
    assert result.exit_code == 0, result.output
    labels = _labels(out) == 1
    dice = 2 * (labels & case.mask).sum() / (labels.sum() + case.mask.sum())
    assert dice == pytest.approx(stored, abs=0.01)
    engine = json.loads((_case(out) / "annotation.json").read_text())["provenance"]["parameters"]["engine"]
    assert (engine["engine"], engine["version"]) == ("promptable-3d", Bundle.load("promptable-3d").version)
