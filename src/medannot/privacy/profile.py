"""The DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile as data.

``basic_profile.csv`` (shipped next to this module) is our transcription of Table E.1-1 of
DICOM PS3.15 (2026 edition): one row per attribute with its tag, keyword, name and the action
of the *Basic Profile* column. The tags of the attributes are written as 8 hex digits; three
rows are repeating groups written with ``X`` wildcards (``50XXXXXX`` curves, ``60XX3000``
overlay data, ``60XX4000`` overlay comments).

Action codes (PS3.15 Table E.1-1 legend):

- ``D``: replace with a non-zero length dummy value consistent with the VR
- ``Z``: replace with a zero length value, or a non-zero length dummy value
- ``X``: remove
- ``K``: keep (not in the table: attributes not listed are kept, except private ones)
- ``C``: clean (keep, removing identifying text; used by the Clean Descriptors Option)
- ``U``: replace the UID with a non-zero length UID, consistently within the set of instances
- ``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``: the first action unless the IOD requires the later
  one; ``X/Z/U*``: remove, unless a zero length value or, for sequences, replacement of
  the instance UIDs inside is required.

How medannot resolves the combined actions without an IOD table is in :func:`resolve`.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

__all__ = [
    "Action",
    "ProfileRow",
    "CLEAN_DESCRIPTOR_KEYWORDS",
    "basic_profile",
    "action_for_tag",
    "resolve",
]


class Action(StrEnum):
    """The action codes of PS3.15 Table E.1-1 (Basic Profile column)."""

    D = "D"
    Z = "Z"
    X = "X"
    K = "K"
    C = "C"
    U = "U"
    Z_D = "Z/D"
    X_Z = "X/Z"
    X_D = "X/D"
    X_Z_D = "X/Z/D"
    X_Z_U = "X/Z/U*"


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1.

    Attributes:
        tag: The tag as 8 hex digits (``"00100010"``), or a repeating-group pattern with
            ``X`` wildcards (``"60XX3000"``).
        keyword: pydicom's keyword for the attribute ("" when pydicom's dictionary lacks it).
        name: The attribute name as written in the standard.
        action: The Basic Profile action.
    """

    tag: str
    keyword: str
    name: str
    action: Action

    def matches(self, tag: int) -> bool:
        """True if the integer ``tag`` is this row's tag (wildcards match any hex digit)."""
        text = f"{tag:08X}"
        return all(p == "X" or p == t for p, t in zip(self.tag, text))


# Attributes whose Basic Profile action is removal but which the Clean Descriptors Option
# keeps and cleans ("C" in that option's column of Table E.1-1): free-text descriptions
# and comments that often carry names, IDs or dates typed by a person.
CLEAN_DESCRIPTOR_KEYWORDS: frozenset[str] = frozenset(
    {
        "AcquisitionComments",
        "AcquisitionDeviceProcessingDescription",
        "AcquisitionProtocolDescription",
        "AdditionalPatientHistory",
        "AdmittingDiagnosesDescription",
        "BeamDescription",
        "BolusDescription",
        "CommentsOnRadiationDose",
        "CommentsOnThePerformedProcedureStep",
        "CompensatorDescription",
        "ContrastBolusAgent",
        "DerivationDescription",
        "DischargeDiagnosisDescription",
        "DoseReferenceDescription",
        "FrameComments",
        "IdentifyingComments",
        "ImageComments",
        "ImagePresentationComments",
        "ImagingServiceRequestComments",
        "Impressions",
        "InterpretationDiagnosisDescription",
        "InterpretationText",
        "MedicalAlerts",
        "PatientComments",
        "PerformedProcedureStepDescription",
        "ProtocolName",
        "ReasonForStudy",
        "ReasonForTheRequestedProcedure",
        "ReasonForVisit",
        "RequestedContrastAgent",
        "RequestedProcedureComments",
        "RequestedProcedureDescription",
        "ResultsComments",
        "ROIDescription",
        "ROIGenerationDescription",
        "ROIObservationDescription",
        "RTPlanDescription",
        "ScheduledProcedureStepDescription",
        "SeriesDescription",
        "ServiceEpisodeDescription",
        "StructureSetDescription",
        "StudyComments",
        "StudyDescription",
        "TextComments",
        "VisitComments",
    }
)


@functools.lru_cache(maxsize=1)
def basic_profile() -> tuple[ProfileRow, ...]:
    """All rows of our transcription of Table E.1-1, in tag order (loaded once)."""
    text = resources.files("medannot.privacy").joinpath("basic_profile.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return tuple(ProfileRow(r["tag"], r["keyword"], r["name"], Action(r["action"])) for r in rows)


@functools.lru_cache(maxsize=1)
def _exact_actions() -> dict[int, Action]:
    return {int(r.tag, 16): r.action for r in basic_profile() if "X" not in r.tag}


def action_for_tag(tag: int) -> Action | None:
    """The Basic Profile action for ``tag``, or None when the table does not list it (keep).

    Repeating groups: every element of the curve groups (50xx) is removed, and so is every
    element of the overlay groups (60xx), not only Overlay Data and Overlay Comments, because an
    overlay plane without its data is invalid and overlays often hold burned-in text.
    """
    exact = _exact_actions().get(tag)
    if exact is not None:
        return exact
    group = tag >> 16
    if 0x5000 <= group <= 0x50FF and group % 2 == 0:
        return Action.X
    if 0x6000 <= group <= 0x60FF and group % 2 == 0:
        return Action.X
    return None


def resolve(action: Action, *, vr: str, empty: bool) -> Action:
    """Turn a combined action into the single action medannot applies.

    medannot does not carry the IOD tables, so it picks the choice that keeps any IOD valid
    while removing the identifying value:

    - ``X/Z`` becomes ``Z`` (present and empty is valid for Type 2 and Type 3 attributes), except
      for a sequence with items: an empty Type 3 sequence is invalid, so its items are kept and
      de-identified like ``U`` (every attribute inside follows the table, UIDs are remapped);
    - ``X/D``, ``Z/D`` and ``X/Z/D`` become ``D`` (a dummy keeps Type 1 attributes valid),
      or ``Z`` when the original value is already empty;
    - ``X/Z/U*`` becomes ``U`` for sequences (their instance UIDs are remapped, so references
      still resolve) and for UIDs, else ``Z``.

    Single actions are returned unchanged.

    Args:
        action: The table's action.
        vr: The element's value representation.
        empty: Whether the original value is empty.
    """
    if action in (Action.X_D, Action.Z_D, Action.X_Z_D):
        return Action.Z if empty else Action.D
    if action is Action.X_Z:
        return Action.U if vr == "SQ" and not empty else Action.Z
    if action is Action.X_Z_U:
        return Action.U if vr in ("SQ", "UI") else Action.Z
    return action
