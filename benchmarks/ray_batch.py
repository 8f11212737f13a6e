"""Benchmark: batch annotation on Ray against the plain loop, same model, same threads, same run.

20 tiles (256x256) of the real stardist nuclei image are annotated with the bundled ``nuclei`` model:

- plain: ``annotate_inputs`` in this process, 1 PyTorch thread;
- Ray, 1 worker of 1 thread, and Ray, 2 workers of 1 thread each, on a local Ray instance with 2 CPUs.

Printed: the seconds of each (Ray: the case phase, first case sent to last result back; and the startup: workers
started and models loaded), the throughput ratio 2 workers / 1 worker (target >= 1.7) and the overhead per case
of 1 Ray worker against the plain loop (target < 10%). The machine's load average is printed too: other
processes on a shared machine take CPU from the two workers.

Usage: ``python benchmarks/ray_batch.py [--cases 20] [--repeat 2]`` (best of ``repeat`` per arm)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medannot import samples
from medannot.io import write_image
from medannot.tasks import PredictOptions, load_predictor
from medannot.training.federated_data import crop_image
from medannot.workflows.annotate import annotate_inputs
from medannot.workflows.batch_ray import RayBatch, RaySettings


def make_tiles(folder: Path, count: int) -> None:
    """``count`` 256x256 tiles of the nuclei image at seeded positions (every tile a real part of the image)."""
    image = samples.nuclei_image()
    rng = np.random.default_rng(0)
    for k in range(count):
        r, c = (int(v) for v in rng.integers(0, 512 - 256 + 1, size=2))
        write_image(crop_image(image, (r, c), (r + 256, c + 256)), folder / f"tile_{k:02d}.tif")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    factory = functools.partial(load_predictor, "nuclei", PredictOptions(progress=False))
    root = Path(tempfile.mkdtemp(prefix="medannot-ray-bench-"))
    try:
        tiles = root / "tiles"
        tiles.mkdir()
        make_tiles(tiles, args.cases)
        torch.set_num_threads(1)
        predictor = factory()
        annotate_inputs(tiles, predictor, root / "warm")  # warm-up: caches, lazy imports
        plain = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            res = annotate_inputs(tiles, predictor, root / f"plain{i}")
            plain.append(time.perf_counter() - t0)
            if not all(r.ok for r in res):
                raise SystemExit(f"plain run failed cases: {[r.reason for r in res if not r.ok][:3]}")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
        arms: dict[int, dict[str, float]] = {}
        try:
            for workers in (1, 2):
                best: dict[str, float] = {}
                for i in range(args.repeat):
                    batch = RayBatch(factory, RaySettings(workers=workers, threads=1, in_flight=2))
                    res = batch.run(tiles, root / f"ray{workers}-{i}", progress=False)
                    bad = [r.reason or f"{r.name}: resumed" for r in res if not r.ok or r.resumed]
                    if bad:
                        raise SystemExit(f"Ray run with {workers} worker(s) failed cases: {bad[:3]}")
                    if not best or batch.timings["cases"] < best["cases"]:
                        best = dict(batch.timings)
                arms[workers] = best
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = args.cases
    base = min(plain)
    ratio = arms[1]["cases"] / arms[2]["cases"]
    overhead = arms[1]["cases"] / base - 1.0
    load = os.getloadavg()
    print(f"{n} nuclei tiles 256x256, bundled nuclei model, 1 PyTorch thread per worker (best of {args.repeat}); "
          f"load average {load[0]:.2f} {load[1]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'arm':28s} {'cases s':>8s} {'s/case':>7s} {'startup s':>9s}")
    print(f"{'plain loop, 1 thread':28s} {base:8.2f} {base / n:7.3f} {'-':>9s}")
    for w in (1, 2):
        print(f"{f'Ray, {w} worker(s) x 1 thread':28s} {arms[w]['cases']:8.2f} {arms[w]['cases'] / n:7.3f} {arms[w]['startup']:9.2f}")
    print(f"throughput 2 workers / 1 worker: {ratio:.2f}x (target >= 1.7: {'met' if ratio >= 1.7 else 'NOT met'})")
    print(f"overhead per case, 1 Ray worker vs plain loop: {overhead * 100:+.1f}% (target < 10%: {'met' if overhead < 0.10 else 'NOT met'})")
    print(json.dumps({"cases": n, "plain_s": round(base, 3), "ray": {str(k): {m: round(v, 3) for m, v in t.items()} for k, t in arms.items()},
                      "throughput_ratio": round(ratio, 3), "overhead": round(overhead, 4), "loadavg": [round(x, 2) for x in load]}))


if __name__ == "__main__":
    main()
