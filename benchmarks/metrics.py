"""Benchmark: surface metrics of medannot vs MedPy vs MONAI on one SYNTHETIC CT-sized label pair.

The volume is synthetic (two smooth organ-like blobs, "liver" and "spleen", drawn
procedurally; no real anatomy) with spacing 2 x 0.8 x 0.8 mm. For each label the
three libraries compute their surface metrics on the same masks in one run:

* medannot: ``surface_distances`` once, then hd95 + assd + surface Dice (1 mm)
  (plus hd95_pooled from the same distances, to check MedPy's hd95);
* MedPy 0.5.2: ``hd95`` + ``assd`` (each recomputes both distance transforms on the full volume);
* MONAI 1.6.1: ``compute_hausdorff_distance(percentile=95)`` + ``compute_average_surface_distance(symmetric=True)``
  + ``compute_surface_dice`` (edges on the cropped union box; KD-tree distances on CPU).

It prints wall time, ratios and peak extra resident memory (sampled with psutil every
5 ms, so it covers NumPy and torch alike; tracemalloc is not used because it slows
MONAI's Python-heavy code many times over), after a warm-up call of each library on a
tiny pair (imports and first-call costs are not timed), and checks that the values agree (MONAI computes in float32, hence rel 1e-5).

Usage::

    .venv/bin/python benchmarks/metrics.py                 # default size (finishes in about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/metrics.py --size 300x512x512
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from medannot.testing.memory import PeakRSS

SPACING = (2.0, 0.8, 0.8)
FULL_SIZE = (300, 512, 512)
# MedPy runs four full-volume distance transforms per label; at full size that takes
# several minutes on 2 cores, so the default is a smaller volume with the same spacing.
DEFAULT_SIZE = (150, 384, 384)
TOLERANCE_MM = 1.0


def _blob(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray, seed: int, wobble: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """A smooth irregular blob (ellipsoid with low-frequency radius modulation) inside its bounding box."""
    rng = np.random.default_rng(seed)
    reach = radii * (1 + wobble) + 2
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    z, y, x = np.ogrid[box]
    dz, dy, dx = (z - centre[0]) / radii[0], (y - centre[1]) / radii[1], (x - centre[2]) / radii[2]
    r = np.sqrt(dz**2 + dy**2 + dx**2, dtype=np.float32)
    theta = np.arctan2(dy, dx).astype(np.float32)
    phi = np.arctan2(dz, np.sqrt(dy**2 + dx**2)).astype(np.float32)
    mod = np.ones_like(r)
    for k in range(1, 4):
        a, p1, p2 = rng.uniform(-wobble, wobble) / k, rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        mod += a * np.sin(k * theta + p1) * np.cos(k * phi + p2)
    return box, r <= mod


def synthetic_pair(size: tuple[int, int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SYNTHETIC truth/prediction masks for two organ-like labels, scaled to ``size``."""
    scale = np.asarray(size, dtype=float) / np.asarray(FULL_SIZE, dtype=float)
    organs = {
        "liver (synthetic)": (np.array([150, 230, 170]), np.array([45, 120, 110]), 1),
        "spleen (synthetic)": (np.array([160, 260, 390]), np.array([25, 55, 40]), 2),
    }
    out = {}
    for name, (centre, radii, seed) in organs.items():
        c, r = centre * scale, radii * scale
        truth = np.zeros(size, bool)
        pred = np.zeros(size, bool)
        box, mask = _blob(size, c, r, seed, 0.15)
        truth[box] = mask
        box, mask = _blob(size, c + np.array([1.0, 2.0, -2.0]) * scale, r * np.array([0.97, 1.03, 0.98]), seed + 10, 0.17)
        pred[box] = mask
        rng = np.random.default_rng(seed + 100)
        for _ in range(3):  # a few false-positive islands
            p = (rng.uniform(0.2, 0.8, 3) * np.asarray(size)).astype(int)
            pred[p[0] : p[0] + 2, p[1] : p[1] + 4, p[2] : p[2] + 4] = True
        out[name] = (pred, truth)
    return out


def _measure(fn: Callable[[], dict[str, float]]) -> tuple[dict[str, float], float, int]:
    gc.collect()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        values = fn()
        seconds = time.perf_counter() - t0
    return values, seconds, rss.extra


def ours(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from medannot.evaluation.metrics import surface_distances

    sd = surface_distances(pred, truth, SPACING)
    return {"hd95": sd.hd95(), "hd95_pooled": sd.hd95_pooled(), "assd": sd.assd(), "surface_dice": sd.surface_dice(TOLERANCE_MM)}


def medpy_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from medpy.metric import binary

    return {"hd95_pooled": float(binary.hd95(pred, truth, SPACING)), "assd": float(binary.assd(pred, truth, SPACING))}


def monai_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    p = torch.from_numpy(pred[None, None])
    t = torch.from_numpy(truth[None, None])
    kw: dict[str, Any] = dict(include_background=True, distance_metric="euclidean", spacing=list(SPACING))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI 1.6.1 passes its own deprecated argument internally
        return {
            "hd95": compute_hausdorff_distance(p, t, percentile=95, **kw).item(),
            "assd": compute_average_surface_distance(p, t, symmetric=True, **kw).item(),
            "surface_dice": compute_surface_dice(p, t, [TOLERANCE_MM], use_subvoxels=False, **kw).item(),
        }


def _parse_size(text: str) -> tuple[int, int, int]:
    parts = tuple(int(v) for v in text.lower().split("x"))
    if len(parts) != 3 or min(parts) < 16:
        raise argparse.ArgumentTypeError(f"expected DxHxW with each >= 16, e.g. 300x512x512, got {text!r}")
    return parts  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_parse_size, default=DEFAULT_SIZE, help="volume size DxHxW (default %(default)s)")
    parser.add_argument("--skip-medpy", action="store_true", help="skip MedPy (slow on large volumes)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    size = tuple(args.size)
    print(f"SYNTHETIC volume {size[0]}x{size[1]}x{size[2]} voxels, spacing {SPACING} mm, CPU cores {os.cpu_count()}"
          + ("" if size == FULL_SIZE else f" (full size {FULL_SIZE} via --size 300x512x512)"))
    pairs = synthetic_pair(size)
    libs: list[tuple[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]]] = [("medannot", ours), ("monai", monai_metrics)]
    if not args.skip_medpy:
        libs.append(("medpy", medpy_metrics))
    tiny = np.zeros((8, 8, 8), bool)
    tiny[2:5, 2:5, 2:5] = True
    for _, fn in libs:  # warm-up: imports and first-call costs are not timed
        fn(tiny, np.roll(tiny, 1, axis=0))
    totals = {name: 0.0 for name, _ in libs}
    ok = True
    for label, (pred, truth) in pairs.items():
        print(f"\n{label}: truth {int(truth.sum())} voxels, prediction {int(pred.sum())} voxels")
        results = {}
        for name, fn in libs:
            values, seconds, rss = _measure(lambda fn=fn, pred=pred, truth=truth: fn(pred, truth))
            results[name] = values
            totals[name] += seconds
            shown = ", ".join(f"{k}={v:.6f}" for k, v in values.items())
            print(f"  {name:9s} {seconds:8.2f} s  peak extra RSS {rss / 2**20:8.1f} MiB  {shown}")
        for name, values in results.items():
            if name == "medannot":
                continue
            for key, theirs in values.items():
                mine = results["medannot"][key]
                good = math.isclose(mine, theirs, rel_tol=1e-5, abs_tol=1e-9)
                ok &= good
                if not good:
                    print(f"  MISMATCH {key}: medannot {mine!r} vs {name} {theirs!r}")
        print("  values agree" if ok else "  VALUES DIFFER")
    print("\nTotal time over both labels:")
    for name, seconds in totals.items():
        ratio = seconds / totals["medannot"] if totals["medannot"] else float("nan")
        print(f"  {name:9s} {seconds:8.2f} s  ({ratio:.1f}x medannot)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
