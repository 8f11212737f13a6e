"""Which files ``annotate --format`` writes, and the writers it adds to a case folder.

``nifti`` (``labels.nii.gz``, always written), ``nrrd`` (``labels.seg.nrrd``: a 3D Slicer segmentation, any input),
``dicom-seg`` (``seg.dcm``), ``rtstruct`` (``rtstruct.dcm``), ``dicom-sr`` (``sr.dcm``) and ``report``
(``report.html``). The DICOM formats need a DICOM input (a series folder or a DICOMweb study), since they reference
the source instances.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot.annotations.dicom_uids import DicomOutputUids, output_uids
from medannot.annotations.labelmap import LabelMap
from medannot.annotations.measurements import Measurements
from medannot.annotations.schema import Provenance
from medannot.data.image import Image
from medannot.errors import ConfigError

__all__ = ["OutputFormat", "case_writers", "dicom_writers", "parse_formats"]

SEG_FILE = "seg.dcm"
RTSTRUCT_FILE = "rtstruct.dcm"
SR_FILE = "sr.dcm"
REPORT_FILE = "report.html"


class OutputFormat(enum.StrEnum):
    """Formats of a case folder (``annotate --format``)."""

    NIFTI = "nifti"
    DICOM_SEG = "dicom-seg"
    RTSTRUCT = "rtstruct"
    DICOM_SR = "dicom-sr"
    REPORT = "report"
    NRRD = "nrrd"

    @property
    def needs_dicom(self) -> bool:
        """True for formats that reference DICOM source instances."""
        return self in (OutputFormat.DICOM_SEG, OutputFormat.RTSTRUCT, OutputFormat.DICOM_SR)

    @property
    def is_label_map(self) -> bool:
        """True for the formats that hold the label map itself (``medannot convert`` converts between them)."""
        return self in (OutputFormat.NIFTI, OutputFormat.DICOM_SEG, OutputFormat.RTSTRUCT)


def parse_formats(values: Iterable[str] | str | None) -> tuple[OutputFormat, ...]:
    """Parse ``--format`` values (repeatable, each may be a comma list) once; ``nifti`` is always included.

    ``dicom-sr`` brings ``dicom-seg`` with it (the report measures and references that SEG).

    Raises:
        ConfigError: On an unknown name (the message lists the valid ones).
    """
    if values is None:
        values = []
    if isinstance(values, str):
        values = [values]
    out = [OutputFormat.NIFTI]
    for value in values:
        for name in str(value).split(","):
            name = name.strip().lower()
            if not name:
                continue
            try:
                fmt = OutputFormat(name)
            except ValueError:
                valid = ", ".join(f.value for f in OutputFormat)
                raise ConfigError(f"unknown output format {name!r}; expected one of: {valid}") from None
            for wanted in ((OutputFormat.DICOM_SEG, fmt) if fmt is OutputFormat.DICOM_SR else (fmt,)):
                if wanted not in out:
                    out.append(wanted)
    return tuple(out)


def dicom_writers(
    formats: Sequence[OutputFormat],
    labels: Image,
    source_datasets: Sequence[Any],
    label_map: LabelMap,
    provenance: Provenance,
) -> list[Callable[[Path], dict[str, str]]]:
    """Writers of the DICOM label formats among ``formats`` (SEG, RTSTRUCT, SR); see :func:`case_writers`."""
    return case_writers(formats, None, labels, source_datasets, label_map, provenance)


def case_writers(
    formats: Sequence[OutputFormat],
    image: Image | None,
    labels: Image,
    source_datasets: Sequence[Any],
    label_map: LabelMap,
    provenance: Provenance,
    instance_maps: Mapping[int, np.ndarray] | None = None,
    case_name: str = "",
    uids: DicomOutputUids | None = None,
) -> list[Callable[[Path], dict[str, str]]]:
    """Writers for the formats among ``formats`` beyond NIfTI; each writes into a folder and returns ``{key: file name}``.

    In this order: ``labels.seg.nrrd``, ``seg.dcm``, ``rtstruct.dcm``, ``sr.dcm`` (the SR of the ``seg.dcm`` just written),
    ``report.html``.
    The algorithm is named after the provenance: the bundle name and version (a classical method: its name and
    the medannot version). Measurements (SR and report) are made once, on first use; lesions are the labels with
    ``instance_maps`` and those named as abnormal structures (:func:`medannot.annotations.measurements.lesion_labels`).

    Args:
        formats: Parsed formats.
        image: The input image (needed for ``report``).
        labels: The label image on the input's grid.
        source_datasets: Headers of the DICOM source series (needed for the DICOM formats; else empty).
        label_map: Names, colours (and codes, by name) of the labels.
        provenance: What made the labels.
        instance_maps: A model's instance ids per label value (lesions), on the labels' grid.
        case_name: The case's name (the report's title).
        uids: UIDs of the SEG and SR; None derives them from the source series and the model
            (:func:`medannot.annotations.dicom_uids.output_uids`), so the same model on the same series makes the
            same objects.
    """
    from medannot import __version__

    name = provenance.name or "medannot"
    version = provenance.version or __version__
    writers: list[Callable[[Path], dict[str, str]]] = []
    measured: list[Measurements] = []
    ids: list[DicomOutputUids] = [uids] if uids is not None else []

    def dicom_uids() -> DicomOutputUids | None:
        if not ids and source_datasets:  # no sources: the writer says what is missing
            ids.append(output_uids(str(source_datasets[0].get("SeriesInstanceUID", "")), provenance))
        return ids[0] if ids else None

    def measurements() -> Measurements:
        from medannot.annotations.measurements import lesion_labels, measure

        if not measured:
            measured.append(measure(labels, label_map, lesion_labels(label_map, instance_maps), instance_maps))
        return measured[0]

    if OutputFormat.NRRD in formats:

        def write_nrrd(folder: Path) -> dict[str, str]:
            from medannot.annotations.slicer_seg import SLICER_SEG_FILE, write_slicer_segmentation

            named = label_map if isinstance(label_map, LabelMap) else LabelMap.parse(label_map)
            write_slicer_segmentation(labels, named, folder / SLICER_SEG_FILE)
            return {"labels_nrrd": SLICER_SEG_FILE}

        writers.append(write_nrrd)
    if OutputFormat.DICOM_SEG in formats:

        def write_seg(folder: Path) -> dict[str, str]:
            from medannot.annotations.dicom_seg import write_dicom_seg

            made = dicom_uids()
            write_dicom_seg(labels, source_datasets, label_map, name, version, folder / SEG_FILE, uids=made.seg if made else None)
            return {"dicom_seg": SEG_FILE}

        writers.append(write_seg)
    if OutputFormat.RTSTRUCT in formats:

        def write_rt(folder: Path) -> dict[str, str]:
            from medannot.annotations.rtstruct import write_rtstruct

            write_rtstruct(labels, source_datasets, label_map, name, version, folder / RTSTRUCT_FILE)
            return {"rtstruct": RTSTRUCT_FILE}

        writers.append(write_rt)
    if OutputFormat.DICOM_SR in formats:

        def write_sr(folder: Path) -> dict[str, str]:
            from medannot.annotations.dicom_sr import write_dicom_sr

            made = dicom_uids()
            write_dicom_sr(folder / SEG_FILE, source_datasets, measurements(), name, version, folder / SR_FILE,
                           uids=made.sr if made else None, device_uid=made.device if made else None)
            return {"dicom_sr": SR_FILE}

        writers.append(write_sr)
    if OutputFormat.REPORT in formats:
        if image is None:
            raise ConfigError("--format report needs the input image")
        shown = image

        def write_report(folder: Path) -> dict[str, str]:
            from medannot.annotations.case_report import write_case_report

            write_case_report(folder / REPORT_FILE, case_name or "case", shown, labels.scalar(), label_map, measurements(), provenance)
            return {"report": REPORT_FILE}

        writers.append(write_report)
    return writers
