"""``medannot demo``: the main job on the bundled real samples with the bundled models.

1. Writes the inputs and their ground truth into ``OUT/inputs`` and ``OUT/truth``:
   the right half of the stardist nuclei image (never seen in training) and the MNI152 T1 template.
2. Annotates them with the ``nuclei`` and ``brain-mri`` bundles into ``OUT/annotations/{nuclei,brain}``,
   and the nuclei with the training-free Otsu baseline into ``OUT/annotations/nuclei-otsu``.
3. Evaluates each against the truth into ``OUT/evaluation/<name>/``
   (metrics.csv, metrics.json, report.html).
4. Prints a summary table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from medannot import samples
from medannot.data import Image, ImageKind
from medannot.errors import MedannotError
from medannot.io import write_image

NUCLEI_CASE = "nuclei-right-half"
BRAIN_CASE = "mni152-t1"


def prepare_inputs(out: Path) -> tuple[Path, Path]:
    """Write the demo inputs and truth; returns (inputs folder, truth folder)."""
    inputs, truth = out / "inputs", out / "truth"
    for folder in (inputs / "nuclei", inputs / "brain", truth / "nuclei", truth / "brain"):
        folder.mkdir(parents=True, exist_ok=True)
    # the held-out half as an image of its own (PNG/TIFF carry no origin, so none is set)
    image = Image.from_spatial(samples.nuclei_image().scalar()[:, samples.NUCLEI_SPLIT_COLUMN :])
    mask = Image.from_spatial(samples.nuclei_instances().scalar()[:, samples.NUCLEI_SPLIT_COLUMN :], kind=ImageKind.LABEL)
    write_image(image, inputs / "nuclei" / f"{NUCLEI_CASE}.tif")
    # truth in the annotate layout: labels (1 = nucleus) plus the expert's instance ids, so that
    # touching nuclei count as separate lesions in the lesion-wise evaluation
    (truth / "nuclei" / NUCLEI_CASE).mkdir(exist_ok=True)
    write_image(mask.with_array((mask.array > 0).astype(np.uint8), kind=ImageKind.LABEL), truth / "nuclei" / NUCLEI_CASE / "labels.png")
    write_image(mask.as_volume(), truth / "nuclei" / NUCLEI_CASE / "instances.nii.gz")
    write_image(samples.mni152_t1(), inputs / "brain" / f"{BRAIN_CASE}.nii.gz")
    write_image(samples.mni152_tissue_labels(), truth / "brain" / f"{BRAIN_CASE}.nii.gz")
    return inputs, truth


def run_demo(out: Path) -> None:
    """Run the whole demo into ``out`` (created if missing)."""
    from medannot.evaluation import evaluate_paths
    from medannot.reporting import print_annotation_summary
    from medannot.tasks import PredictOptions, load_predictor
    from medannot.tasks.segmentation import ClassicalSegmenter
    from medannot.workflows.annotate import annotate_inputs

    console = Console(highlight=False)
    out = Path(out)
    console.print(f"[bold]medannot demo[/bold] -> {out}")
    inputs, truth = prepare_inputs(out)
    console.print("annotating the nuclei image (right half, held out from training) with model 'nuclei' ...")
    nuclei = load_predictor("nuclei")
    results = annotate_inputs(inputs / "nuclei", nuclei, out / "annotations" / "nuclei")
    console.print("annotating the MNI152 T1 brain with model 'brain-mri' ...")
    brain = load_predictor("brain-mri", PredictOptions(progress=True))
    results += annotate_inputs(inputs / "brain", brain, out / "annotations" / "brain")
    console.print("annotating the nuclei image with the training-free Otsu baseline ...")
    baseline = annotate_inputs(inputs / "nuclei", ClassicalSegmenter("otsu"), out / "annotations" / "nuclei-otsu")
    print_annotation_summary(results + baseline)
    failed = [r for r in results + baseline if not r.ok]
    if failed:
        raise MedannotError("demo: " + "; ".join(r.reason for r in failed))

    evaluations = [
        ("model nuclei", evaluate_paths(
            out / "annotations" / "nuclei", truth / "nuclei", out / "evaluation" / "nuclei", labels=nuclei.label_map.names(), lesions=True,
        )),
        ("model brain-mri", evaluate_paths(out / "annotations" / "brain", truth / "brain", out / "evaluation" / "brain", labels=brain.label_map.names())),
        ("otsu baseline", evaluate_paths(
            out / "annotations" / "nuclei-otsu", truth / "nuclei", out / "evaluation" / "nuclei-otsu", labels=nuclei.label_map.names(), lesions=True,
        )),
    ]
    table = Table(title="demo: agreement with the ground truth")
    for col in ("case", "annotator", "label", "Dice", "HD95", "objects F1"):
        table.add_column(col, justify="left" if col in {"case", "annotator", "label"} else "right")
    for annotator, result in evaluations:
        for row in result.rows:
            f1 = row.get("lesion_f1")
            table.add_row(
                str(row["case"]), annotator, str(row["label"]), f"{row['dice']:.3f}", f"{row['hd95']:.2f}",
                "-" if f1 is None else f"{f1:.3f}",
            )
    console.print(table)
    console.print(f"{NUCLEI_CASE}: held out, the nuclei model trained on the left half of the image only (HD95 in pixels;")
    console.print("  objects F1: nuclei matched one to one with the expert's at IoU > 0.5).")
    console.print(f"{BRAIN_CASE}: the template whose tissue maps the brain-mri model was synthesised from; its model card")
    console.print("  reports scores on brains it did not train on (HD95 in mm).")
    console.print(f"overlays: {out / 'annotations'}/*/*/overlay*.png")
    console.print(f"reports:  {out / 'evaluation'}/*/report.html")
