"""Benchmark: one interaction of each classical promptable engine, time and peak memory, ratios between engines.

Cases (all SYNTHETIC phantoms: smooth blobs with texture and noise; nothing here measures accuracy):

- ``synthetic-2d-512``: a 512 x 512 image with a blob about 90 px across;
- ``synthetic-3d-64-in-400x400x300``: a blob about 64 voxels across in a 400 x 400 x 300 volume;
- ``synthetic-3d-160-in-400x400x300``: a blob about 160 voxels across in the same volume size.

For each case and engine it runs the simulated user for ``--clicks`` interactions (first click at the
object's centre, then clicks at the centre of the largest error) and prints the median time of one
interaction (all engines timed interleaved in one process), Dice after the last interaction (a sanity
check on a synthetic blob, not an accuracy claim), and the peak resident memory of one interaction above
the process's memory before it, measured in a fresh process per engine and case. Ratios are against
``growcut``. Targets of issue 11 for the network: < 0.2 s (2D 512^2), < 1 s (3D object up to 160^3),
< 2 GB; the classical engines are the baselines it is compared with.

Usage: ``python benchmarks/interactive.py [--threads 2] [--clicks 3] [--cases 2d,3d64,3d160]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil
from scipy import ndimage as ndi

ENGINES = ("region-growing", "random-walker", "growcut")
CASES = {
    "2d": ("synthetic-2d-512", (512, 512), 90),
    "3d64": ("synthetic-3d-64-in-400x400x300", (400, 400, 300), 64),
    "3d160": ("synthetic-3d-160-in-400x400x300", (400, 400, 300), 160),
}


def phantom(shape: tuple[int, ...], diameter: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC image (float32) and blob mask: a lumpy ellipsoid (1.0) on a textured background (0.3), noise 0.08."""
    rng = np.random.default_rng(seed)
    centre = np.asarray(shape) / 2
    r = diameter / 2
    box = tuple(slice(int(c - 0.6 * diameter), int(c + 0.6 * diameter)) for c in centre)
    sub = tuple(s.stop - s.start for s in box)
    grid = np.meshgrid(*[np.arange(a.start, a.stop) - c for a, c in zip(box, centre)], indexing="ij", sparse=True)
    radii = r * np.array([1.0, 0.85, 0.9][: len(shape)])
    ell = sum((g / q) ** 2 for g, q in zip(grid, radii))
    lump = ndi.gaussian_filter(rng.standard_normal(sub).astype(np.float32), max(2.0, diameter / 12))
    lump /= lump.std() + 1e-6
    mask = np.zeros(shape, bool)
    mask[box] = (1.0 - ell + 0.15 * lump) > 0
    image = np.full(shape, 0.3, np.float32)
    image[mask] = 1.0
    image += rng.normal(0, 0.08, shape).astype(np.float32)
    return image, mask


def measure(fn: Callable[[], Any], interval: float = 0.005) -> tuple[Any, float, int]:
    """Run ``fn``; return (result, seconds, peak RSS increase in bytes, sampled every ``interval`` s)."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(interval)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        dt = time.perf_counter() - t0
        done.set()
        th.join()
    return out, dt, max(peak[0], proc.memory_info().rss) - base


def _session(engine_name: str, case: str, clicks: int) -> dict[str, Any]:
    from medannot.classical.interactive import create_engine
    from medannot.data import Image
    from medannot.evaluation.interactive import simulate

    name, shape, diameter = CASES[case]
    image, mask = phantom(shape, diameter)
    img = Image.from_spatial(image)
    engine = create_engine(engine_name)
    res, _, mem = measure(lambda: simulate(engine, img, mask, max_clicks=clicks, case=name))
    return {"seconds": res.seconds, "dice": res.dices[-1], "peak_mb": mem / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=3)
    ap.add_argument("--cases", default="2d,3d64,3d160")
    ap.add_argument("--one", nargs=2, metavar=("ENGINE", "CASE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(a.threads)
    if a.one:
        print(json.dumps(_session(a.one[0], a.one[1], a.clicks)))
        return
    from medannot.classical.interactive import create_engine
    from medannot.data import Image
    from medannot.evaluation.interactive import simulate

    for case in a.cases.split(","):
        name, shape, diameter = CASES[case]
        image, mask = phantom(shape, diameter)
        img = Image.from_spatial(image)
        times: dict[str, list[float]] = {e: [] for e in ENGINES}
        dice: dict[str, float] = {}
        for _ in range(2):  # interleaved: every engine sees the same machine load
            for e in ENGINES:
                res = simulate(create_engine(e), img, mask, max_clicks=a.clicks, case=name)
                times[e] += res.seconds
                dice[e] = res.dices[-1]
        mem = {}
        for e in ENGINES:
            env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
            out = subprocess.run([sys.executable, __file__, "--clicks", str(a.clicks), "--one", e, case], capture_output=True,
                                 text=True, env=env, check=True)
            mem[e] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
        ref = float(np.median(times["growcut"]))
        print(f"{name} ({int(mask.sum())} object voxels), {a.clicks} interactions, {a.threads} threads:")
        for e in ENGINES:
            med = float(np.median(times[e]))
            print(f"  {e:15s} {med:7.3f} s/interaction (x{med / ref:5.2f} growcut)  max {max(times[e]):6.3f} s  "
                  f"peak +{mem[e]:7.1f} MB  Dice after {a.clicks}: {dice[e]:.3f}")


if __name__ == "__main__":
    main()
