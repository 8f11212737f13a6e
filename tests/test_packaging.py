"""Packaging (issue 15 item 7): compatible ranges in pyproject.toml, an exact lock that make installs, and medannot
working beside another minor NumPy and MONAI.

The slow test builds a second environment that holds NumPy 2.3 (the lower bound of its range, one minor below the
lock) and MONAI 1.6.0 (the lower bound; MONAI 1.5 moves the bundled RetinaNet's boxes, see pyproject.toml) from PyPI and takes every other package from this venv; it annotates the real nuclei sample
with the bundled segmentation and detection models there and here and compares the outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Calendar-versioned: no major version to stay below.
NO_UPPER = {"tifffile"}
OTHER = {"numpy": "2.3.5", "monai": "1.6.0"}
SAMPLE = ROOT / "src" / "medannot" / "data_samples" / "stardist" / "img2d.tif"


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    opt = PYPROJECT["project"]["optional-dependencies"]
    return [Requirement(r) for r in [*PYPROJECT["project"]["dependencies"], *opt["ray"], *opt["federated"]]]


def test_runtime_dependencies_are_ranges_not_pins():
    for req in _requirements():
        ops = {s.operator for s in req.specifier}
        assert "==" not in ops and "===" not in ops, f"{req}: a library pins nothing; put the exact version in requirements.lock"
        assert ">=" in ops, f"{req}: no lower bound"
        assert "<" in ops or req.name in NO_UPPER, f"{req}: no upper bound (the next major or untested minor)"


def test_the_lock_is_what_is_installed_and_inside_every_range():
    pins = _lock()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock has {req.name}=={pins[name]}, outside {req.specifier}"
    installed = {name: metadata.version(name) for name in pins}
    assert installed == pins, "this venv differs from requirements.lock: make reinstalls it when the lock changes"
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from write_lock import NO_DEPS, closure
    finally:
        sys.path.pop(0)
    expected = closure("medannot", ("dev",))
    expected.pop("medannot")
    expected.update({canonicalize_name(n): metadata.version(n) for n in NO_DEPS})
    assert expected == pins, "requirements.lock is not the closure of pyproject.toml's requirements: run make lock"


def _annotate(python: str, model: str, out: Path, env: dict[str, str]) -> dict[str, str]:
    versions = subprocess.run([python, "-c", "import numpy, monai, json; print(json.dumps({'numpy': numpy.__version__, 'monai': monai.__version__}))"],
                              capture_output=True, text=True, env=env, check=True).stdout
    run = subprocess.run([python, "-m", "medannot.cli", "annotate", str(SAMPLE), "--model", model, "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(versions.strip().splitlines()[-1])


@pytest.mark.slow
def test_medannot_runs_with_another_minor_numpy_and_monai(tmp_path):
    ranges = {canonicalize_name(r.name): r.specifier for r in _requirements()}
    for name, version in OTHER.items():
        assert ranges[name].contains(version), f"pyproject.toml's {name} range {ranges[name]} refuses {version}"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", *(f"{n}=={v}" for n, v in OTHER.items())],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, f"pip could not install {OTHER} from PyPI: {pip.stderr[-1500:]}"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    here = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    # every other package from this venv, after the new venv's own NumPy and MONAI (site.addsitedir appends)
    Path(site, "zz_medannot_base.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    for model in ("nuclei", "nuclei-detect"):
        seen = _annotate(python, model, tmp_path / "other" / model, env)
        assert seen == OTHER, f"the second environment ran {seen}, not {OTHER}"
        assert _annotate(sys.executable, model, tmp_path / "lock" / model, env)["numpy"] != OTHER["numpy"]
    other, lock = tmp_path / "other" / "nuclei" / "img2d", tmp_path / "lock" / "nuclei" / "img2d"
    a, b = (np.asarray(nib.load(d / "labels.nii.gz").dataobj) > 0 for d in (other, lock))
    assert a.sum() > 1000 and 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.999
    boxes = [json.loads((tmp_path / v / "nuclei-detect" / "img2d" / "boxes.coco.json").read_text())["annotations"] for v in ("other", "lock")]
    assert len(boxes[0]) == len(boxes[1]) > 50
    np.testing.assert_allclose(sorted(b["bbox"] for b in boxes[0]), sorted(b["bbox"] for b in boxes[1]), atol=0.5)
