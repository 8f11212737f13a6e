"""A project's accepted annotations as one zip archive.

Contents:
    * ``labels/case-<id>-<name>.nii.gz``: each accepted case's mask (uint8 label NIfTI on the case image grid;
      2D pictures as one-slice volumes), byte for byte the stored accepted version.
    * ``coco.json`` (when the project has 2D cases): COCO instance annotations, one per connected component
      (4-connected) of each label, with the mask as uncompressed RLE (column-major, as pycocotools), ``bbox``
      ``[x, y, width, height]`` in pixels and ``area`` in pixels.
    * ``dicom_seg/case-<id>-<name>.dcm`` (cases uploaded as DICOM, when :mod:`medannot.annotations.dicom_seg`
      is available): the accepted mask as a BINARY DICOM SEG referencing the uploaded series, algorithm type
      SEMIAUTOMATIC (a model's proposal corrected by a person).
    * ``manifest.json``: project, label map, and per case the accepted version, its author, time and the
      correction effort; always valid JSON (a non-finite number, e.g. from data stored before the server
      refused them, is written as null).
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage
from sqlalchemy import select
from sqlalchemy.orm import Session

from medannot.errors import MedannotError
from medannot.server.deps import usernames
from medannot.server.files import BlobStore
from medannot.server.imaging import mask_array
from medannot.server.models import AnnotationVersion, CaseRecord, Project
from medannot.server.store import finite


def rle_encode(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a 2D binary mask (H, W): run lengths in column-major order, starting with zeros."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def coco_annotations(labels: np.ndarray, image_id: int, start_id: int, label_values: list[int]) -> list[dict]:
    """COCO annotations of a 2D label array (H, W): one per 4-connected component of each label value."""
    out = []
    next_id = start_id
    for value in label_values:
        components, n = ndimage.label(labels == value)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            if box is None:
                continue
            obj = components == index
            rows, cols = box
            out.append({
                "id": next_id, "image_id": image_id, "category_id": int(value), "iscrowd": 0,
                "area": int(obj.sum()), "segmentation": rle_encode(obj),
                "bbox": [int(cols.start), int(rows.start), int(cols.stop - cols.start), int(rows.stop - rows.start)],
            })
            next_id += 1
    return out


def dicom_seg_bytes(mask_data: bytes, source_zip: bytes, labels: list[dict], project: str) -> bytes | None:
    """The accepted mask as DICOM SEG bytes referencing the uploaded DICOM files, or None without the SEG writer.

    Raises:
        MedannotError: When the SEG cannot be made (e.g. the series lacks a FrameOfReferenceUID).
    """
    try:
        from medannot.annotations.dicom_grid import load_source_datasets
        from medannot.annotations.dicom_seg import write_dicom_seg
    except ImportError:
        return None
    from medannot.data import ImageKind
    from medannot.server.imaging import read_nifti_bytes

    mask = read_nifti_bytes(mask_data, ImageKind.LABEL, what="accepted mask")
    label_map = {str(lab["value"]): {"name": lab["name"], "color": [int(lab["color"][i : i + 2], 16) for i in (1, 3, 5)]}
                 for lab in labels}
    with tempfile.TemporaryDirectory(prefix="medannot-seg-") as tmp:
        with zipfile.ZipFile(io.BytesIO(source_zip)) as zf:
            zf.extractall(tmp)  # our own zip of id-named files (see uploads._zip_dicom), not a user archive
        datasets = load_source_datasets(Path(tmp))
        out = write_dicom_seg(mask, datasets, label_map, f"medannot review ({project})", "1", Path(tmp) / "seg.dcm",
                              algorithm_type="SEMIAUTOMATIC", series_description="medannot accepted annotation")
        return out.read_bytes()


def write_export(session: Session, project: Project, blobs: BlobStore, target: Path) -> dict:
    """Write the project's accepted annotations into the zip ``target``; returns the manifest.

    Cases without an accepted version are left out (the manifest lists only what is in the archive).
    """
    cases = list(session.scalars(select(CaseRecord).where(CaseRecord.project_id == project.id, CaseRecord.status == "accepted").order_by(CaseRecord.id)))
    label_values = [int(lab["value"]) for lab in project.labels]
    manifest: dict = {"project": {"id": project.id, "name": project.name, "model": project.model}, "labels": project.labels, "cases": []}
    coco: dict = {"info": {"description": f"medannot export of project {project.name}"}, "images": [], "annotations": [],
                  "categories": [{"id": int(lab["value"]), "name": lab["name"]} for lab in project.labels]}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for case in cases:
            version = session.scalar(select(AnnotationVersion).where(AnnotationVersion.case_id == case.id, AnnotationVersion.kind == "accepted")
                                     .order_by(AnnotationVersion.number.desc()).limit(1))
            if version is None:
                continue
            data = blobs.get(version.mask_sha256)
            member = f"labels/case-{case.id}-{case.name}.nii.gz"
            zf.writestr(member, data)
            names = usernames(session, {version.author_id})
            manifest["cases"].append({
                "id": case.id, "name": case.name, "file": member, "version_id": version.id, "version_number": version.number,
                "accepted_by": names.get(version.author_id) if version.author_id is not None else None, "accepted": version.created.isoformat(), "effort": finite(case.effort),
                "spatial_dims": case.spatial_dims, "source_format": case.source_format,
            })
            if case.source_sha256 and case.source_format.startswith("dicom"):
                try:
                    seg = dicom_seg_bytes(data, blobs.get(case.source_sha256, ".bin"), project.labels, project.name)
                except MedannotError as exc:
                    manifest["cases"][-1]["dicom_seg_error"] = str(exc).splitlines()[0]
                    seg = None
                if seg is not None:
                    manifest["cases"][-1]["dicom_seg"] = f"dicom_seg/case-{case.id}-{case.name}.dcm"
                    zf.writestr(manifest["cases"][-1]["dicom_seg"], seg)
            if case.spatial_dims == 2:
                labels, _ = mask_array(data)
                plane = labels[..., 0]
                coco["images"].append({"id": case.id, "file_name": case.name, "height": int(plane.shape[0]), "width": int(plane.shape[1])})
                coco["annotations"] += coco_annotations(plane, case.id, len(coco["annotations"]) + 1, label_values)
        if coco["images"]:
            zf.writestr("coco.json", json.dumps(coco, allow_nan=False))
        zf.writestr("manifest.json", json.dumps(finite(manifest), indent=2, allow_nan=False))
    return manifest
