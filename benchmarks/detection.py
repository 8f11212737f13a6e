"""Benchmark: detection inference (boxes) on a 512x512 image and a 128^3 volume, ours next to MONAI's own detector.

Two inputs, on ``--threads`` CPU threads (default 2):

- 2D: the bundled ``nuclei-detect`` bundle on the stardist nuclei sample (512x512, real);
- 3D: a SYNTHETIC lesion phantom of 128^3 voxels (``medannot.training.synth_lesions``) through a
  3D RetinaNet bundle built here with seeded random weights (no 3D detection bundle is shipped).
  Its score threshold is 0, so every image goes through top-k (1000 per level) and NMS on
  thousands of candidates: the timing is that of a busy image, and says nothing about accuracy.

Memory: each call runs first in its own fresh process (so one side's allocator cache never hides the
other's memory): the resident memory (RSS, sampled every 5 ms) that first call adds, and in brackets the
largest process peak. Time: in one more process, after a warm-up, the best of ``--repeat`` rounds in
which the three calls take turns (a change in the machine's load then hits all of them alike):

- e2e: ours end to end, ``Detector.detect`` (read excluded; the bundle's preprocessing, the network
  with MONAI's sliding window, box selection and NMS, boxes mapped back onto the input grid);
- net+boxes: ours on the preprocessed input (``Detector.network_boxes``: network, sliding window,
  box selection, NMS) next to MONAI: ``monai.apps.detection.networks.retinanet_detector.RetinaNetDetector``
  assembled here from MONAI's own classes (anchor generator, box selector, sliding-window inferer) with
  the same network, the bundle's settings and the same preprocessed input, and their ratios;
- the box counts and the largest difference between the two sets of boxes (voxels) and scores (0 when
  both return the same boxes).

Usage: ``python benchmarks/detection.py [--threads 2] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medannot.data import Geometry, Image
from medannot.inference.detector import Detector
from medannot.io import read_image
from medannot.models.bundle import Bundle, bundled_root
from medannot.testing.memory import measure as measure_call

SAMPLES = Path(__file__).resolve().parent.parent / "src" / "medannot" / "data_samples"
NUCLEI = SAMPLES / "stardist" / "img2d.tif"

#: The 3D bundle timed on the SYNTHETIC phantom: a small RetinaNet, 64^3 sliding window.
BUNDLE_3D: dict[str, Any] = {
    "name": "synthetic-lesions-3d-bench",
    "task": "detection",
    "spatial_dims": 3,
    "network": {"name": "retinanet", "params": {"block_inplanes": [8, 16, 32, 64], "fpn_channels": 16, "returned_layers": [1, 2],
                                                "num_anchors": 3}},
    "labels": {"0": {"name": "background"}, "1": {"name": "synthetic lesion"}},
    "preprocessing": [{"name": "zscore_normalise", "params": {}}],
    "inference": {"patch_size": [64, 64, 64], "overlap": 0.25, "sw_batch_size": 1},
    "detection": {"anchors": {"feature_map_scales": [1, 2, 4], "base_anchor_shapes": [[6, 6, 6], [8, 8, 8], [11, 11, 11]]},
                  "score_threshold": 0.0, "nms_iou": 0.5, "topk_candidates_per_level": 1000, "detections_per_image": 300},
}


def measure(fn: Callable[[], Any], interval: float = 0.005) -> tuple[Any, float, int, int]:
    """Run ``fn``; return (result, seconds, peak RSS added by the call, peak RSS), bytes."""
    out, dt, mem = measure_call(fn, interval)
    return out, dt, mem.extra, mem.peak


def monai_detector(det: Detector) -> Any:
    """MONAI's RetinaNetDetector with the bundle's anchors, box selector and sliding window, on ``det``'s network."""
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape

    spec, inf = det.spec, det.bundle.spec.inference
    anchors = AnchorGeneratorWithAnchorShape(feature_map_scales=list(spec.anchors.feature_map_scales),
                                             base_anchor_shapes=[tuple(s) for s in spec.anchors.base_anchor_shapes])
    ref = RetinaNetDetector(network=det.network, anchor_generator=anchors)
    ref.set_box_selector_parameters(score_thresh=spec.score_threshold, topk_candidates_per_level=spec.topk_candidates_per_level,
                                    nms_thresh=spec.nms_iou, detections_per_img=spec.detections_per_image)
    ref.set_sliding_window_inferer(roi_size=list(inf.patch_size), sw_batch_size=inf.sw_batch_size, overlap=inf.overlap, mode="constant")
    return ref.eval()


def monai_boxes(ref: Any, x: torch.Tensor, use_inferer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores of MONAI's detector, by descending score."""
    with torch.inference_mode():
        out = ref(x, use_inferer=use_inferer)[0]
    scores = out["labels_scores"].float().numpy()
    order = np.argsort(-scores, kind="stable")
    return out["boxes"].double().numpy()[order], scores[order]


def _input(case: str, bundle: str) -> tuple[Detector, Image]:
    if case == "2d":
        return Detector.from_bundle(bundle), read_image(NUCLEI)
    from medannot.training.synth_lesions import synthetic_lesion_phantom

    phantom = synthetic_lesion_phantom((128, 128, 128), Geometry(spacing=(1.0, 1.0, 1.0)), n_lesions=6, seed=0)
    return Detector.from_bundle(bundle), phantom.image


def _calls(det: Detector, image: Image) -> dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """The three timed calls: ``e2e`` (``Detector.detect``), ``ours`` (``Detector.network_boxes`` on the preprocessed
    input), ``monai`` (MONAI's ``RetinaNetDetector`` on the same input); each returns boxes and scores by descending score."""
    work = det.preprocess(image)
    ref = monai_detector(det)
    x = torch.from_numpy(np.ascontiguousarray(work.array, dtype=np.float32))[None]
    use_inferer = bool(det.spec.sliding_window) and any(s > p for s, p in zip(x.shape[2:], det.bundle.spec.inference.patch_size))

    def e2e() -> tuple[np.ndarray, np.ndarray]:
        found = det.detect(image)
        return found.boxes, found.scores

    def ours() -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, _ = det.network_boxes(work.array)
        order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order]

    return {"e2e": e2e, "ours": ours, "monai": lambda: monai_boxes(ref, x, use_inferer)}


def worker(side: str, case: str, bundle: str, repeat: int, out: Path) -> None:
    """In this (fresh) process: for side ``e2e``, ``ours`` or ``monai`` the RSS its first call adds (and its boxes);
    for side ``time`` the best of ``repeat`` rounds in which the three calls take turns (so a change in the
    machine's load hits all three alike)."""
    det, image = _input(case, bundle)
    calls = _calls(det, image)
    if side == "time":
        for fn in calls.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(repeat):
            for k, fn in calls.items():
                times[k].append(measure(fn)[1])
        np.savez(out, **{k: min(v) for k, v in times.items()})
        return
    (boxes, scores), _, added, peak = measure(calls[side])
    np.savez(out, boxes=boxes, scores=scores, added=added, peak=peak)


def bench(case: str, bundle: str, repeat: int, threads: int, tmp: Path) -> dict[str, Any]:
    """Memory of each side in its own fresh process, then the interleaved timing; compare the boxes."""
    res = {}
    for side in ("monai", "ours", "e2e", "time"):
        out = tmp / f"{case}-{side}.npz"
        subprocess.run([sys.executable, __file__, "--worker", side, "--case", case, "--bundle", bundle, "--repeat", str(repeat),
                        "--threads", str(threads), "--out", str(out)], check=True)
        res[side] = dict(np.load(out))
    o, m, e, t = res["ours"], res["monai"], res["e2e"], res["time"]
    n = min(len(o["boxes"]), len(m["boxes"]))
    return {
        "ours_s": float(t["ours"]), "monai_s": float(t["monai"]), "e2e_s": float(t["e2e"]),
        "ours_mb": float(o["added"]) / 2**20, "monai_mb": float(m["added"]) / 2**20, "e2e_mb": float(e["added"]) / 2**20,
        "peak_gb": max(float(o["peak"]), float(m["peak"]), float(e["peak"])) / 1e9, "n_ours": len(o["boxes"]), "n_monai": len(m["boxes"]),
        "box_diff": float(np.abs(o["boxes"][:n] - m["boxes"][:n]).max()) if n else 0.0,
        "score_diff": float(np.abs(o["scores"][:n] - m["scores"][:n]).max()) if n else 0.0,
    }


def make_bundle_3d(folder: Path) -> Path:
    """Save the seeded random-weight 3D RetinaNet bundle used on the SYNTHETIC phantom."""
    from medannot.models import create_network

    torch.manual_seed(0)
    net = create_network("retinanet", 3, 1, 1, **BUNDLE_3D["network"]["params"])
    return Bundle.from_dict(BUNDLE_3D, state_dict=net.state_dict()).save(folder / "bundle3d", card="# benchmark only\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--worker", choices=["ours", "monai", "e2e", "time"], help=argparse.SUPPRESS)
    ap.add_argument("--case", choices=["2d", "3d"], help=argparse.SUPPRESS)
    ap.add_argument("--bundle", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args.worker, args.case, args.bundle, args.repeat, args.out)
        return
    print(f"torch threads: {args.threads}; s = best of {args.repeat} rounds in which the calls take turns; "
          "MB = resident memory the first call adds in a fresh process (largest process peak in brackets)")
    print(f"{'input':<36} {'e2e s':>6} {'e2e MB':>7} | {'net+boxes s':>11} {'MONAI s':>8} {'ratio':>6} {'MB':>6} {'MONAI MB':>9} {'ratio':>6} "
          f"{'boxes':>9} {'max |db|':>9} {'max |ds|':>9}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cases = []
        if (bundled_root() / "nuclei-detect" / "bundle.json").is_file():
            cases.append(("nuclei-detect, nuclei 512x512", "2d", "nuclei-detect"))
        else:
            print(f"{'nuclei-detect, nuclei 512x512':<36} skipped: no bundle in {bundled_root() / 'nuclei-detect'}")
        cases.append(("SYNTHETIC phantom 128^3 (random net)", "3d", str(make_bundle_3d(tmp))))
        for label, case, bundle in cases:
            r = bench(case, bundle, args.repeat, args.threads, tmp)
            mem_ratio = r["ours_mb"] / r["monai_mb"] if r["monai_mb"] > 0 else float("nan")
            print(f"{label:<36} {r['e2e_s']:>6.3f} {r['e2e_mb']:>7.1f} | {r['ours_s']:>11.3f} {r['monai_s']:>8.3f} {r['ours_s'] / r['monai_s']:>6.2f} "
                  f"{r['ours_mb']:>6.1f} {r['monai_mb']:>9.1f} {mem_ratio:>6.2f} {r['n_ours']:>4}/{r['n_monai']:<4} "
                  f"{r['box_diff']:>9.1e} {r['score_diff']:>9.1e}  [{r['peak_gb']:.2f} GB]")

if __name__ == "__main__":
    main()
