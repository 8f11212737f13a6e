"""Benchmark: ONNX Runtime fp32 and int8 against PyTorch fp32, per bundled model, in one run.

For each bundle that ships an ONNX export (``model.onnx``, ``model.int8.onnx``; ``medannot models export``),
on ``--threads`` CPU threads (default 2; PyTorch and ONNX Runtime alike) and the same inputs:

- network time: the network part of inference (segmentation: the sliding window over the preprocessed input,
  ``Predictor.network_probabilities``; detection: ``Detector.network_boxes``), the engines interleaved in one
  process, best of ``--repeat`` rounds, and the ratio to PyTorch (> 1: faster than PyTorch);
- memory: resident memory of a process that loads only that engine, after one network pass (MB; Python,
  PyTorch, MONAI and the input image included);
- size: the file each engine runs (``weights.pt``, ``model.onnx``, ``model.int8.onnx``);
- agreement: largest |probability - PyTorch's| (segmentation) on that input;
- accuracy on held-out data the weights never saw, end to end (post-processing included):
  brain-mri: brain Dice (grey + white matter) on the Colin27 head (Debian ``mricron-data``; the card's
  "A real brain it never saw", native 1 mm grid); nuclei: Dice of the nucleus label on the right half of the
  stardist sample; nuclei-detect: AP50 on that right half.

int8 goal: at least 1.4x faster than PyTorch fp32 with the accuracy within 0.01. ``--write-cards`` puts the
table into each bundle's MODEL_CARD.md (section "ONNX Runtime and int8").

Usage: ``python benchmarks/onnx.py [--threads 2] [--repeat 3] [--write-cards]``
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from medannot import samples
from medannot.data import Image
from medannot.inference.detector import Detector
from medannot.inference.engines import Engine
from medannot.inference.predictor import Predictor
from medannot.models.bundle import Bundle, bundled_root
from medannot.models.onnx_export import OnnxVariant, read_record

ENGINES = [Engine.PYTORCH, Engine.ONNXRUNTIME, Engine.ONNXRUNTIME_INT8]
FILES = {Engine.PYTORCH: "weights.pt", Engine.ONNXRUNTIME: OnnxVariant.FP32.filename, Engine.ONNXRUNTIME_INT8: OnnxVariant.INT8.filename}
SECTION = "## ONNX Runtime and int8"


def _half(image: Image, right: bool) -> Image:
    cut = samples.NUCLEI_SPLIT_COLUMN
    arr = image.array[..., cut:] if right else image.array[..., :cut]
    return Image(np.ascontiguousarray(arr), image.geometry, image.kind, dict(image.meta))


def held_out(name: str) -> tuple[str, Image, Callable[[], np.ndarray]] | None:
    """(metric name, image, truth loader) of a bundle's held-out case; None where its data is not installed."""
    if name == "brain-mri":
        try:
            head = samples.colin27_head()
        except Exception:
            return None

        def brain() -> np.ndarray:
            from medannot.transforms.spatial import resample_to_grid

            return resample_to_grid(samples.colin27_brain_mask(), head.geometry, head.spatial_shape, order=0).array[0] > 0

        return "brain Dice, Colin27 1 mm (real, unseen)", head, brain
    right = _half(samples.nuclei_image(), True)
    if name == "nuclei":
        return "nucleus Dice, right half (held out)", right, lambda: _half(samples.nuclei_instances(), True).array[0] > 0
    return "AP50, right half (held out)", right, lambda: _half(samples.nuclei_instances(), True).array[0]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def accuracy(name: str, runner: Any, case: tuple[str, Image, Callable[[], np.ndarray]]) -> float:
    _, image, load_truth = case
    truth = load_truth()
    if isinstance(runner, Detector):
        from medannot.data.boxes import boxes_from_instances
        from medannot.evaluation.detection import average_precision

        found = runner.detect(image)
        _, gt = boxes_from_instances(truth)
        ap = average_precision([(found.boxes, found.scores, found.labels - 1)], [(gt, np.zeros(len(gt), int))])
        return float(ap["ap50"] or 0.0)
    labels = runner.predict(image).labels.array[0]
    return _dice(labels > 0, truth)


def _runner(bundle: Bundle, engine: Engine) -> Any:
    return Detector(bundle, engine=engine) if bundle.spec.detection is not None else Predictor(bundle, tta=False, engine=engine)


def _network(runner: Any, work: np.ndarray) -> Any:
    return runner.network_boxes(work) if isinstance(runner, Detector) else runner.network_probabilities(work)


def _input(name: str) -> tuple[Image, tuple[str, Image, Callable[[], np.ndarray]] | None]:
    case = held_out(name)
    return (case[1] if case else (samples.mni152_t1() if name == "brain-mri" else samples.nuclei_image())), case


def run_engine(name: str, engine: Engine) -> dict[str, Any]:
    """One engine of one bundle in this (fresh) process: peak memory of a network pass, accuracy end to end."""
    bundle = Bundle.load(name)
    image, case = _input(name)
    runner = _runner(bundle, engine)
    work = runner.preprocess(image).array
    _network(runner, work)
    rss = psutil.Process().memory_info().rss  # after one pass (ru_maxrss would carry the parent's peak over fork)
    acc = accuracy(name, runner, case) if case else float("nan")
    return {"rss_mb": rss / 1e6, "accuracy": acc}


def bench(name: str, repeat: int, threads: int) -> list[dict[str, Any]]:
    """Every engine of one bundle: times interleaved in this process (best of ``repeat`` rounds, so a busy machine
    slows all engines alike), memory and accuracy each in its own process."""
    bundle = Bundle.load(name)
    record = read_record(bundle.path) if bundle.path else None
    engines = [e for e in ENGINES if e.variant is None or (record and e.variant.value in record.files)]
    image, case = _input(name)
    runners = {e: _runner(bundle, e) for e in engines}
    work = runners[Engine.PYTORCH].preprocess(image).array
    outs = {e: _network(r, work) for e, r in runners.items()}  # warm-up
    times: dict[Engine, list[float]] = {e: [] for e in engines}
    for _ in range(repeat):
        for e, r in runners.items():
            t0 = time.perf_counter()
            _network(r, work)
            times[e].append(time.perf_counter() - t0)
    del runners
    rows = []
    for e in engines:
        cmd = [sys.executable, __file__, "--one", name, e.value, "--threads", str(threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{name} {e.value} failed:\n{done.stderr[-2000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        dp = float("nan") if bundle.spec.detection is not None else float(np.abs(outs[e] - outs[Engine.PYTORCH]).max())
        size = (Path(str(bundle.path)) / FILES[e]).stat().st_size
        rows.append(dict(row, engine=e.value, net_s=min(times[e]), size_kb=size / 1e3, max_dp=dp,
                         metric=case[0] if case else "no held-out data installed", shape="x".join(map(str, work.shape[1:]))))
    for r in rows:
        r["speedup"] = rows[0]["net_s"] / r["net_s"]
        r["d_acc"] = r["accuracy"] - rows[0]["accuracy"]
    return rows


def table(rows: list[dict[str, Any]], threads: int) -> str:
    lines = [f"Measured by `benchmarks/onnx.py` ({threads} CPU threads, all engines in one run; network part on the "
             f"same {rows[0]['shape']} preprocessed input; accuracy end to end: {rows[0]['metric']}).", "",
             "| engine | network s | speed vs PyTorch | RSS MB after a pass | file kB | max abs dp | accuracy | change |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dp = "-" if np.isnan(r["max_dp"]) else f"{r['max_dp']:.1e}"
        lines.append(f"| {r['engine']} | {r['net_s']:.2f} | {r['speedup']:.2f}x | {r['rss_mb']:.0f} | {r['size_kb']:.0f} | {dp} | "
                     f"{r['accuracy']:.4f} | {r['d_acc']:+.4f} |")
    return "\n".join(lines)


def write_card(name: str, text: str) -> None:
    card = bundled_root() / name / "MODEL_CARD.md"
    body = card.read_text()
    section = f"{SECTION}\n\n{text}\n\n`--engine onnxruntime` runs `model.onnx`, `--engine onnxruntime-int8` runs `model.int8.onnx` " \
              "(see onnx.json: calibration data, export check). The default engine stays PyTorch.\n"
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    body = pattern.sub(lambda _m: section.rstrip("\n"), body) if SECTION in body else body.rstrip("\n") + "\n\n" + section
    card.write_text(body if body.endswith("\n") else body + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write-cards", action="store_true")
    ap.add_argument("--only", action="append", help="Only these bundles (repeatable).")
    ap.add_argument("--one", nargs=2, metavar=("BUNDLE", "ENGINE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_engine(args.one[0], Engine.parse(args.one[1]))))
        return
    print(f"threads: {args.threads} (PyTorch and ONNX Runtime)")
    for name in ("brain-mri", "nuclei", "nuclei-detect"):
        if not (bundled_root() / name / "bundle.json").is_file() or (args.only and name not in args.only):
            continue
        rows = bench(name, args.repeat if name != "brain-mri" else max(1, args.repeat - 1), args.threads)
        text = table(rows, args.threads)
        print(f"\n== {name}\n{text}")
        int8 = next((r for r in rows if r["engine"] == Engine.ONNXRUNTIME_INT8.value), None)
        if int8 is not None:
            ok = int8["speedup"] >= 1.4 and abs(int8["d_acc"]) <= 0.01
            print(f"int8 goal (>= 1.4x PyTorch, accuracy within 0.01): {'met' if ok else 'NOT met on this CPU'} "
                  f"({int8['speedup']:.2f}x, {int8['d_acc']:+.4f})")
        if args.write_cards:
            write_card(name, text)


if __name__ == "__main__":
    main()
