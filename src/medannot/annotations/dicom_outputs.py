"""Which files ``annotate --format`` writes, and the DICOM writers it adds to a case folder.

``nifti`` (``labels.nii.gz``, always written), ``dicom-seg`` (``seg.dcm``) and ``rtstruct``
(``rtstruct.dcm``). The DICOM formats need a DICOM input (a series folder or a DICOMweb
study), since they reference the source instances.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.schema import Provenance
from medannot.data.image import Image
from medannot.errors import ConfigError

__all__ = ["OutputFormat", "dicom_writers", "parse_formats"]

SEG_FILE = "seg.dcm"
RTSTRUCT_FILE = "rtstruct.dcm"


class OutputFormat(enum.StrEnum):
    """Label formats of a case folder."""

    NIFTI = "nifti"
    DICOM_SEG = "dicom-seg"
    RTSTRUCT = "rtstruct"

    @property
    def needs_dicom(self) -> bool:
        """True for formats that reference DICOM source instances."""
        return self is not OutputFormat.NIFTI


def parse_formats(values: Iterable[str] | str | None) -> tuple[OutputFormat, ...]:
    """Parse ``--format`` values (repeatable, each may be a comma list) once; ``nifti`` is always included.

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
            if fmt not in out:
                out.append(fmt)
    return tuple(out)


def dicom_writers(
    formats: Sequence[OutputFormat],
    labels: Image,
    source_datasets: Sequence[Any],
    label_map: LabelMap,
    provenance: Provenance,
) -> list[Callable[[Path], dict[str, str]]]:
    """Writers for the DICOM formats among ``formats``; each writes into a folder and returns ``{key: file name}``.

    The algorithm is named after the provenance: the bundle name and version (a classical method:
    its name and the medannot version).
    """
    from medannot import __version__

    name = provenance.name or "medannot"
    version = provenance.version or __version__
    writers: list[Callable[[Path], dict[str, str]]] = []
    if OutputFormat.DICOM_SEG in formats:

        def write_seg(folder: Path) -> dict[str, str]:
            from medannot.annotations.dicom_seg import write_dicom_seg

            write_dicom_seg(labels, source_datasets, label_map, name, version, folder / SEG_FILE)
            return {"dicom_seg": SEG_FILE}

        writers.append(write_seg)
    if OutputFormat.RTSTRUCT in formats:

        def write_rt(folder: Path) -> dict[str, str]:
            from medannot.annotations.rtstruct import write_rtstruct

            write_rtstruct(labels, source_datasets, label_map, name, version, folder / RTSTRUCT_FILE)
            return {"rtstruct": RTSTRUCT_FILE}

        writers.append(write_rt)
    return writers
