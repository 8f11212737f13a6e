"""Benchmark: annotate one image per bundled model, ours next to MONAI's own sliding window.

For each bundle present (``brain-mri`` on the MNI152 T1, 1 mm; ``nuclei`` on the stardist
sample) this prints, on ``--threads`` CPU threads (default 2):

- end to end: ``Predictor.predict`` (read excluded; preprocessing, network, mapping back,
  post-processing, instances) time and peak resident memory of the process;
- end to end against the network's own time: the network stage of that same best run and the ratio
  end to end / network (target <= 2x for brain-mri on the 1 mm MNI152 head, peak < 2 GB), with the
  other stages (preprocess, resample, postprocess, instances) in seconds;
- network part: our ``Predictor.network_probabilities`` versus MONAI's
  ``sliding_window_inference`` + softmax on the same network and the same preprocessed
  input, and their ratio (target <= 1.1).

Targets: brain end to end <= 2x its network and < 2 GB; nuclei < 5 s.

Usage: ``python benchmarks/annotate.py [--threads 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medannot.inference import Predictor
from medannot.io import read_image
from medannot.models.bundle import bundled_root
from medannot.testing.memory import measure as measure_call

SAMPLES = Path(__file__).resolve().parent.parent / "src" / "medannot" / "data_samples"
CASES = {
    "brain-mri": SAMPLES / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "nuclei": SAMPLES / "stardist" / "img2d.tif",
}
TARGET_S = {"nuclei": 5.0}
TARGET_OVER_NET = {"brain-mri": 2.0}
TARGET_GB = 2.0


def measure(fn: Callable[[], Any], interval: float = 0.005) -> tuple[Any, float, int]:
    """Run ``fn``; return (result, seconds, peak RSS in bytes sampled every ``interval`` s)."""
    out, dt, mem = measure_call(fn, interval)
    return out, dt, mem.peak


def monai_reference(predictor: Predictor, array: np.ndarray) -> np.ndarray:
    """MONAI's sliding window + softmax with the bundle's settings (no TTA)."""
    inf = predictor.bundle.spec.inference
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    with torch.inference_mode():
        logits = sliding_window_inference(x, list(inf.patch_size), predictor.sw_batch_size, predictor.network,
                                          overlap=inf.overlap, mode="gaussian")
        return torch.softmax(logits, dim=1)[0].numpy()


def bench(name: str, path: Path, repeat: int) -> dict[str, float]:
    image = read_image(path)
    predictor = Predictor.from_bundle(name, tta=False)
    predictor.predict(image)  # warm-up (allocator, MKL-DNN kernels)
    e2e_times, peaks, stages = [], [], []
    for _ in range(repeat):
        pred, dt, peak = measure(lambda: predictor.predict(image))
        e2e_times.append(dt)
        peaks.append(peak)
        stages.append(pred.timings)
    best = stages[int(np.argmin(e2e_times))]
    work = predictor.preprocess(image)
    ours, theirs = [], []
    for _ in range(repeat):
        p_ours, dt, _ = measure(lambda: predictor.network_probabilities(work.array))
        ours.append(dt)
        p_ref, dt, _ = measure(lambda: monai_reference(predictor, work.array))
        theirs.append(dt)
    diff = float(np.abs(p_ours - p_ref).max())
    return {
        "e2e_s": min(e2e_times), "peak_gb": max(peaks) / 1e9, "ours_s": min(ours), "monai_s": min(theirs),
        "ratio": min(ours) / min(theirs), "max_prob_diff": diff, "shape": "x".join(map(str, image.spatial_shape)),
        "e2e_net_s": best["network"], "e2e_over_net": min(e2e_times) / best["network"],
        "stages": ", ".join(f"{k} {best[k]:.2f}" for k in ("preprocess", "resample", "postprocess", "instances")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}")
    print(f"{'model':<10} {'input':<12} {'end-to-end s':>12} {'its net s':>9} {'e2e/net':>7} {'peak RSS GB':>11} {'ours net s':>10} "
          f"{'MONAI net s':>11} {'ratio':>6} {'max |dp|':>9}  target")
    for name, path in CASES.items():
        if not (bundled_root() / name / "bundle.json").is_file():
            print(f"{name:<10} skipped: no bundle in {bundled_root() / name}")
            continue
        r = bench(name, path, args.repeat if name == "nuclei" else max(1, args.repeat - 2))
        if name in TARGET_OVER_NET:
            ok = r["e2e_over_net"] <= TARGET_OVER_NET[name] and r["peak_gb"] < TARGET_GB and r["ratio"] <= 1.1
            target = f"e2e <= {TARGET_OVER_NET[name]:.0f}x net, < {TARGET_GB:.0f} GB, ratio <= 1.1"
        else:
            ok = r["e2e_s"] < TARGET_S[name] and r["ratio"] <= 1.1
            target = f"< {TARGET_S[name]:.0f} s, ratio <= 1.1"
        print(f"{name:<10} {r['shape']:<12} {r['e2e_s']:>12.2f} {r['e2e_net_s']:>9.2f} {r['e2e_over_net']:>7.2f} {r['peak_gb']:>11.2f} "
              f"{r['ours_s']:>10.2f} {r['monai_s']:>11.2f} {r['ratio']:>6.2f} {r['max_prob_diff']:>9.1e}  {target}: {'ok' if ok else 'MISSED'}")
        print(f"{'':<10} other stages (s): {r['stages']}")


if __name__ == "__main__":
    main()
