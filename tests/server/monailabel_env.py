"""MONAI Label's client in its own virtual environment, made on first use (``make test`` on a fresh machine).

``.venv-monailabel`` at the repository root gets the pins of ``monailabel_client.txt`` with ``--no-deps`` (PyPI
only; about 10 s once). A stamp holding the pins decides whether it is current; a changed pin list rebuilds it.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "monailabel_client.txt"
DRIVER = HERE / "monailabel_driver.py"
VENV = HERE.parents[1] / ".venv-monailabel"


def client_python() -> Path:
    """The Python of the client's environment, created or rebuilt when missing or stale (one test run at a time)."""
    with open(VENV.with_name(VENV.name + ".lock"), "w") as lock:  # noqa: PTH123
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure()


def _ensure() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300, capture_output=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                           "-r", str(REQUIREMENTS)], timeout=900, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"could not install MONAI Label's client into {VENV}:\n{done.stderr[-2000:]}")
    stamp.write_text(wanted)
    return python


def run_client(python: Path, base_url: str, tmpdir: Path, password: str, calls: list[dict]) -> list[dict]:
    """Run ``calls`` through MONAILabelClient (see ``monailabel_driver.py``); one result per call."""
    plan = {"url": base_url, "tmpdir": str(tmpdir), "password": password, "calls": calls}
    done = subprocess.run([str(python), str(DRIVER)], input=json.dumps(plan), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the MONAI Label client driver failed:\n{done.stderr[-3000:]}")
    results = json.loads(done.stdout)
    if len(results) != len(calls):
        raise RuntimeError(f"expected {len(calls)} results, got {results}")
    return results
