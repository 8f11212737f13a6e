"""Batch annotation on Ray: a local Ray head on loopback with two workers, one killed mid-run.

The cases are tiles of the real stardist nuclei image, annotated by the bundled nuclei model; every Ray result is
compared voxel for voxel with the plain loop's (``annotate_inputs``, same model, same threads).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medannot import samples
from medannot.io import read_image, write_image
from medannot.tasks import PredictOptions, load_predictor
from medannot.training.federated_data import tile_pairs
from medannot.workflows.annotate import CaseResult, annotate_inputs
from medannot.workflows.batch_ray import RayBatch, RaySettings

RAY = Path(sys.executable).parent / "ray"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ray start --head`` on loopback with 2 CPUs (two one-thread workers), stopped by its process group at the end."""
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    env = dict(os.environ, RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0")
    log = (temp / "head.log").open("w")
    proc = subprocess.Popen([str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", "2", "--include-dashboard", "false", "--object-store-memory", str(200 * 2**20),
                             "--temp-dir", str(temp), "--disable-usage-stats"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "--block" not in (temp / "head.log").read_text() or "will now block" not in (temp / "head.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray head did not start: {(temp / 'head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 256x256 tiles of the nuclei image (the four quarters and two straddling the middle rows), as TIFF files,
    and one file that is no image."""
    folder = tmp_path_factory.mktemp("tiles")
    image, label = samples.nuclei_image(), samples.nuclei_instances()
    pairs = tile_pairs(image, label, (256, 256), "quarter") + tile_pairs(image, label, (256, 256), "shifted", region=[(128, 384), (0, 512)])
    for name, tile, _ in pairs:
        write_image(tile, folder / f"{name}.tif")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    return folder


def _factory() -> functools.partial:
    return functools.partial(load_predictor, "nuclei", PredictOptions(progress=False))


def _labels(folder: Path) -> np.ndarray:
    return np.asarray(read_image(folder / "labels.nii.gz").array)


def test_ray_batch_survives_a_killed_worker_and_resumes(ray_head: str, tiles: Path, tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    plain = annotate_inputs(tiles, _factory()(), tmp_path / "plain")
    batch = RayBatch(_factory(), RaySettings(address=ray_head, workers=2, threads=1, in_flight=2, retries=2))
    killed: list[int] = []

    def kill_one_worker(result: CaseResult) -> None:
        if not killed and result.ok:  # the first case is back: both workers now hold cases; kill one of them mid-case
            killed.append(batch.worker_pids()[1])
            os.kill(killed[0], signal.SIGKILL)

    out = tmp_path / "ray"
    results = batch.run(tiles, out, on_case=kill_one_worker, progress=False)

    assert killed and batch.retried, "a worker was killed while it held cases, and they were tried again"
    assert [r.name for r in results] == [r.name for r in plain]
    by_name = {r.name: r for r in results}
    assert not by_name["broken"].ok and by_name["broken"].reason == next(r for r in plain if r.name == "broken").reason
    for p in plain:
        if p.ok:
            r = by_name[p.name]
            assert r.ok and not r.resumed and r.folder == out / p.name
            np.testing.assert_array_equal(_labels(r.folder), _labels(p.folder))  # same model, same threads: same labels
    assert sorted(f.name for f in out.iterdir() if f.is_dir()) == sorted(r.name for r in plain if r.ok)

    # a re-run skips every complete case; a case folder lost (as after a crash) is the only one redone
    stamps = {f: f.stat().st_mtime_ns for f in out.glob("*/labels.nii.gz")}
    again = RayBatch(_factory(), RaySettings(address=ray_head, workers=2)).run(tiles, out, progress=False)
    assert all(r.resumed for r in again if r.ok) and sum(r.ok for r in again) == len(stamps)
    assert {f: f.stat().st_mtime_ns for f in out.glob("*/labels.nii.gz")} == stamps
    first = next(p for p in plain if p.ok)
    lost = out / first.name
    shutil.rmtree(lost)
    third = RayBatch(_factory(), RaySettings(address=ray_head, workers=2)).run(tiles, out, progress=False)
    redone = [r.name for r in third if r.ok and not r.resumed]
    assert redone == [first.name]
    np.testing.assert_array_equal(_labels(lost), _labels(first.folder))


def test_plain_loop_resumes_only_the_same_model(tiles: Path, tmp_path: Path) -> None:
    predictor = _factory()()
    first = annotate_inputs(tiles, predictor, tmp_path, skip_complete=True)
    assert not any(r.resumed for r in first)
    again = annotate_inputs(tiles, predictor, tmp_path, skip_complete=True)
    assert [r.resumed for r in again] == [r.ok for r in first]  # the failed input is tried again, the rest skipped
    other = load_predictor("nuclei", PredictOptions(progress=False, tta=True))  # other settings: other results
    redo = annotate_inputs(tiles, other, tmp_path, skip_complete=True)
    assert not any(r.resumed for r in redo)


def test_cli_ray_address_and_no_ray_without_it(ray_head: str, tiles: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medannot.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["annotate", str(tiles), "--model", "nuclei", "--out", str(out), "--ray", ray_head, "--ray-workers", "2", "-q"])
    assert res.exit_code == 2, res.output  # the broken file: one line, the rest annotated
    assert "broken.png: not a readable picture" in res.output and "1 of 7 inputs failed" in res.output
    assert len([f for f in out.iterdir() if (f / "annotation.json").is_file()]) == 6

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom medannot.cli import app\n"
            f"r = CliRunner().invoke(app, ['annotate', {str(next(tiles.glob('quarter_000.tif')))!r}, '--model', 'nuclei', '--out', {str(tmp_path / 'plain')!r}, '-q'])\n"
            "assert r.exit_code == 0, r.output\nassert 'ray' not in sys.modules, 'ray imported without --ray'\nprint('no ray')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "no ray" in done.stdout, done.stderr[-2000:]
