import os
import signal
import subprocess
import sys

import pytest

from medannot.errors import OutputError
from medannot.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, temporary_sibling


def test_write_text_and_bytes(tmp_path):
    p = atomic_write_text(tmp_path / "sub" / "a.json", '{"a": 1}')
    assert p.read_text() == '{"a": 1}'
    atomic_write_bytes(p, b"xyz")
    assert p.read_bytes() == b"xyz"
    assert sorted(os.listdir(p.parent)) == ["a.json"]


def test_temp_is_hidden_sibling_with_suffix(tmp_path):
    t = temporary_sibling(tmp_path / "case.nii.gz")
    assert t.parent == tmp_path and t.name.startswith(".case.nii.gz.tmp-") and t.name.endswith(".nii.gz")
    assert temporary_sibling(tmp_path / "x.png").suffix == ".png"


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert final.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(OutputError, match="nothing was written"):
        with atomic_path(tmp_path / "x.bin"):
            pass
    assert not (tmp_path / "x.bin").exists()


def test_folder_as_target_is_refused(tmp_path):
    with pytest.raises(OutputError, match="folder"):
        atomic_write_text(tmp_path, "x")


def test_killed_process_leaves_no_partial_output(tmp_path):
    final = tmp_path / "big.bin"
    final.write_bytes(b"previous complete version")
    code = f"""
import os, signal
from medannot.io.atomic import atomic_path
with atomic_path({str(final)!r}) as tmp:
    with open(tmp, 'wb') as fh:
        fh.write(b'0' * 100000)
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert final.read_bytes() == b"previous complete version"
    leftovers = [n for n in os.listdir(tmp_path) if n != "big.bin"]
    assert all(n.startswith(".big.bin.tmp-") for n in leftovers)


def test_failing_rename_is_an_output_error_and_leaves_no_temp(tmp_path, monkeypatch):
    final = tmp_path / "out.txt"
    final.write_text("old")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr("medannot.io.atomic.os.replace", refuse)
    with pytest.raises(OutputError, match="cannot move the finished file into place.*Permission denied") as err:
        with atomic_path(final) as tmp:
            tmp.write_text("new")
    assert isinstance(err.value.__cause__, PermissionError) and err.value.path == final
    assert final.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_folder_appearing_at_the_target_is_an_output_error(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(OutputError, match="cannot move the finished file into place"):
        with atomic_path(final) as tmp:
            tmp.write_text("new")
            (final / "inside").mkdir(parents=True)  # another process made a folder there meanwhile: a real rename failure
    assert sorted(os.listdir(tmp_path)) == ["out.txt"] and final.is_dir()


def test_writers_wrap_a_failing_rename(tmp_path, monkeypatch):
    monkeypatch.setattr("medannot.io.atomic.os.replace", lambda src, dst: (_ for _ in ()).throw(PermissionError(13, "denied")))
    with pytest.raises(OutputError):
        atomic_write_text(tmp_path / "a.txt", "x")
    assert os.listdir(tmp_path) == []
