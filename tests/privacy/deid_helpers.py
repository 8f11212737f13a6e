"""Shared helpers of the de-identification tests: the real deid-data files and identifier scans."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import deid_data
import pydicom
from pydicom.multival import MultiValue

from medannot.privacy.profile import action_for_tag

DEID_DATA = Path(deid_data.__file__).parent / "data"
COOKIES = sorted((DEID_DATA / "dicom-cookies").glob("*.dcm"))
CT_BRAINS = sorted((DEID_DATA / "humans").glob("ctbrain*.dcm"))
CAT = DEID_DATA / "animals" / "cat.dcm"
US_BURNED_IN = DEID_DATA / "ultrasounds" / "GREYSCALE_IMAGE.dcm"

# Attributes whose values identify a person, place or record (beyond every PN, date and UID).
IDENTIFYING_KEYWORDS = {
    "PatientID", "OtherPatientIDs", "PatientAddress", "AccessionNumber", "StudyID", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "IssuerOfPatientID",
    "NetworkID", "RequestedProcedureID", "CurrentPatientLocation",
    "MilitaryRank", "BranchOfService", "PerformedStationAETitle", "ScheduledStationAETitle", "RequestingService",
}
_UID_IN_TEXT = re.compile(r"\b[0-9]+(\.[0-9]+){2,}\b|(?<=UID )[0-9.]+")
_TEXT_VRS = {"AE", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT", "AS"}


def _values(value) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple, MultiValue)):
        return [str(value)]
    return [str(v) for v in value]


def walk(ds):
    """Every data element of ``ds``, sequence items included, depth first.

    pydicom's warnings about values the source file wrote badly (e.g. an over-long LO in
    the deid-data ultrasound) are silenced: they concern the data, not the code under test.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        elements = list(ds)
    for elem in elements:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value or []:
                yield from walk(item)


def identifying_values(ds) -> set[str]:
    """The identifying values of an original dataset, as strings of at least 4 characters.

    Every person name (and its components), every date of an attribute the profile acts on,
    the values of ``IDENTIFYING_KEYWORDS``, and every instance UID (not class, syntax or
    well-known DICOM UIDs), wherever they appear, private attributes included.
    """
    found: set[str] = set()
    for elem in walk(ds):
        if elem.VR not in _TEXT_VRS:
            continue
        values = [v.strip(" \x00") for v in _values(elem.value)]
        if elem.VR == "PN":
            for v in values:
                found.add(v)
                found.update(part for part in v.replace("=", "^").split("^"))
        elif elem.VR in ("DA", "DT") and not elem.tag.is_private and action_for_tag(int(elem.tag)) is not None:
            found.update(values)
        elif elem.VR == "UI":
            keyword = elem.keyword or ""
            if not keyword.endswith(("ClassUID", "SyntaxUID")) and keyword != "CodingSchemeUID":
                found.update(v for v in values if not v.startswith("1.2.840.10008."))
        elif elem.keyword in IDENTIFYING_KEYWORDS:
            found.update(values)
    return {v for v in found if len(v.strip()) >= 4}


def all_text(ds) -> list[str]:
    """Every value of ``ds`` (file meta included, sequences walked) as text."""
    texts = []
    meta = getattr(ds, "file_meta", None)
    for source in ([meta] if meta is not None else []) + [ds]:
        for elem in walk(source):
            if elem.VR != "SQ" and elem.tag != 0x7FE00010:
                texts.extend(_values(elem.value))
    return texts


def leaks(identifiers: set[str], path: Path) -> list[str]:
    """The identifiers found anywhere in the file at ``path``: in any element value or in its raw bytes."""
    ds = pydicom.dcmread(path)
    texts = all_text(ds)
    # Our own new UIDs are long random digit strings: a short numeric ID (e.g. "16550") can occur
    # inside one by chance, which is no leak, so they are blanked before the search.
    generated = {t for t in texts if re.fullmatch(r"2\.25\.[0-9]+", t)}
    text = "\n".join(t for t in texts if t not in generated).upper()
    raw = path.read_bytes().upper()
    for uid in generated:
        raw = raw.replace(uid.encode("ascii"), b"")
    return sorted(v for v in identifiers if v.upper() in text or v.upper().encode("latin-1", "replace") in raw)


def dciodvfy_errors(path: Path) -> set[str]:
    """The distinct error lines dciodvfy (Debian dicom3tools) reports for ``path``.

    Fails (not skips) when dciodvfy is missing: scripts/system_deps.txt lists dicom3tools.
    """
    exe = shutil.which("dciodvfy")
    assert exe is not None, "dciodvfy not found: install the Debian package dicom3tools (scripts/system_deps.txt)"
    proc = subprocess.run([exe, str(path)], capture_output=True, timeout=120)
    lines = (proc.stdout + proc.stderr).decode("latin-1").splitlines()
    # values quoted in a message (<...>) and UIDs differ by design after de-identification
    return {_UID_IN_TEXT.sub("<UID>", re.sub(r"<[^>]*>", "<>", line.strip())) for line in lines if "Error" in line}


def copy_inputs(paths: list[Path], folder: Path) -> Path:
    """Copy ``paths`` into ``folder`` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copy(p, folder / p.name)
    return folder
