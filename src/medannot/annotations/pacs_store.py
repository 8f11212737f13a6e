"""Send a case's labels back to the PACS it came from, as a DICOM SEG in the same study (STOW-RS), and on request
the DICOM SR measurement report of that SEG beside it (one STOW-RS request: both or neither).

Re-running is idempotent: the SEG and SR get UIDs derived from the source series and the model
(:mod:`medannot.annotations.dicom_uids`), so the study already holding them is recognised, and
:class:`OnExisting` says what happens then:

* ``skip`` (the default): what is already there stays, nothing is sent twice (only a missing SR is added beside
  an existing SEG). Safe for a PACS, which is an archive (nothing is deleted), and cheap: ``annotate`` does not even
  retrieve a series whose outputs are all there.
* ``replace``: the existing series are deleted first (DICOMweb DELETE where the server offers it, else Orthanc's
  REST API; a server that allows neither is an error, nothing deleted), then the new ones are stored under the same
  UIDs. For when the output should change although the model did not (e.g. after a post-processing fix).
* ``keep-both``: new series with new (random) UIDs beside the earlier ones, e.g. to compare two runs.
"""

from __future__ import annotations

import enum
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medannot.annotations.dicom_uids import DicomOutputUids, fresh_output_uids, output_uids
from medannot.annotations.labelmap import LabelMap
from medannot.annotations.schema import Provenance
from medannot.data import Image
from medannot.errors import ConfigError, InputError, PacsError
from medannot.io.dicomweb import DicomWebLocation, PacsClient, PacsSettings

__all__ = ["OnExisting", "StoreOutcome", "existing_outputs", "store_segmentation"]


class OnExisting(enum.StrEnum):
    """What to do when the study already holds this model's SEG (and SR) of the series (``annotate --on-existing``)."""

    SKIP = "skip"
    REPLACE = "replace"
    KEEP_BOTH = "keep-both"

    @classmethod
    def parse(cls, value: str | OnExisting) -> OnExisting:
        """Convert a string once; a typo lists the valid names.

        Raises:
            ConfigError: Not one of skip, replace, keep-both.
        """
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"--on-existing must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None


@dataclass
class StoreOutcome:
    """What :func:`store_segmentation` did.

    Attributes:
        stored: SOPInstanceUIDs stored (the SEG's, then the SR's).
        existing: ``(kind, SeriesInstanceUID)`` of this model's series already in the study and left as they are.
        replaced: ``(kind, SeriesInstanceUID, how)`` of series deleted before storing their replacement.
    """

    stored: list[str] = field(default_factory=list)
    existing: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def note(self) -> str:
        """One line for a person ("" when nothing was there before)."""
        parts = []
        if self.existing:
            parts.append("already in the PACS, kept: " + ", ".join(f"{kind} series {uid}" for kind, uid in self.existing)
                         + " (--on-existing replace redoes it)")
        if self.replaced:
            parts.append("replaced: " + ", ".join(f"{kind} series {uid} (deleted through the {how})" for kind, uid, how in self.replaced))
        return "; ".join(parts)


def _wanted(uids: DicomOutputUids, measurements: bool) -> list[tuple[str, str]]:
    return [("DICOM SEG", uids.seg.series)] + ([("DICOM SR", uids.sr.series)] if measurements else [])


def existing_outputs(location: DicomWebLocation, provenance: Provenance, settings: PacsSettings | None = None, *,
                     measurements: bool = False) -> list[tuple[str, str]]:
    """This model's SEG (and, with ``measurements``, SR) series of ``location``'s series already in its study.

    Returns:
        ``(kind, SeriesInstanceUID)`` of each one present (QIDO-RS), in the order SEG, SR.

    Raises:
        InputError: ``location`` names no series.
        PacsError: The PACS is down or refuses.
    """
    if location.series_uid is None:
        raise InputError(f"{location.url} names no series; expected .../studies/UID/series/UID")
    uids = output_uids(location.series_uid, provenance)
    present = {s.series_uid for s in PacsClient.for_location(location, settings).list_series(location.study_uid)}
    return [(kind, uid) for kind, uid in _wanted(uids, measurements) if uid in present]


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
    on_existing: OnExisting | str = OnExisting.SKIP,
    uids: DicomOutputUids | None = None,
) -> StoreOutcome:
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
        on_existing: What to do when the study already holds them (:class:`OnExisting`; default skip).
        uids: The SEG's and SR's UIDs; None: derived from the source series and the model
            (:func:`medannot.annotations.dicom_uids.output_uids`), or new random ones for ``keep-both``.

    Returns:
        What was stored, found already there, or replaced (:class:`StoreOutcome`).

    Raises:
        PacsError: The PACS is down, refuses, did not store the SEG, or cannot delete what ``replace`` replaces.
        GeometryError / InputError / OutputError: The SEG could not be made (see ``write_dicom_seg``).
    """
    import pydicom

    from medannot.annotations.dicom_seg import write_dicom_seg

    mode = OnExisting.parse(on_existing)
    if labels is None:  # a detection model: boxes only
        raise InputError(f"{location.url}: the model gives boxes, not labels; a DICOM SEG cannot hold them, nothing stored")
    if uids is None:
        source_uid = str(source_datasets[0].get("SeriesInstanceUID", "")) if source_datasets else str(location.series_uid or "")
        uids = fresh_output_uids(provenance) if mode is OnExisting.KEEP_BOTH else output_uids(source_uid, provenance)
    client = PacsClient.for_location(location, settings)
    outcome = StoreOutcome()
    wanted = _wanted(uids, measurements)
    present: set[str] = set()
    if mode is not OnExisting.KEEP_BOTH:
        try:
            in_study = {s.series_uid for s in client.list_series(location.study_uid)}
        except PacsError as exc:
            raise PacsError(f"{location.url}: {' and '.join(kind for kind, _ in wanted)} not stored ({exc.reason})") from None
        present = {uid for _, uid in wanted if uid in in_study}
    if mode is OnExisting.SKIP:
        outcome.existing = [(kind, uid) for kind, uid in wanted if uid in present]
        if len(present) == len(wanted):
            return outcome
    with tempfile.TemporaryDirectory(prefix="medannot-seg-") as tmp:
        path = Path(tmp) / "seg.dcm"
        version = provenance.version or "unknown"
        write_dicom_seg(labels, list(source_datasets), label_map, provenance.name, version, path, uids=uids.seg)
        seg = pydicom.dcmread(path)
        made = [("DICOM SEG", seg)]
        if measurements:
            from medannot.annotations.dicom_sr import write_dicom_sr
            from medannot.annotations.measurements import lesion_labels, measure

            measured = measure(labels, label_map, lesion_labels(label_map, instance_maps), instance_maps)
            made.append(("DICOM SR", pydicom.dcmread(write_dicom_sr(seg, list(source_datasets), measured, provenance.name, version,
                                                                  Path(tmp) / "sr.dcm", uids=uids.sr, device_uid=uids.device))))
    if str(seg.StudyInstanceUID) != location.study_uid:
        raise PacsError(f"the DICOM SEG belongs to study {seg.StudyInstanceUID}, not to {location.study_uid}; not stored")
    outgoing = [(kind, ds) for kind, ds in made if not (mode is OnExisting.SKIP and str(ds.SeriesInstanceUID) in present)]
    if mode is OnExisting.REPLACE:
        for kind, ds in outgoing:
            uid = str(ds.SeriesInstanceUID)
            if uid in present:
                how = client.delete_series(location.study_uid, uid)
                outcome.replaced.append((kind, uid, how))
    what = " and ".join(kind for kind, _ in outgoing)
    try:
        stored = client.store([ds for _, ds in outgoing], location.study_uid)
    except PacsError as exc:
        lost = f" (the earlier {', '.join(k for k, _, _ in outcome.replaced)} was deleted: run again to store it)" if outcome.replaced else ""
        raise PacsError(f"{location.url}: {what} not stored ({exc.reason}){lost}") from None
    for kind, ds in outgoing:
        if str(ds.SOPInstanceUID) not in stored:
            raise PacsError(f"the PACS at {location.base_url} did not confirm storing the {kind} {ds.SOPInstanceUID}")
    outcome.stored = [str(ds.SOPInstanceUID) for _, ds in outgoing]
    return outcome
