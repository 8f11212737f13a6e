"""Send a case's labels back to the PACS it came from, as a DICOM SEG in the same study (STOW-RS), and on request
the DICOM SR measurement report of that SEG beside it (one STOW-RS request: both or neither)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.schema import Provenance
from medannot.data import Image
from medannot.errors import InputError, PacsError
from medannot.io.dicomweb import DicomWebLocation, PacsClient, PacsSettings

__all__ = ["store_segmentation"]


def store_segmentation(
    location: DicomWebLocation,
    labels: Image | None,
    source_datasets: Sequence[Any],
    label_map: LabelMap,
    provenance: Provenance,
    settings: PacsSettings | None = None,
    *,
    measurements: bool = False,
    instance_maps: Mapping[int, np.ndarray] | None = None,
) -> list[str]:
    """Write ``labels`` as a DICOM SEG referencing ``source_datasets`` and store it in ``location``'s study.

    The SEG is made by :func:`medannot.annotations.dicom_seg.write_dicom_seg` (segment names, colours and codes
    from ``label_map``; algorithm name and version from ``provenance``). Empty labels still give a SEG
    (every segment described, no voxel set), so the PACS records that the series was annotated.

    Args:
        location: The series the labels were made from (its study receives the SEG).
        labels: Label image on the source series' grid.
        source_datasets: The source instances (pydicom datasets; pixel data not needed).
        label_map: Label names, colours and codes.
        provenance: The model or method that made the labels.
        settings: Timeout, retries, back-off.
        measurements: Also store the TID 1500 measurement report of the SEG (:func:`medannot.annotations.dicom_sr.write_dicom_sr`:
            volume per segment, longest axial diameter per lesion), in its own series of the study.
        instance_maps: A model's instance ids per label value (lesions) for the measurements.

    Returns:
        The stored SOPInstanceUIDs (the SEG instance, then the SR's).

    Raises:
        PacsError: The PACS is down, refuses or did not store the SEG.
        GeometryError / InputError / OutputError: The SEG could not be made (see ``write_dicom_seg``).
    """
    import pydicom

    from medannot.annotations.dicom_seg import write_dicom_seg

    if labels is None:  # a detection model: boxes only
        raise InputError(f"{location.url}: the model gives boxes, not labels; a DICOM SEG cannot hold them, nothing stored")
    with tempfile.TemporaryDirectory(prefix="medannot-seg-") as tmp:
        path = Path(tmp) / "seg.dcm"
        version = provenance.version or "unknown"
        write_dicom_seg(labels, list(source_datasets), label_map, provenance.name, version, path)
        seg = pydicom.dcmread(path)
        outgoing = [seg]
        if measurements:
            from medannot.annotations.dicom_sr import write_dicom_sr
            from medannot.annotations.measurements import lesion_labels, measure

            measured = measure(labels, label_map, lesion_labels(label_map, instance_maps), instance_maps)
            outgoing.append(pydicom.dcmread(write_dicom_sr(seg, list(source_datasets), measured, provenance.name, version,
                                                           Path(tmp) / "sr.dcm")))
    what = "DICOM SEG and SR" if measurements else "DICOM SEG"
    if str(seg.StudyInstanceUID) != location.study_uid:
        raise PacsError(f"the DICOM SEG belongs to study {seg.StudyInstanceUID}, not to {location.study_uid}; not stored")
    client = PacsClient.for_location(location, settings)
    try:
        stored = client.store(outgoing, location.study_uid)
    except PacsError as exc:
        raise PacsError(f"{location.url}: {what} not stored ({exc.reason})") from None
    for ds, kind in zip(outgoing, ("DICOM SEG", "DICOM SR"), strict=False):
        if str(ds.SOPInstanceUID) not in stored:
            raise PacsError(f"the PACS at {location.base_url} did not confirm storing the {kind} {ds.SOPInstanceUID}")
    return [str(ds.SOPInstanceUID) for ds in outgoing]
