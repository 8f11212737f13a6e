"""Write one case's annotation folder: labels, instances, overlays and ``annotation.json``.

For an input named ``X`` the folder ``OUT/X/`` holds:

- ``labels.nii.gz``: the label map on the input's own grid (uint8, or uint16 past 255 labels);
  2D inputs are stored as a NIfTI volume with one slice; a NIfTI input's qform/sform codes are kept;
- ``labels.png`` (2D only): the same label values as a PNG;
- ``instances.nii.gz`` (and ``instances.png`` in 2D): instance ids matching ``annotation.json``;
- ``overlay.png`` (2D) or ``overlay_{axial,coronal,sagittal}.png`` (3D);
- ``annotation.json``: provenance, label sizes, instances, boxes (see :mod:`medannot.annotations.schema`);
- ``boxes.coco.json`` (2D only): the boxes as a COCO dataset (pycocotools loads it);
- ``overlay_boxes.png`` (2D) or ``overlay_boxes_{axial,coronal,sagittal}.png`` (3D): boxes drawn on the image.

Every segmented instance also yields a box (``source: "instance"``, score = the instance's score);
a detection model gives boxes only (``labels`` is None: no label or instance files).

The folder is assembled under a hidden temporary name and renamed into place,
so an interrupted run never leaves a half-written case folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from medannot.annotations.boxes import boxes_from_instance_records
from medannot.annotations.coco import case_coco
from medannot.annotations.labelmap import LabelMap
from medannot.annotations.overlay import write_overlays
from medannot.annotations.overlay_boxes import write_box_overlays
from medannot.annotations.results import DetectionResult, ExtraWriter, SegmentationResult
from medannot.annotations.schema import Annotation, Box, LabelSummary, Provenance
from medannot.annotations.summary import summarise
from medannot.data import Image, ImageKind
from medannot.io import write_image
from medannot.io.atomic import atomic_folder

#: Header fields of the input that its label files keep (NIfTI qform/sform codes, see medannot.io.nifti.write_nifti).
_SOURCE_HEADER_KEYS = ("nifti_qform_code", "nifti_sform_code")


def label_dtype(max_value: int) -> type[np.unsignedinteger]:
    """Smallest unsigned dtype (uint8 or uint16 or uint32) holding ``max_value``."""
    if max_value <= np.iinfo(np.uint8).max:
        return np.uint8
    return np.uint16 if max_value <= np.iinfo(np.uint16).max else np.uint32


def write_case(
    out_dir: Path,
    case_name: str,
    image: Image,
    result: SegmentationResult | DetectionResult,
    provenance: Provenance,
    extra_files: Sequence[ExtraWriter] = (),
) -> Annotation:
    """Write ``out_dir/case_name/`` atomically and return the annotation it records.

    Args:
        out_dir: Output root; created if missing.
        case_name: Folder name (a plain file name).
        image: The input image (for overlays and geometry).
        result: A segmentation result (label map, instances, probabilities: each instance's score is the mean
            probability of its label inside it) or a detection result (boxes only: no label or instance files).
        provenance: What made the result.
        extra_files: More writers (e.g. DICOM SEG) besides the result's own; each writes into the staging folder and
            returns ``{key: file name}`` for ``annotation.json``'s ``files``; an error in one fails the whole case.

    Raises:
        GeometryError: If the labels are not on ``image``'s grid.
        OutputError: If the folder cannot be written.
    """
    labels = result.labels if isinstance(result, SegmentationResult) else None
    boxes = result.boxes if isinstance(result, DetectionResult) else None
    if labels is not None:
        image.check_same_grid(labels, what=f"input and labels of case {case_name!r}")
    out_dir = Path(out_dir)
    final = out_dir / case_name
    instance_maps = result.instance_maps if isinstance(result, SegmentationResult) else None
    probabilities = result.probabilities if isinstance(result, SegmentationResult) else None
    overlay_threshold = result.overlay_threshold if isinstance(result, DetectionResult) else 0.0
    label_map = result.label_map
    summaries, instances, all_boxes, lab, instance_map = _records(image, labels, label_map, instance_maps, probabilities, boxes)
    with atomic_folder(final, "annotation folder") as staging:
        files: dict[str, str] = {}
        if labels is not None and lab is not None and instance_map is not None:
            _write_masks(staging, image, labels, lab, instance_map, label_map, files)
        if all_boxes or boxes is not None:
            for path in write_box_overlays(image, all_boxes, label_map, staging, overlay_threshold):
                files[path.stem] = path.name
        for write_extra in [*extra_files, *result.extra_files]:
            files.update(write_extra(staging))
        annotation = Annotation(
            case=case_name,
            ndim=image.ndim,
            shape=list(image.spatial_shape),
            spacing=[float(s) for s in image.spacing],
            affine=[[round(float(v), 6) for v in row] for row in image.affine],
            size_unit="mm3" if image.ndim == 3 else "mm2",
            labels=summaries,
            instances=instances,
            provenance=provenance,
            boxes=all_boxes,
            explanations=dict(result.explanations),
            files=files,
            timings_s={k: round(float(v), 3) for k, v in result.timings_s.items()},
        )
        if image.ndim == 2:
            (staging / "boxes.coco.json").write_text(json.dumps(case_coco(annotation, str(provenance.input.get("path", case_name))), indent=1))
            files["boxes_coco"] = "boxes.coco.json"
        (staging / "annotation.json").write_text(json.dumps(annotation.to_dict(), indent=2))
    return annotation


def _records(image: Image, labels: Image | None, label_map: LabelMap, instance_maps: dict[int, np.ndarray] | None,
             probabilities: np.ndarray | None, boxes: list[Box] | None) -> tuple[list[LabelSummary], list, list[Box], np.ndarray | None, np.ndarray | None]:
    """Label summaries, instances and boxes with consistent ids and names (see the schema's ID rules)."""
    all_boxes: list[Box] = []
    lab = instance_map = None
    if labels is not None:
        lab = labels.array[0]
        summaries, instances, instance_map = summarise(lab, labels.geometry, label_map, instance_maps, probabilities)
        lab = lab.astype(label_dtype(int(lab.max()) if lab.size else 0), copy=False)
        names = {s.value: s.name for s in summaries}
        for inst in instances:
            inst.label_name = names.get(inst.label, f"label_{inst.label}")
        all_boxes = boxes_from_instance_records(instances, image.geometry, label_map)
    else:
        instances = []
        summaries = [LabelSummary(info.value, info.name, list(info.color), 0, 0.0, 0) for info in label_map.foreground]
    for box in boxes or []:
        all_boxes.append(replace(box, id=len(all_boxes) + 1))
    for summary in summaries:
        summary.box_count = sum(1 for b in all_boxes if b.label == summary.value)
    return summaries, instances, all_boxes, lab, instance_map


def _write_masks(staging: Path, image: Image, labels: Image, lab: np.ndarray, instance_map: np.ndarray, label_map: LabelMap,
                 files: dict[str, str]) -> None:
    lab_img = labels.with_array(lab[None], kind=ImageKind.LABEL)
    inst_img = labels.with_array(instance_map[None], kind=ImageKind.LABEL)
    for key in _SOURCE_HEADER_KEYS:  # a NIfTI input's qform/sform codes go to its labels as they came
        if key in image.meta:
            lab_img.meta[key] = inst_img.meta[key] = image.meta[key]
    write_image(lab_img.as_volume(), staging / "labels.nii.gz")
    files["labels"] = "labels.nii.gz"
    write_image(inst_img.as_volume(), staging / "instances.nii.gz")
    files["instances"] = "instances.nii.gz"
    if image.ndim == 2:
        write_image(lab_img, staging / "labels.png")
        files["labels_png"] = "labels.png"
        if instance_map.max() <= np.iinfo(np.uint16).max:
            write_image(inst_img.with_array(instance_map.astype(np.uint16)[None]), staging / "instances.png")
            files["instances_png"] = "instances.png"
    for path in write_overlays(image, lab, label_map, staging, instances=instance_map):
        files[path.stem] = path.name
