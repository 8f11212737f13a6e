"""Evaluate the bundled ``brain-mri`` model on unseen brains and write a Dice table (CSV).

Quantitative test set: SEMI-SYNTHETIC subjects derived from the training template (MNI152
2009a) with seeds never used in training or validation (>= 20000), at other resolutions and
storage orientations (axial / sagittal / coronal, LPS, oblique), with skull, scalp, bias
field and noise; the truth is transformed identically. They are *not independent subjects*:
they measure robustness to resolution, orientation, contrast and artefacts, not anatomy.

Qualitative check on real, single-subject images that ship inside installed packages
(nibabel's test data: ``anatomical.nii``, a real T1 crop at 2 mm, and the first volume of
``example4d.nii.gz``, a real EPI): overlay PNGs, no ground truth.

Usage::

    .venv/bin/python scripts/eval_brain.py [--bundle brain-mri] [--out runs/brain_eval] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from medannot.data.geometry import Geometry
from medannot.data.image import Image
from medannot.evaluation import dice
from medannot.inference import Predictor
from medannot.training.synth import SynthParams
from medannot.training.synth_source import make_subject

NOTE = "semi-synthetic, derived from the training template; not independent subjects"
T1_LIKE = SynthParams(p_t1_like=1.0)
ANY_CONTRAST = SynthParams(p_t1_like=0.0, p_template_texture=0.0)

#: name, seed, spacing (mm), axcodes, oblique rotation (deg), synthesis params, contrast label
CASES = [
    ("axial-1.2x1.2x4mm-LPS", 20001, (1.2, 1.2, 4.0), "LPS", (0, 0, 0), T1_LIKE, "T1-like"),
    ("sagittal-0.8mm-ASL", 20002, (0.8, 0.8, 0.8), "ASL", (0, 0, 0), T1_LIKE, "T1-like"),
    ("coronal-1x1x3mm-LIP", 20003, (1.0, 1.0, 3.0), "LIP", (0, 0, 0), T1_LIKE, "T1-like"),
    ("iso-3mm-RAS", 20004, (3.0, 3.0, 3.0), "RAS", (0, 0, 0), T1_LIKE, "T1-like"),
    ("oblique20-1mm-LPS", 20005, (1.0, 1.0, 1.0), "LPS", (20, 0, 0), T1_LIKE, "T1-like"),
    ("axial-1mm-RAS-T1", 20006, (1.0, 1.0, 1.0), "RAS", (0, 0, 0), T1_LIKE, "T1-like"),
    ("axial-1x1x2mm-LAS-random-contrast", 20007, (1.0, 1.0, 2.0), "LAS", (0, 0, 0), ANY_CONTRAST, "random"),
    ("sagittal-1mm-PIR-random-contrast", 20008, (1.0, 1.0, 1.0), "PIR", (0, 0, 10), ANY_CONTRAST, "random"),
]
QUICK = [0, 4]


def _scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "dice_gm": dice(pred == 1, truth == 1),
        "dice_wm": dice(pred == 2, truth == 2),
        "dice_brain": dice(pred > 0, truth > 0),
    }


def _nibabel_image(path: Path) -> Image:
    import nibabel as nib

    img = nib.load(path)
    data = np.asanyarray(img.dataobj).astype(np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    return Image.from_spatial(data, Geometry.from_affine(img.affine), meta={"path": str(path)})


def _overlay(image: Image, labels: Image, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medannot.transforms.spatial import reorient

    img = reorient(image, "RAS").array[0]
    lab = reorient(labels, "RAS").array[0]
    sp = reorient(image, "RAS").spacing
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
    views = [
        (img[:, :, img.shape[2] // 2].T, lab[:, :, img.shape[2] // 2].T, sp[1] / sp[0], "axial"),
        (img[:, img.shape[1] // 2].T, lab[:, img.shape[1] // 2].T, sp[2] / sp[0], "coronal"),
        (img[img.shape[0] // 2].T, lab[img.shape[0] // 2].T, sp[2] / sp[1], "sagittal"),
    ]
    for ax, (a, b, aspect, name) in zip(axes, views):
        ax.imshow(a, origin="lower", cmap="gray", aspect=aspect)
        ax.imshow(np.ma.masked_equal(b, 0), origin="lower", cmap="autumn", alpha=0.35, aspect=aspect, vmin=1, vmax=2)
        ax.contour(b, levels=[0.5, 1.5], colors=["red", "yellow"], linewidths=0.6)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title + "  (red: brain outline, yellow: WM outline)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="brain-mri", help="bundle folder or bundled name")
    parser.add_argument("--out", type=Path, default=Path("runs/brain_eval"), help="folder for the CSV and overlays")
    parser.add_argument("--quick", action="store_true", help="two subjects only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_bundle(args.bundle)
    rows = []
    cases = [CASES[i] for i in QUICK] if args.quick else CASES
    for name, seed, spacing, axcodes, rot, params, contrast in cases:
        image, truth = make_subject(seed, spacing, axcodes, rot, params=params)
        t0 = time.perf_counter()
        pred = predictor.predict(image)
        seconds = time.perf_counter() - t0
        if not pred.labels.same_grid(image):
            raise SystemExit(f"{name}: prediction is not on the input grid")
        row = {"case": name, "seed": seed, "spacing_mm": "x".join(f"{s:g}" for s in spacing), "axcodes": axcodes,
               "contrast": contrast, "shape": "x".join(str(s) for s in image.spatial_shape),
               **{k: round(v, 4) for k, v in _scores(pred.labels.array[0], truth.array[0]).items()},
               "seconds": round(seconds, 1), "data": NOTE}
        rows.append(row)
        print(f"{name:40s} GM {row['dice_gm']:.3f}  WM {row['dice_wm']:.3f}  brain {row['dice_brain']:.3f}  {seconds:5.1f} s", flush=True)
        if name == cases[0][0]:
            _overlay(image, pred.labels, args.out / f"{name}.png", f"{name} ({NOTE})")
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("dice_gm", "dice_wm", "dice_brain", "seconds")}
    rows.append({"case": "MEAN", **mean, "data": NOTE})
    # Sanity check on the template T1 itself (the training source: NOT held out, not in the mean).
    from medannot import samples

    t1, truth = samples.mni152_t1(), samples.mni152_tissue_labels()
    t0 = time.perf_counter()
    pred = predictor.predict(t1)
    seconds = time.perf_counter() - t0
    tpl = {k: round(v, 4) for k, v in _scores(pred.labels.array[0], truth.array[0]).items()}
    rows.append({"case": "mni152-template-T1 (training source, not held out)", "spacing_mm": "1x1x1", "axcodes": "RAS",
                 "contrast": "T1 (skull-stripped)", "shape": "x".join(str(s) for s in t1.spatial_shape), **tpl,
                 "seconds": round(seconds, 1), "data": "the training template itself, truth = GM/WM probability >= 0.5"})
    print(f"{'mni152 template T1 (NOT held out)':40s} GM {tpl['dice_gm']:.3f}  WM {tpl['dice_wm']:.3f}  brain {tpl['dice_brain']:.3f}  {seconds:5.1f} s")
    with open(args.out / "brain_eval.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'MEAN':40s} GM {mean['dice_gm']:.3f}  WM {mean['dice_wm']:.3f}  brain {mean['dice_brain']:.3f}   ({NOTE})")
    print(f"wrote {args.out / 'brain_eval.csv'}")
    # Qualitative: real single-subject images shipped inside nibabel (no ground truth).
    import nibabel

    data = Path(nibabel.__file__).parent / "tests" / "data"
    for fname, what in (("anatomical.nii", "real T1 crop (nibabel test data), 2 mm"), ("example4d.nii.gz", "real EPI volume (nibabel test data)")):
        path = data / fname
        if not path.is_file():
            print(f"skipped qualitative check: {path} not found")
            continue
        image = _nibabel_image(path)
        pred = predictor.predict(image)
        counts = np.bincount(pred.labels.array.ravel(), minlength=3)
        out = args.out / f"real-{fname.split('.')[0]}.png"
        _overlay(image, pred.labels, out, f"{fname}: {what}; no ground truth")
        print(f"qualitative {fname}: voxels GM {counts[1]} WM {counts[2]} -> {out}")


if __name__ == "__main__":
    main()
