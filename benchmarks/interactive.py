"""Benchmark: one interaction of each promptable engine (network and classical), time and peak memory, ratios in one run.

Timing cases (all SYNTHETIC phantoms: smooth blobs with texture and noise; nothing here measures accuracy):

- ``synthetic-2d-512``: a 512 x 512 image with a blob about 90 px across;
- ``synthetic-3d-64-in-400x400x300``: a blob about 64 voxels across in a 400 x 400 x 300 volume;
- ``synthetic-3d-160-in-400x400x300``: a blob about 160 voxels across in the same volume size.

Engines: the classical ones and every bundled promptable network of the case's dimensionality
(``medannot.tasks.promptable.list_engines``). For each case and engine it runs the simulated user for ``--clicks``
interactions (first click at the object's centre, then clicks at the centre of the largest error) and prints the
median time of one interaction (engines timed interleaved, twice, in one process), the ratio to ``growcut``, Dice
after the last interaction (a sanity check on a synthetic blob), and the peak resident memory of one engine call above
the process's memory before it (the simulated user's own work on the whole volume left out), measured in a fresh
process per engine and case.

Accuracy (``--accuracy N``): the same engines on N evenly spaced HELD-OUT real 2D objects
(:func:`medannot.training.promptable_training.held_out_cases`: right-half stardist nuclei, Colin27 AAL slices, the
MR overlay lesion; named in the output), ``--accuracy-clicks`` interactions each: Dice@1, NoC@85 and NoC@85 as a
ratio to growcut's and region growing's (issue 11's targets: at most 0.5).

Targets of issue 11 for the network: < 0.2 s (2D 512^2), < 1 s (3D object up to 160^3), < 2 GB.

Usage: ``python benchmarks/interactive.py [--threads 2] [--clicks 3] [--cases 2d,3d64,3d160] [--accuracy 12]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from medannot.testing.memory import measure as measure_call

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
    out, dt, mem = measure_call(fn, interval)
    return out, dt, mem.extra


def engines_for(ndim: int) -> list[str]:
    """Classical engines and the bundled promptable networks of ``ndim`` dimensions."""
    from medannot.tasks.promptable import list_engines

    return list_engines(ndim)


def _session(engine_name: str, case: str, clicks: int) -> dict[str, Any]:
    from medannot.data import Image
    from medannot.evaluation.interactive import simulate
    from medannot.tasks.promptable import create_engine

    name, shape, diameter = CASES[case]
    image, mask = phantom(shape, diameter)
    img = Image.from_spatial(image)
    engine = create_engine(engine_name)
    peaks: list[int] = []

    class Measured:
        """The engine with the peak memory of each of its calls recorded (the simulated user's own work on the whole
        volume, its error regions and distance maps, is not the engine's and is left out)."""

        name = engine.name

        def segment(self, image: Any, prompts: Any) -> Any:
            out, _, mem = measure(lambda: engine.segment(image, prompts))
            peaks.append(mem)
            return out

    res, _, whole = measure(lambda: simulate(Measured(), img, mask, max_clicks=clicks, case=name))
    return {"seconds": res.seconds, "dice": res.dices[-1], "peak_mb": max(peaks) / 2**20, "session_peak_mb": whole / 2**20}


def timing(cases: list[str], clicks: int, threads: int) -> dict[str, Any]:
    """Median seconds per interaction, ratio to growcut, peak memory and final Dice, per case and engine."""
    from medannot.data import Image
    from medannot.evaluation.interactive import simulate
    from medannot.tasks.promptable import create_engine

    report: dict[str, Any] = {}
    for case in cases:
        name, shape, diameter = CASES[case]
        image, mask = phantom(shape, diameter)
        img = Image.from_spatial(image)
        engines = engines_for(len(shape))
        times: dict[str, list[float]] = {e: [] for e in engines}
        dice: dict[str, float] = {}
        for _ in range(2):  # interleaved: every engine sees the same machine load
            for e in engines:
                res = simulate(create_engine(e), img, mask, max_clicks=clicks, case=name)
                times[e] += res.seconds
                dice[e] = res.dices[-1]
        mem = {}
        for e in engines:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            out = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--clicks", str(clicks), "--one", e, case],
                                 capture_output=True, text=True, env=env, check=True)
            mem[e] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
        ref = float(np.median(times["growcut"]))
        print(f"{name} ({int(mask.sum())} object voxels), {clicks} interactions, {threads} threads:", flush=True)
        rows = {}
        for e in engines:
            med = float(np.median(times[e]))
            rows[e] = {"median_s": round(med, 4), "max_s": round(max(times[e]), 4), "x_growcut": round(med / ref, 3),
                       "peak_mb": round(mem[e], 1), "dice_last": round(dice[e], 4)}
            print(f"  {e:15s} {med:7.3f} s/interaction (x{med / ref:5.2f} growcut)  max {max(times[e]):6.3f} s  "
                  f"peak +{mem[e]:7.1f} MB  Dice after {clicks}: {dice[e]:.3f}", flush=True)
        if not any(e not in ("region-growing", "random-walker", "growcut") for e in engines):
            print(f"  (no bundled {len(shape)}D promptable network: its target is not measured here)")
        report[name] = rows
    return report


def accuracy(n: int, clicks: int) -> dict[str, Any]:
    """The engines on ``n`` named HELD-OUT real 2D objects: Dice@1, NoC@85, NoC@85 ratios to growcut and region growing."""
    from medannot.evaluation.interactive import InteractiveAccumulator, simulate
    from medannot.tasks.promptable import create_engine
    from medannot.training.promptable_training import held_out_cases

    cases = held_out_cases(2, limit=n)
    print(f"held-out real 2D objects ({len(cases)}): {', '.join(c.name for c in cases)}", flush=True)
    acc = InteractiveAccumulator()
    engines = engines_for(2)
    for c in cases:
        for e in engines:
            acc.update(simulate(create_engine(e), c.image, c.mask, max_clicks=clicks, case=c.name))
    out = {k: v.to_dict() for k, v in acc.compute().items()}
    for e, s in out.items():
        ratios = "  ".join(f"NoC@85 / {r} {s['noc85'] / out[r]['noc85']:.2f}" for r in ("growcut", "region-growing") if r in out)
        print(f"  {e:15s} Dice@1 {s['dice1']:.3f}  Dice@{clicks} {s['dice_last']:.3f}  NoC@85 {s['noc85']:5.2f} "
              f"(fail {s['fail85']:.2f})  {ratios}", flush=True)
    return {"objects": [c.name for c in cases], "clicks": clicks, "engines": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=3)
    ap.add_argument("--cases", default="2d,3d64,3d160", help="timing cases ('' for none)")
    ap.add_argument("--accuracy", type=int, default=0, help="also this many held-out real 2D objects (0: none)")
    ap.add_argument("--accuracy-clicks", type=int, default=10)
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--one", nargs=2, metavar=("ENGINE", "CASE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import SimpleITK as sitk
    import torch

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(a.threads)
    torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(_session(a.one[0], a.one[1], a.clicks)))
        return
    report: dict[str, Any] = {"threads": a.threads, "clicks": a.clicks}
    cases = [c for c in a.cases.split(",") if c]
    if cases:
        report["timing"] = timing(cases, a.clicks, a.threads)
    if a.accuracy:
        report["accuracy"] = accuracy(a.accuracy, a.accuracy_clicks)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
