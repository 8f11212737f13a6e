"""Deterministic UIDs of the DICOM objects medannot makes, so re-running does not duplicate them on a PACS.

A SEG (or SR) made from one source series by one model is the same object every time it is made: its
SeriesInstanceUID and SOPInstanceUID are derived, not drawn. Each UID is ``2.25.<decimal>`` of a name-based
UUID (version 5, SHA-1; DICOM PS3.5 B.2 and ISO/IEC 9834-8) of:

* the source series' SeriesInstanceUID,
* the object's role (``SEG``, ``SR``) and which UID of it (``series``, ``instance``),
* the model's identity: name, version, SHA-256 of its weights and the task (a classical method: its name, the
  medannot version and its parameters).

So the same study annotated again by the same model version gives the same UIDs (a PACS that already holds the
objects recognises them), while another model, version, weights file or set of method parameters gives new ones.
:func:`fresh_output_uids` draws random ones instead (``annotate --on-existing keep-both``). The SR's tracking
identifiers and observer device UID are derived the same way, from the SR's instance UID and the model.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from medannot.annotations.schema import Provenance
from medannot.errors import InputError

__all__ = ["DicomOutputUids", "OutputUids", "derived_uid", "fresh_output_uids", "model_identity", "output_uids"]

#: Namespace of every derived UID (a fixed UUID; changing it changes every UID medannot derives).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://medannot.invalid/dicom-outputs/v1")


def derived_uid(*parts: str) -> str:
    """``2.25.<int>`` of the name-based UUID (v5) of ``parts`` (joined with a separator no part holds).

    Raises:
        InputError: No parts, or a part holding the separator (``\\x1f``).
    """
    if not parts or any("\x1f" in p for p in parts):
        raise InputError("a derived UID needs one or more parts without the unit separator character")
    return f"2.25.{uuid.uuid5(NAMESPACE, chr(0x1F).join(parts)).int}"


def model_identity(provenance: Provenance) -> tuple[str, ...]:
    """What identifies the maker of an output: source kind, name, version, weights SHA-256, task and parameters
    (canonical JSON, so a classical method with other parameters is another maker)."""
    from medannot import __version__

    params = json.dumps(provenance.parameters or {}, sort_keys=True, default=str, separators=(",", ":"))
    return (str(provenance.source), str(provenance.name), str(provenance.version or __version__), str(provenance.sha256 or ""),
            str(provenance.task), params)


@dataclass(frozen=True)
class OutputUids:
    """The UIDs of one DICOM object (a series holding one instance).

    Attributes:
        series: Its SeriesInstanceUID.
        instance: Its SOPInstanceUID.
        deterministic: Derived from the source series and the model (False: drawn at random).
    """

    series: str
    instance: str
    deterministic: bool = True

    def child(self, *parts: Any) -> str:
        """A UID for something inside the object (e.g. an SR tracking identifier), derived from the instance UID."""
        if not self.deterministic:
            from pydicom.uid import generate_uid

            return str(generate_uid())
        return derived_uid(self.instance, *(str(p) for p in parts))


@dataclass(frozen=True)
class DicomOutputUids:
    """The UIDs of the SEG and of its SR made from one source series by one model.

    Attributes:
        seg: The DICOM SEG's UIDs.
        sr: The DICOM SR's UIDs.
        device: The SR observer device's UID (the model; the same for every series it annotates).
    """

    seg: OutputUids
    sr: OutputUids
    device: str


def output_uids(source_series_uid: str, provenance: Provenance) -> DicomOutputUids:
    """The deterministic UIDs of the SEG and SR that ``provenance``'s model makes from ``source_series_uid``.

    Raises:
        InputError: An empty source SeriesInstanceUID.
    """
    source = str(source_series_uid or "").strip()
    if not source:
        raise InputError("the source series has no SeriesInstanceUID; deterministic DICOM UIDs need it")
    maker = model_identity(provenance)

    def one(role: str) -> OutputUids:
        return OutputUids(derived_uid(source, role, "series", *maker), derived_uid(source, role, "instance", *maker))

    return DicomOutputUids(one("SEG"), one("SR"), derived_uid("device", *maker))


def fresh_output_uids(provenance: Provenance) -> DicomOutputUids:
    """Random UIDs (a new SEG and SR series beside any earlier one); the device UID stays the model's."""
    from pydicom.uid import generate_uid

    return DicomOutputUids(OutputUids(str(generate_uid()), str(generate_uid()), False),
                           OutputUids(str(generate_uid()), str(generate_uid()), False),
                           derived_uid("device", *model_identity(provenance)))
