"""`medannot deid` end to end on a real folder tree with bad files in the batch."""

from __future__ import annotations

import re
import sqlite3

import pydicom
import pytest
from deid_helpers import CAT, COOKIES, CT_BRAINS, US_BURNED_IN, copy_inputs, identifying_values, leaks
from typer.testing import CliRunner

from medannot.cli import app

runner = CliRunner()
NAME_RE = re.compile(r"^2\.25\.[0-9]+(-[0-9]+)?\.dcm$")


@pytest.fixture()
def tree(tmp_path):
    """A folder tree: real files in two levels, plus a text file, a truncated file, a macOS ._ file
    and a (synthetic) copy of the cat whose SOP Instance UID looks like a path."""
    source = copy_inputs([COOKIES[0], CT_BRAINS[0], CAT], tmp_path / "in")
    sub = copy_inputs([COOKIES[1], US_BURNED_IN], source / "site A" / "day1")
    (sub / "notes.dcm").write_text("not dicom at all\n")
    (sub / "cut.dcm").write_bytes(CT_BRAINS[1].read_bytes()[:3000])
    (source / "._cat.dcm").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    (source / "DICOMDIR").write_bytes(b"\x00" * 200)  # an index of patients by name: never copied
    evil = pydicom.dcmread(CAT)
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):  # pydicom rightly objects
        evil.SOPInstanceUID = "../../../escaped/evil"
        evil.file_meta.MediaStorageSOPInstanceUID = evil.SOPInstanceUID
        evil.save_as(sub / "evil.dcm")
    return source


def test_cli_batch_end_to_end(tree, tmp_path):
    out, db = tmp_path / "out", tmp_path / "map.sqlite"
    result = runner.invoke(app, ["deid", str(tree), str(out), "--map", str(db), "--assume-no-burned-in"])
    assert result.exit_code == 2, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("medannot: skipped")]
    assert len(skipped) == 3
    assert any("DICOMDIR: DICOMDIR index not copied" in line for line in skipped)
    assert any("notes.dcm: not a DICOM file" in line for line in skipped)
    assert any("cut.dcm: truncated" in line for line in skipped)
    assert "Traceback" not in result.output and "._cat" not in result.output
    assert "de-identified 5 file(s), quarantined 1, skipped 3" in result.output

    written = sorted(p for p in out.rglob("*.dcm"))
    assert len(written) == 6
    assert all(NAME_RE.match(p.name) for p in written)  # never a name from the data
    assert all(out.resolve() in p.resolve().parents for p in written)
    assert not (tmp_path / "escaped").exists()
    assert {p.parent.relative_to(out).as_posix() for p in written} == {".", "site A/day1", "_quarantine/site A/day1"}
    for p in written:
        assert pydicom.dcmread(p).PatientIdentityRemoved == "YES"
    quarantined = list((out / "_quarantine").rglob("*.dcm"))
    assert len(quarantined) == 1 and quarantined[0].with_suffix(".reason.txt").exists()

    # a second run with the same map writes the same names (same new SOP Instance UIDs)
    again = runner.invoke(app, ["deid", str(tree), str(tmp_path / "out2"), "--map", str(db), "--assume-no-burned-in", "-q"])
    assert again.exit_code == 2
    assert sorted(p.name for p in (tmp_path / "out2").rglob("*.dcm")) == sorted(p.name for p in written)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM uid").fetchone()[0] > 10


def test_cli_single_file_with_options(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "deid", str(CT_BRAINS[0]), str(out), "--shift-dates", "--clean-descriptors", "--assume-no-burned-in",
        "--keep-private", "0019,xx92@SIEMENS CT VA0  COAD", "--secret", "project-x",
    ])
    assert result.exit_code == 0, result.output
    assert "no --map given" in result.output
    (written,) = out.glob("*.dcm")
    ds = pydicom.dcmread(written)
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113107", "113105", "113111"]
    assert ds.StudyDescription == "CT BRAIN WO IVCON"  # a descriptor without identifiers survives cleaning
    assert 0x00191092 in ds
    assert leaks(identifying_values(pydicom.dcmread(CT_BRAINS[0])), written) == []


def test_cli_errors_are_one_line(tmp_path):
    missing = runner.invoke(app, ["deid", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    bad_tag = runner.invoke(app, ["deid", str(CAT), str(tmp_path / "out"), "--keep-private", "0010,0010"])
    assert bad_tag.exit_code == 2 and "not a private tag" in bad_tag.output and "Traceback" not in bad_tag.output
    same = runner.invoke(app, ["deid", str(tmp_path), str(tmp_path)])
    assert same.exit_code == 2 and "must differ" in same.output


def test_cli_output_inside_input_is_not_read_back(tmp_path):
    source = copy_inputs([CAT], tmp_path / "in")
    for _ in range(2):  # the second run must not de-identify the first run's output again
        result = runner.invoke(app, ["deid", str(source), str(source / "deid"), "--map", str(tmp_path / "m.sqlite"), "-q"])
        assert result.exit_code == 0, result.output
        assert "de-identified 1 file(s)" in result.output
    assert len(list((source / "deid").rglob("*.dcm"))) == 1
