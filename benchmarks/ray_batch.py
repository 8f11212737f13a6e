"""Benchmark: batch annotation on Ray against the plain loop, same model, same threads, same run.

20 tiles (256x256) of the real stardist nuclei image are annotated with the bundled ``nuclei`` model:

- plain: ``annotate_inputs`` in this process, 1 PyTorch thread (BLAS/OpenMP limited to 1 thread, as in a Ray worker);
- Ray, 1 worker of 1 thread, and Ray, 2 workers of 1 thread each, on a local Ray instance with 2 CPUs.

The arms alternate (plain, 1 worker, 2 workers; ``--repeat`` rounds) and the best of each is kept. Printed: the
seconds of each (Ray: the case phase, first case sent to last result back; the startup, workers started and models
loaded, apart), the throughput ratio 2 workers / 1 worker (target >= 1.7), the overhead per case of 1 Ray worker
against the plain loop by wall clock (target < 10%), and Ray's own overhead: the case phase against the sum of
the per-case times measured inside the workers (what dispatching, queueing and sending results back add, whatever
else the machine is doing). The load average is printed: on a shared machine other processes take CPU from the arms.

Usage: ``python benchmarks/ray_batch.py [--cases 20] [--repeat 3]``
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
from threadpoolctl import threadpool_limits

from medannot import samples
from medannot.io import write_image
from medannot.tasks import PredictOptions, load_predictor
from medannot.training.federated_data import crop_image
from medannot.workflows.annotate import CaseResult, annotate_inputs
from medannot.workflows.batch_ray import RayBatch, RaySettings


def make_tiles(folder: Path, count: int) -> None:
    """``count`` 256x256 tiles of the nuclei image at seeded positions (every tile a real part of the image)."""
    image = samples.nuclei_image()
    rng = np.random.default_rng(0)
    for k in range(count):
        r, c = (int(v) for v in rng.integers(0, 512 - 256 + 1, size=2))
        write_image(crop_image(image, (r, c), (r + 256, c + 256)), folder / f"tile_{k:02d}.tif")


def _check(results: list[CaseResult], arm: str) -> float:
    """The sum of the per-case seconds; every case must be annotated (not resumed)."""
    bad = [r.reason or f"{r.name}: resumed" for r in results if not r.ok or r.resumed]
    if bad:
        raise SystemExit(f"{arm}: failed cases: {bad[:3]}")
    return sum(r.seconds for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    factory = functools.partial(load_predictor, "nuclei", PredictOptions(progress=False))
    root = Path(tempfile.mkdtemp(prefix="medannot-ray-bench-"))
    best: dict[str, dict[str, float]] = {}

    def keep(arm: str, timing: dict[str, float]) -> None:
        if arm not in best or timing["cases"] < best[arm]["cases"]:
            best[arm] = timing

    try:
        tiles = root / "tiles"
        tiles.mkdir()
        make_tiles(tiles, args.cases)
        torch.set_num_threads(1)
        predictor = factory()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
        try:
            with threadpool_limits(1):  # as in a Ray worker (Ray sets OMP_NUM_THREADS to its CPUs)
                annotate_inputs(tiles, predictor, root / "warm")  # warm-up: caches, lazy imports
                for i in range(args.repeat):
                    t0 = time.perf_counter()
                    steps = _check(annotate_inputs(tiles, predictor, root / f"plain{i}"), "plain")
                    keep("plain", {"cases": time.perf_counter() - t0, "steps": steps})
                    for workers in (1, 2):
                        batch = RayBatch(factory, RaySettings(workers=workers, threads=1, in_flight=2))
                        steps = _check(batch.run(tiles, root / f"ray{workers}-{i}", progress=False), f"Ray, {workers} worker(s)")
                        keep(f"ray{workers}", dict(batch.timings, steps=steps))
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = args.cases
    plain, one, two = best["plain"], best["ray1"], best["ray2"]
    ratio = one["cases"] / two["cases"]
    overhead = one["cases"] / plain["cases"] - 1.0
    own = one["cases"] / one["steps"] - 1.0
    load = os.getloadavg()
    print(f"{n} nuclei tiles 256x256, bundled nuclei model, 1 PyTorch thread per worker (best of {args.repeat}, arms alternating); "
          f"load average {load[0]:.2f} {load[1]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'arm':28s} {'cases s':>8s} {'s/case':>7s} {'startup s':>9s}")
    print(f"{'plain loop, 1 thread':28s} {plain['cases']:8.2f} {plain['cases'] / n:7.3f} {'-':>9s}")
    for w, t in ((1, one), (2, two)):
        print(f"{f'Ray, {w} worker(s) x 1 thread':28s} {t['cases']:8.2f} {t['cases'] / n:7.3f} {t['startup']:9.2f}")
    print(f"throughput 2 workers / 1 worker: {ratio:.2f}x (target >= 1.7: {'met' if ratio >= 1.7 else 'NOT met'})")
    print(f"overhead per case, 1 Ray worker vs plain loop (wall clock): {overhead * 100:+.1f}% (target < 10%: {'met' if overhead < 0.10 else 'NOT met'})")
    print(f"Ray's own overhead (1 worker: case phase vs the sum of per-case times inside the worker): {own * 100:+.1f}%; "
          f"plain loop: {(plain['cases'] / plain['steps'] - 1) * 100:+.1f}%")
    print(json.dumps({"cases": n, "plain": {k: round(v, 3) for k, v in plain.items()},
                      "ray": {str(w): {k: round(v, 3) for k, v in t.items()} for w, t in ((1, one), (2, two))},
                      "throughput_ratio": round(ratio, 3), "overhead": round(overhead, 4), "ray_own_overhead": round(own, 4),
                      "loadavg": [round(x, 2) for x in load]}))


if __name__ == "__main__":
    main()
