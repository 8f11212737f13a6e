"""Whole-evaluation benchmark: many synthetic cases, serial against parallel, and against a MONAI loop.

Writes N synthetic (made-up) cases of S^3 voxels, each with two structures (a large
ellipsoid "organ" and a small sphere "lesion"; the prediction is a shifted, resized
copy), as NIfTI files into a temporary folder, then times:

1. ``evaluate_paths`` with ``max_workers=1`` (one process),
2. ``evaluate_paths`` with all cores,
3. a serial loop over MONAI's metrics (Dice, HD95, ASSD, surface Dice) reading the same files,

and prints wall times, the parallel speed-up, peak memory (this process and the largest
worker) and the time ratio against MONAI. Values are also compared (Dice identical; HD95
agrees with MONAI's where both masks are non-empty).

Usage: ``python benchmarks/evaluate_many.py [--cases 100] [--size 128] [--skip-monai]``
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _ellipsoid(shape: tuple[int, int, int], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def make_cases(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """Write ``n`` synthetic truth/prediction pairs (``truth/case_XXX.nii.gz``, ``pred/case_XXX.nii.gz``)."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    shape = (size, size, size)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    (folder / "truth").mkdir(parents=True, exist_ok=True)
    (folder / "pred").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = np.array(shape) / 2 + rng.uniform(-5, 5, 3)
        r = np.array(shape) * rng.uniform(0.22, 0.3, 3)
        lc = c + np.array([size * 0.25, 0, 0])
        lr = np.full(3, size * rng.uniform(0.04, 0.07))
        truth = np.zeros(shape, np.uint8)
        truth[_ellipsoid(shape, c, r)] = 1
        truth[_ellipsoid(shape, lc, lr)] = 2
        pred = np.zeros(shape, np.uint8)
        pred[_ellipsoid(shape, c + rng.normal(0, 1.5, 3), r * rng.uniform(0.93, 1.07, 3))] = 1
        if rng.uniform() > 0.05:  # a few lesions are missed entirely
            pred[_ellipsoid(shape, lc + rng.normal(0, 1.0, 3), lr * rng.uniform(0.8, 1.2))] = 2
        nib.save(nib.Nifti1Image(truth, affine), folder / "truth" / f"case_{i:03d}.nii.gz")
        nib.save(nib.Nifti1Image(pred, affine), folder / "pred" / f"case_{i:03d}.nii.gz")


def monai_loop(folder: Path, tolerance_mm: float = 1.0) -> tuple[float, dict[tuple[str, int], dict[str, float]]]:
    """Serial loop over MONAI's metrics on the same files; returns (seconds, values)."""
    import nibabel as nib
    import torch
    from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance, compute_surface_dice

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="monai")  # its NaN/deprecation notes for the missed lesions
    values: dict[tuple[str, int], dict[str, float]] = {}
    start = time.perf_counter()
    for tp in sorted((folder / "truth").glob("*.nii.gz")):
        case = tp.name[: -len(".nii.gz")]
        t_img = nib.load(tp)
        spacing = tuple(float(s) for s in t_img.header.get_zooms()[:3])
        truth = np.asarray(t_img.dataobj)
        pred = np.asarray(nib.load(folder / "pred" / tp.name).dataobj)
        for value in (1, 2):
            p = torch.from_numpy(pred == value)[None, None]
            t = torch.from_numpy(truth == value)[None, None]
            values[(case, value)] = {
                "dice": float(compute_dice(p, t, include_background=True)),
                "hd95": float(compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing)),
                "assd": float(compute_average_surface_distance(p, t, include_background=True, symmetric=True, spacing=spacing)),
                "surface_dice": float(compute_surface_dice(p, t, [tolerance_mm], include_background=True, spacing=spacing)),
            }
    return time.perf_counter() - start, values


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # kB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--skip-monai", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from medannot.evaluation import evaluate_paths

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="medannot_bench_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make_cases(folder, args.cases, args.size)
        print(f"wrote {args.cases} synthetic cases of {args.size}^3 (spacing 0.8 x 0.8 x 2 mm, 2 structures) in {time.perf_counter() - t0:.1f} s")
        labels = {1: "organ", 2: "lesion"}

        t0 = time.perf_counter()
        serial = evaluate_paths(folder / "pred", folder / "truth", folder / "out1", labels=labels, max_workers=1)
        t_serial = time.perf_counter() - t0
        peak_serial = _peak_mb(resource.RUSAGE_SELF)
        print(f"evaluate_paths, 1 process:      {t_serial:7.1f} s   peak memory {peak_serial:,.0f} MB")

        t0 = time.perf_counter()
        parallel = evaluate_paths(folder / "pred", folder / "truth", folder / "out2", labels=labels, max_workers=cores)
        t_par = time.perf_counter() - t0
        print(f"evaluate_paths, {cores:2d} processes:  {t_par:7.1f} s   peak memory: parent {_peak_mb(resource.RUSAGE_SELF):,.0f} MB, "
              f"largest worker {_peak_mb(resource.RUSAGE_CHILDREN):,.0f} MB")
        print(f"parallel speed-up: {t_serial / t_par:.2f}x on {cores} cores")
        same = all(a["dice"] == b["dice"] and a["hd95"] == b["hd95"] for a, b in zip(serial.rows, parallel.rows))
        print(f"serial and parallel rows identical: {same}")
        html = (folder / "out2" / "report.html").stat().st_size
        print(f"report.html: {html / 1e6:.2f} MB, {len(parallel.thumbnails)} thumbnails")

        if not args.skip_monai:
            t_monai, mon = monai_loop(folder)
            print(f"MONAI serial loop (Dice, HD95, ASSD, surface Dice): {t_monai:7.1f} s")
            print(f"time ratio ours(1 process) / MONAI: {t_serial / t_monai:.2f}   ours({cores} processes) / MONAI: {t_par / t_monai:.2f}")
            ours = {(r["case"], int(r["label_value"])): r for r in serial.rows}
            dice_err = max(abs(ours[k]["dice"] - v["dice"]) for k, v in mon.items())
            both = [k for k in mon if not ours[k]["empty"]]
            hd_err = max((abs(ours[k]["hd95"] - mon[k]["hd95"]) / max(mon[k]["hd95"], 1e-9) for k in both), default=0.0)
            print(f"largest difference to MONAI: Dice {dice_err:.2e}, HD95 {hd_err:.2e} (relative, non-empty cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
