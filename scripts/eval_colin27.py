"""Evaluate ``brain-mri`` on a real, never-seen head: Colin27 (Debian ``mricron-data``).

The image is the whole T1 head (skull, scalp, face, neck) at 1 mm; the truth is the hand-edited
brain-tissue mask ``ch2better`` (0.5 mm, grey + white matter). The head is also re-acquired on
other grids (thick slices, sagittal / coronal storage, LPS, oblique, 2 mm) by resampling, and the
mask is resampled onto each grid with nearest neighbour. The score is the Dice of the brain region:
predicted grey matter or white matter versus the mask.

Usage::

    .venv/bin/python scripts/eval_colin27.py [--bundle brain-mri] [--out runs/colin27] [--quick] [--write-card]

``--write-card`` puts the table into the bundle's MODEL_CARD.md (section "A real brain it never
saw"), so the card of a re-trained bundle is completed by running this script after training.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from medannot import samples
from medannot.evaluation import dice
from medannot.inference import Predictor
from medannot.transforms.spatial import resample_to_grid

#: name, spacing (mm), axcodes, rotation (deg)
CASES = [
    ("native-1mm-RAS", None, "RAS", (0, 0, 0)),
    ("axial-1x1x4mm-LPS", (1.0, 1.0, 4.0), "LPS", (0, 0, 0)),
    ("sagittal-1.2mm-ASL", (1.2, 1.2, 1.2), "ASL", (0, 0, 0)),
    ("coronal-0.9x0.9x3mm-LIP", (0.9, 0.9, 3.0), "LIP", (0, 0, 0)),
    ("oblique15-1.5mm-LPS", (1.5, 1.5, 1.5), "LPS", (15, 0, 10)),
    ("iso-2mm-PIR", (2.0, 2.0, 2.0), "PIR", (0, 0, 0)),
]
QUICK = [0, 1, 4]


def case_pair(spacing, axcodes, rotation):
    """The Colin27 head on the case's grid and the brain mask resampled onto it."""
    head = samples.colin27_head()
    if spacing is not None:
        head = samples.reacquire(head, spacing, axcodes, rotation)
    mask = samples.colin27_brain_mask()
    truth = resample_to_grid(mask, head.geometry, head.spatial_shape, order=0)
    return head, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="brain-mri")
    parser.add_argument("--out", type=Path, default=Path("runs/colin27"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="a training checkpoint.pt: evaluate its weights ('model', or 'best_state' with --best) in the bundle's pipeline")
    parser.add_argument("--best", action="store_true", help="with --checkpoint: the best validation weights so far")
    parser.add_argument("--write-card", action="store_true", help="write the results into the bundle's MODEL_CARD.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_bundle(args.bundle)
    if args.checkpoint is not None:
        from medannot.models.bundle import Bundle

        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        bundle = Bundle.load(args.bundle)
        network = bundle.build_network()
        network.load_state_dict(state["best_state"] if args.best else state["model"])
        predictor = Predictor(bundle, network=network)
        print(f"weights of {args.checkpoint} (epoch {state.get('epoch')}, {'best' if args.best else 'latest'})")
    rows = []
    for i, (name, spacing, axcodes, rotation) in enumerate(CASES):
        if args.quick and i not in QUICK:
            continue
        head, truth = case_pair(spacing, axcodes, rotation)
        t0 = time.perf_counter()
        pred = predictor.predict(head)
        seconds = time.perf_counter() - t0
        p, t = pred.labels.array[0] > 0, truth.array[0] > 0
        row = {"case": name, "shape": "x".join(map(str, head.spatial_shape)), "brain_dice": round(dice(p, t), 4),
               "precision": round(float((p & t).sum() / max(p.sum(), 1)), 4),
               "recall": round(float((p & t).sum() / max(t.sum(), 1)), 4), "seconds": round(seconds, 1)}
        rows.append(row)
        print(f"{name:28s} brain Dice {row['brain_dice']:.3f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  {seconds:5.1f} s", flush=True)
        if i == 0:
            from medannot.annotations import LabelMap
            from medannot.annotations.overlay import write_overlays

            label_map = LabelMap.parse({k: v.model_dump() for k, v in predictor.bundle.spec.labels.items()})
            write_overlays(head, pred.labels.array[0], label_map, args.out / "colin27_native")
    mean = round(float(np.mean([r["brain_dice"] for r in rows])), 4)
    print(f"{'MEAN':28s} brain Dice {mean:.3f}")
    with open(args.out / "colin27.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if args.write_card:
        card = predictor.bundle.path / "MODEL_CARD.md"
        write_card_section(card, rows, mean)
        print(f"wrote the Colin27 section of {card}")


SECTION = "## A real brain it never saw"


def write_card_section(card: Path, rows: list[dict], mean: float) -> None:
    """Replace (or add before "## Re-training") the Colin27 section of a model card."""
    lines = [
        SECTION,
        "",
        "Colin27 (`ch2.nii.gz`: one real man's T1 head with skull, scalp, face and neck, 1 mm; Debian package",
        "`mricron-data`), never used for training (only to choose the post-processing radius, see above), against its hand-edited brain-tissue mask",
        "(`ch2better.nii.gz`, 0.5 mm). The head was also re-acquired on other grids by resampling; the mask was",
        "resampled onto each grid (nearest neighbour). Brain region = grey or white matter. Measured by",
        "`scripts/eval_colin27.py --write-card` (and asserted >= 0.85 by `tests/integration/test_brain_colin27.py`).",
        "",
        "| grid | shape | brain Dice | precision | recall | seconds (2 CPU threads) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['case']} | {r['shape']} | {r['brain_dice']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['seconds']} |" for r in rows]
    lines += [f"| **mean** | | **{mean:.3f}** | | | |", ""]
    text = card.read_text()
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + "\n".join(lines) + (text[end + 1 :] if end != -1 else "")
    else:
        anchor = "## Re-training"
        i = text.find(anchor)
        text = text[:i] + "\n".join(lines) + "\n" + text[i:] if i != -1 else text + "\n" + "\n".join(lines)
    card.write_text(text)


if __name__ == "__main__":
    main()
