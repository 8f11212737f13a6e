"""Our transcription of PS3.15 Table E.1-1: well formed, agrees with pydicom's dictionary and with a peer's transcription."""

from __future__ import annotations

import pytest
from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as peer_table
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from medannot.privacy.profile import Action, action_for_tag, basic_profile, resolve

# Rows we carry that dicom-anonymizer's 2026c transcription lacks: attributes listed in earlier
# editions of Table E.1-1, kept on purpose. Text Value (removed in those editions) gets a dummy
# instead: it lives in the Content Sequence, which is D now, and TEXT content items need a value.
OURS_ONLY = {
    "0008010D": "U",  # Context Group Extension Creator UID
    "00100033": "X",  # Patient's Birth Date in Alternative Calendar
    "00100034": "X",  # Patient's Death Date in Alternative Calendar
    "00100035": "X",  # Patient's Alternative Calendar
    "00321034": "X",  # Requesting Service Code Sequence
    "00380008": "X",  # Visit Status ID
    "00380016": "X",  # Route of Admissions
    "0040A160": "D",  # Text Value
    "00440102": "U",  # Assertion UID
    "20100150": "X",  # Configuration Information
    "20100152": "X",  # Configuration Information Description
}
_PEER_LISTS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def _peer_actions() -> dict[str, str]:
    actions = {}
    for name, action in _PEER_LISTS.items():
        for entry in getattr(peer_table, name):
            if len(entry) == 2:
                actions[f"{entry[0]:04X}{entry[1]:04X}"] = action
    return actions


def test_table_is_complete_and_well_formed():
    rows = basic_profile()
    assert len(rows) >= 650
    tags = [r.tag for r in rows]
    assert len(tags) == len(set(tags)) and tags == sorted(tags)
    assert {r.action for r in rows} == {Action(a) for a in ("D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")}
    for row in rows:
        if row.keyword:  # the tag we wrote is the one pydicom's dictionary gives the keyword
            assert tag_for_keyword(row.keyword) == int(row.tag, 16), row


def test_table_agrees_with_peer_transcription():
    """Every attribute of dicom-anonymizer's 2026c table is ours with the same action; our extras are named."""
    ours = {r.tag: str(r.action) for r in basic_profile() if "X" not in r.tag}
    peer = _peer_actions()
    assert len(peer) > 600
    disagreements = {tag: (ours.get(tag), action) for tag, action in peer.items() if ours.get(tag) != action}
    assert disagreements == {}
    assert {tag: ours[tag] for tag in set(ours) - set(peer)} == OURS_ONLY


@pytest.mark.parametrize(
    ("keyword", "action"),
    [
        ("PatientName", "Z"), ("PatientID", "Z/D"), ("PatientBirthDate", "Z"), ("AccessionNumber", "Z"),
        ("StudyInstanceUID", "U"), ("SOPInstanceUID", "U"), ("FrameOfReferenceUID", "U"), ("ReferencedSOPInstanceUID", "U"),
        ("InstitutionName", "X/Z/D"), ("ReferringPhysicianName", "Z"), ("StudyDate", "Z"), ("SeriesDescription", "X"),
        ("SourceImageSequence", "X/Z/U*"), ("ReferencedStudySequence", "X/Z"), ("ContentSequence", "D"),
        ("OperatorsName", "X/Z/D"), ("ProtocolName", "X/D"), ("DeviceSerialNumber", "X/Z/D"),
    ],
)
def test_well_known_rows(keyword, action):
    assert action_for_tag(tag_for_keyword(keyword)) == Action(action)


def test_unlisted_and_repeating_group_tags():
    assert action_for_tag(tag_for_keyword("Modality")) is None  # kept
    assert action_for_tag(tag_for_keyword("SOPClassUID")) is None
    assert action_for_tag(0x50001234) is Action.X  # curve data, any element
    assert action_for_tag(0x60023000) is Action.X  # overlay data of a second plane
    assert action_for_tag(0x60000010) is Action.X  # the whole overlay group goes
    assert action_for_tag(0x60013000) is None  # odd group: private, handled elsewhere
    assert keyword_for_tag(0x00100010) == "PatientName"


@pytest.mark.parametrize(
    ("action", "vr", "empty", "expected"),
    [
        ("X/Z", "LO", False, "Z"), ("X/Z", "SQ", True, "Z"), ("X/Z", "SQ", False, "U"),
        ("X/D", "DA", False, "D"), ("Z/D", "LO", False, "D"), ("Z/D", "LO", True, "Z"), ("X/Z/D", "PN", True, "Z"),
        ("X/Z/U*", "SQ", False, "U"), ("X/Z/U*", "UI", False, "U"), ("X/Z/U*", "LO", False, "Z"),
        ("X", "LO", False, "X"), ("D", "PN", True, "D"),
    ],
)
def test_resolve_combined_actions(action, vr, empty, expected):
    assert resolve(Action(action), vr=vr, empty=empty) is Action(expected)
