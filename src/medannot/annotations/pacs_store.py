"""Send a case's labels back to the PACS it came from, as a DICOM SEG in the same study (STOW-RS)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

    Returns:
        The stored SOPInstanceUIDs (one SEG instance).

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
        write_dicom_seg(labels, list(source_datasets), label_map, provenance.name, provenance.version or "unknown", path)
        seg = pydicom.dcmread(path)
    if str(seg.StudyInstanceUID) != location.study_uid:
        raise PacsError(f"the DICOM SEG belongs to study {seg.StudyInstanceUID}, not to {location.study_uid}; not stored")
    client = PacsClient.for_location(location, settings)
    try:
        stored = client.store([seg], location.study_uid)
    except PacsError as exc:
        raise PacsError(f"{location.url}: DICOM SEG not stored ({exc.reason})") from None
    if str(seg.SOPInstanceUID) not in stored:
        raise PacsError(f"the PACS at {location.base_url} did not confirm storing the DICOM SEG {seg.SOPInstanceUID}")
    return stored
