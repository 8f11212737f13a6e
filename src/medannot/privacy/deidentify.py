"""De-identify one DICOM dataset in memory with the PS3.15 Basic Application Level Confidentiality Profile.

Reusable anywhere a :class:`pydicom.Dataset` is at hand (files, folders, PACS ingest)::

    from medannot.privacy import DeidOptions, Deidentifier, UidMap

    with UidMap("project-map.sqlite") as uid_map:          # same file -> same UIDs in later batches
        deid = Deidentifier(DeidOptions(shift_dates=True), uid_map)
        clean = deid.deidentify(ds)                       # a new Dataset; ``ds`` is left untouched
        # raises BurnedInAnnotationError for images that may show text in their pixels

What it does, to every attribute wherever it appears (sequence items included, recursively):

- applies the Basic Profile action of Table E.1-1 (:mod:`medannot.privacy.profile`);
- removes every private attribute, unless an allow-list rule keeps it (Retain Safe Private);
- replaces every instance UID through the :class:`~medannot.privacy.uidmap.UidMap`, also the
  UIDs the table does not list (class, transfer syntax and coding-scheme UIDs, and
  well-known DICOM UIDs under ``1.2.840.10008``, are kept), so references keep resolving;
- sets Patient ID and Patient's Name to the patient's pseudonym from the map;
- with ``shift_dates``: every date (DA, DT) moves by the patient's stored shift, times are
  kept (Retain Longitudinal Temporal Information Modified Dates Option); birth date is emptied;
- with ``clean_descriptors``: free-text descriptions are kept and cleaned (names, IDs, dates
  and long digit runs removed) instead of removed (Clean Descriptors Option);
- records Patient Identity Removed = YES, De-identification Method and its code sequence
  (DCM 113100, plus 113107 / 113105 / 113111 for the options used) and Longitudinal Temporal
  Information Modified, and rebuilds the file meta information and the preamble.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import warnings
from dataclasses import dataclass, field

from pydicom.multival import MultiValue

from medannot.errors import ConfigError, InputError
from medannot.privacy.profile import CLEAN_DESCRIPTOR_KEYWORDS, Action, action_for_tag, resolve
from medannot.privacy.uidmap import UidMap

__all__ = [
    "BurnedInAnnotationError",
    "DeidOptions",
    "Deidentifier",
    "PrivateTagRule",
    "parse_private_tag",
    "burned_in_reason",
]

WELL_KNOWN_UID_ROOT = "1.2.840.10008."
DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, object] = {
    "AE": DUMMY_TEXT, "AS": "000Y", "CS": DUMMY_TEXT, "DA": "19000101", "DS": "0", "DT": "19000101000000",
    "IS": "0", "LO": DUMMY_TEXT, "LT": DUMMY_TEXT, "PN": DUMMY_TEXT, "SH": DUMMY_TEXT, "ST": DUMMY_TEXT,
    "TM": "000000", "UC": DUMMY_TEXT, "UR": "https://anonymized.invalid", "UT": DUMMY_TEXT,
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0, "AT": 0,
}
_BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
_KEPT_UID_KEYWORDS = {"CodingSchemeUID", "ContextUID", "MappingResourceUID", "PrivateInformationCreatorUID"}
_BIRTH_KEYWORDS = {"PatientBirthDate", "PatientBirthTime"}
# Removal (X) would break the IOD: the Patient Module requires these (Type 2C) for animals,
# so they are emptied instead (no information is left either way).
_EMPTIED_NOT_REMOVED = {"ResponsiblePerson", "ResponsibleOrganization"}
_IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "PatientAddress", "PatientBirthDate", "AccessionNumber", "StudyID", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "OperatorsName", "RequestingPhysician", "StationName", "DeviceSerialNumber", "IssuerOfPatientID",
    "MilitaryRank", "BranchOfService", "CurrentPatientLocation", "RequestingService", "NetworkID", "RequestedProcedureID",
)

# Images of these SOP classes carry text in their pixels so often that, without an explicit
# Burned In Annotation = NO, they are quarantined (see burned_in_reason).
SUSPECT_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound (retired)",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame (retired)",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.2.1": "Video Microscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic",
}
SUSPECT_MODALITIES = frozenset({"US", "OT", "XC", "ES"})


class BurnedInAnnotationError(InputError):
    """The image may show identifying text in its pixels; it must be reviewed, not passed through."""


@dataclass(frozen=True)
class PrivateTagRule:
    """A private attribute to keep (Retain Safe Private Option).

    Attributes:
        group: Odd group number.
        element: The full element number (``0x1092``) when ``creator`` is None: the rule then
            matches that exact tag. With ``creator``, only the low byte counts (``0x92``) and the
            rule matches that offset in whichever block the creator reserved.
        creator: The Private Creator string, or None.
    """

    group: int
    element: int
    creator: str | None = None

    def __str__(self) -> str:
        if self.creator is None:
            return f"{self.group:04X},{self.element:04X}"
        return f"{self.group:04X},xx{self.element & 0xFF:02X}@{self.creator}"


_RULE_RE = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4}|[xX]{2}[0-9A-Fa-f]{2})\)?(?:@(.+))?$")


def parse_private_tag(text: str) -> PrivateTagRule:
    """Parse ``"0019,1092"``, ``"(0019,1092)"``, ``"00191092"`` or ``"0019,xx92@SIEMENS CT VA0  COAD"``.

    Raises:
        ConfigError: If the text is not one of these forms or the group is not private (odd).
    """
    match = _RULE_RE.match(text.strip())
    if match is None:
        raise ConfigError(f"a private tag to keep is written GGGG,EEEE or GGGG,xxEE@CREATOR; got {text!r}")
    group = int(match.group(1), 16)
    if group % 2 == 0:
        raise ConfigError(f"{text!r} is not a private tag (its group is even); public attributes follow the profile")
    element_text, creator = match.group(2), match.group(3)
    if element_text[:2].lower() == "xx":
        if creator is None:
            raise ConfigError(f"{text!r}: an element written xxEE needs its private creator, e.g. {text}@CREATOR")
        return PrivateTagRule(group, int(element_text[2:], 16), creator)
    element = int(element_text, 16)
    if creator is not None:
        return PrivateTagRule(group, element & 0xFF, creator)
    return PrivateTagRule(group, element)


@dataclass(frozen=True)
class DeidOptions:
    """Options of the de-identification.

    Attributes:
        shift_dates: Keep dates, shifted by a per-patient number of days (1 to 3650 into the
            past, stored in the map) instead of removing them.
        clean_descriptors: Keep free-text descriptions and comments, cleaned, instead of removing them.
        keep_private: Private attributes to keep (everything else private is removed).
        assume_no_burned_in: Let images of suspect classes (secondary capture, ultrasound, video,
            photographs) through when they lack Burned In Annotation. Images with YES are
            quarantined regardless.
    """

    shift_dates: bool = False
    clean_descriptors: bool = False
    keep_private: tuple[PrivateTagRule, ...] = field(default_factory=tuple)
    assume_no_burned_in: bool = False


def burned_in_reason(ds, assume_no_burned_in: bool = False) -> str | None:
    """Why this image may carry identifying text or features in its pixels, or None.

    Rule: an image (it has Pixel Data) is suspect if Burned In Annotation is YES, if
    Recognizable Visual Features is YES, or if Burned In Annotation is absent or empty and the
    SOP class is one that usually has text in its pixels (secondary capture, ultrasound,
    video, VL photographic) or the modality is US, OT, XC or ES, unless ``assume_no_burned_in``.
    An explicit Burned In Annotation = NO is trusted.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return None
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "Burned In Annotation is YES: the pixels show text that may identify the patient"
    if str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper() == "YES":
        return "Recognizable Visual Features is YES: the pixels may show the patient's face or features"
    if flag or assume_no_burned_in:
        return None
    sop_class = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    what = SUSPECT_SOP_CLASSES.get(sop_class) or (f"modality {modality}" if modality in SUSPECT_MODALITIES else None)
    if what is None:
        return None
    return (
        f"no Burned In Annotation attribute and {what} images often have text burned into the pixels; "
        "check the pixels, then set it to NO or run with --assume-no-burned-in"
    )


def _is_empty(elem) -> bool:
    value = elem.value
    if value is None:
        return True
    if elem.VR == "SQ":
        return len(value) == 0
    if isinstance(value, bytes):
        return len(value.strip(b" \x00")) == 0
    if isinstance(value, str):
        return len(value.strip(" \x00")) == 0
    return False


def _values(value) -> list:
    if value is None:
        return []
    if not isinstance(value, (list, tuple, MultiValue)):
        return [value]
    return list(value)


_DT_REST = re.compile(r"^(\d{2}){0,3}(\.\d{1,6})?([+-]\d{4})?$")


def _shift_date_text(text: str, days: int) -> str | None:
    """``text`` (a DA, or a DT) moved by ``days``; None if it is not one full date (partial, range)."""
    text = str(text).strip()
    if len(text) < 8 or not text[:8].isdigit() or not _DT_REST.match(text[8:]):
        return None
    try:
        day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{day.year:04d}{day.month:02d}{day.day:02d}" + text[8:]


class Deidentifier:
    """Applies the Basic Profile and the chosen options to datasets, with one shared map.

    Args:
        options: What to retain or clean; defaults to the plain Basic Profile.
        uid_map: Where replacements live; defaults to an in-memory map with a random secret
            (consistent within this object only).
    """

    def __init__(self, options: DeidOptions | None = None, uid_map: UidMap | None = None) -> None:
        self.options = options or DeidOptions()
        self.uid_map = uid_map if uid_map is not None else UidMap()
        self._exact_private = {(r.group, r.element) for r in self.options.keep_private if r.creator is None}
        self._creator_private = {(r.group, r.creator.strip(), r.element) for r in self.options.keep_private if r.creator is not None}

    # ----- public API -------------------------------------------------------------------
    def burned_in_reason(self, ds) -> str | None:
        """Why ``ds`` must be quarantined (see :func:`burned_in_reason`), or None."""
        return burned_in_reason(ds, self.options.assume_no_burned_in)

    def deidentify(self, ds, *, allow_burned_in: bool = False, in_place: bool = False):
        """De-identify ``ds`` and return the result.

        Args:
            ds: A pydicom Dataset (with or without file meta information).
            allow_burned_in: De-identify the header even if the pixels may show identifying
                text (for writing to a quarantine); otherwise such images raise.
            in_place: Modify ``ds`` itself instead of a deep copy.

        Returns:
            The de-identified Dataset; pixel data is untouched.

        Raises:
            BurnedInAnnotationError: If the image may carry identifying pixels and
                ``allow_burned_in`` is False.
            InputError: If the dataset is nested too deeply to walk.
        """
        reason = self.burned_in_reason(ds)
        if reason is not None and not allow_burned_in:
            raise BurnedInAnnotationError(reason)
        out = ds if in_place else copy.deepcopy(ds)
        # pydicom converts raw elements lazily and warns about values the *source* wrote badly
        # (e.g. an LO longer than 64 characters); those are not ours to report here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            identifiers = self._identifying_words(out)
            patient = self.uid_map.patient(self._patient_key(out))
            try:
                self._walk(out, patient.date_shift_days, identifiers)
            except RecursionError:
                raise InputError("sequences are nested too deeply to de-identify") from None
        out.PatientID = patient.pseudonym
        out.PatientName = patient.pseudonym
        self._record_method(out)
        self._rebuild_file_meta(out)
        return out

    # ----- identity -----------------------------------------------------------------------
    @staticmethod
    def _patient_key(ds) -> str:
        patient_id = str(ds.get("PatientID", "") or "").strip()
        if patient_id:
            return f"id:{patient_id}|{str(ds.get('IssuerOfPatientID', '') or '').strip()}"
        name = str(ds.get("PatientName", "") or "").strip()
        if name:
            return f"name:{name}|{str(ds.get('PatientBirthDate', '') or '').strip()}"
        study = str(ds.get("StudyInstanceUID", "") or "").strip()
        return f"study:{study}" if study else "unknown"

    @staticmethod
    def _identifying_words(ds) -> set[str]:
        words: set[str] = set()
        for keyword in _IDENTIFYING_KEYWORDS:
            for value in _values(ds.get(keyword)):
                for part in re.split(r"[\^=\s,;/]+", str(value)):
                    part = part.strip(" .").upper()
                    if len(part) >= 2:
                        words.add(part)
        return words

    # ----- the walk -----------------------------------------------------------------------
    def _walk(self, ds, shift_days: int, identifiers: set[str]) -> None:
        for elem in list(ds):
            tag = elem.tag
            if tag.element == 0 and tag.group != 0x0002:
                del ds[tag]  # group lengths: deprecated, and wrong once elements are removed
                continue
            if tag.is_private:
                self._private(ds, elem, shift_days, identifiers)
                continue
            action = action_for_tag(int(tag))
            self._apply(ds, elem, action, shift_days, identifiers)
        self._drop_orphan_private_creators(ds)

    def _recurse(self, elem, shift_days: int, identifiers: set[str]) -> None:
        for item in elem.value or []:
            self._walk(item, shift_days, identifiers)

    def _apply(self, ds, elem, action: Action | None, shift_days: int, identifiers: set[str]) -> None:
        vr, keyword = elem.VR, elem.keyword
        options = self.options
        if options.shift_dates and vr in ("DA", "DT", "TM") and keyword not in _BIRTH_KEYWORDS:
            self._shift(elem, shift_days)
            return
        if action is None:  # not in the table: keep, but remap UIDs and walk sequences
            if vr == "SQ":
                self._recurse(elem, shift_days, identifiers)
            elif vr == "UI" and self._remappable(keyword):
                self._remap(elem)
            return
        if options.clean_descriptors and keyword in CLEAN_DESCRIPTOR_KEYWORDS and vr != "SQ":
            elem.value = self._clean_text(elem.value, identifiers) if vr in ("LO", "LT", "SH", "ST", "UT", "UC") else None
            return
        resolved = resolve(action, vr=vr, empty=_is_empty(elem))
        if resolved is Action.X and keyword in _EMPTIED_NOT_REMOVED:
            resolved = Action.Z
        if resolved is Action.X:
            del ds[elem.tag]
        elif resolved is Action.Z:
            elem.value = [] if vr == "SQ" else None
        elif resolved is Action.U:
            if vr == "SQ":
                self._recurse(elem, shift_days, identifiers)
            elif vr == "UI":
                self._remap(elem)
            else:
                elem.value = _DUMMY_BY_VR.get(vr, DUMMY_TEXT)
        elif resolved is Action.D:
            if vr == "SQ":
                self._recurse(elem, shift_days, identifiers)
                if "Identification" in keyword:
                    self._dummy_all_text(elem)
            elif vr == "UI":
                self._remap(elem)
            elif vr in _BINARY_VRS:
                elem.value = b"\x00\x00"
            else:
                elem.value = _DUMMY_BY_VR.get(vr, DUMMY_TEXT)
        elif resolved is Action.C:
            elem.value = self._clean_text(elem.value, identifiers)
        elif vr == "SQ":  # K
            self._recurse(elem, shift_days, identifiers)

    def _private(self, ds, elem, shift_days: int, identifiers: set[str]) -> None:
        tag = elem.tag
        if tag.is_private_creator:
            return  # decided once the block's elements are settled
        block = tag.element >> 8
        creator_elem = ds.get((tag.group, block))
        creator = str(creator_elem.value).strip() if creator_elem is not None and creator_elem.value else None
        keep = (tag.group, tag.element) in self._exact_private or (
            creator is not None and (tag.group, creator, tag.element & 0xFF) in self._creator_private
        )
        if not keep:
            del ds[tag]
        elif elem.VR == "SQ":
            self._recurse(elem, shift_days, identifiers)

    @staticmethod
    def _drop_orphan_private_creators(ds) -> None:
        creators = [e.tag for e in ds if e.tag.is_private_creator]
        for tag in creators:
            block = tag.element
            used = any(e.tag.is_private and e.tag.group == tag.group and (e.tag.element >> 8) == block for e in ds if not e.tag.is_private_creator)
            if not used:
                del ds[tag]

    # ----- values -------------------------------------------------------------------------
    @staticmethod
    def _remappable(keyword: str) -> bool:
        return not (keyword.endswith(("ClassUID", "SyntaxUID")) or keyword in _KEPT_UID_KEYWORDS)

    def _remap(self, elem) -> None:
        values = [str(v) for v in _values(elem.value)]
        mapped = [v if (not v.strip(" \x00") or v.startswith(WELL_KNOWN_UID_ROOT)) else self.uid_map.uid(v) for v in values]
        elem.value = mapped[0] if len(mapped) == 1 else mapped

    def _shift(self, elem, days: int) -> None:
        if elem.VR == "TM" or _is_empty(elem):
            return  # a shift by whole days leaves times as they are
        shifted = [_shift_date_text(v, days) for v in _values(elem.value)]
        if any(s is None for s in shifted):
            elem.value = None  # a partial or unreadable date cannot be shifted: remove its value
            return
        elem.value = shifted[0] if len(shifted) == 1 else shifted

    @staticmethod
    def _clean_text(value, identifiers: set[str]) -> str:
        text = " ".join(str(v) for v in _values(value))
        text = re.sub(r"\b\d{4}[-/.]?\d{2}[-/.]?\d{2}\b|\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b", " ", text)  # dates
        text = re.sub(r"\d{5,}", " ", text)  # long digit runs: record numbers, phone numbers
        kept = [w for w in re.split(r"(\s+)", text) if w.strip(" .,;:^()[]").upper() not in identifiers]
        text = "".join(kept)
        for word in sorted((w for w in identifiers if len(w) >= 4), key=len, reverse=True):  # also inside tokens
            text = re.sub(re.escape(word), " ", text, flags=re.IGNORECASE)
        text = re.sub(r"\^+", " ", text)  # person-name separators left behind
        return re.sub(r"\s+", " ", text).strip()

    def _dummy_all_text(self, elem) -> None:
        for item in elem.value or []:
            for sub in item:
                if sub.VR == "SQ":
                    self._dummy_all_text(sub)
                elif sub.VR in ("LO", "SH", "PN", "LT", "ST", "UT", "UC") and not _is_empty(sub):
                    sub.value = DUMMY_TEXT

    # ----- bookkeeping --------------------------------------------------------------------
    def _record_method(self, ds) -> None:
        from pydicom import Dataset, Sequence
        from pydicom.sr.codedict import codes

        from medannot import __version__

        used = [(codes.DCM.BasicApplicationConfidentialityProfile, f"medannot {__version__} PS3.15 E Basic Profile")]
        if self.options.shift_dates:
            used.append((codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption, "Retain Longitudinal Modified Dates"))
        if self.options.clean_descriptors:
            used.append((codes.DCM.CleanDescriptorsOption, "Clean Descriptors"))
        if self.options.keep_private:
            used.append((codes.DCM.RetainSafePrivateOption, "Retain Safe Private"))
        ds.PatientIdentityRemoved = "YES"
        previous = [str(v) for v in _values(ds.get("DeidentificationMethod")) if str(v).strip()]
        ds.DeidentificationMethod = previous + [text for _, text in used]
        items = list(ds.get("DeidentificationMethodCodeSequence", None) or [])
        for code, _ in used:
            item = Dataset()
            item.CodeValue = code.value
            item.CodingSchemeDesignator = code.scheme_designator
            item.CodeMeaning = code.meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if self.options.shift_dates else "REMOVED"

    @staticmethod
    def _rebuild_file_meta(ds) -> None:
        import pydicom
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

        old = getattr(ds, "file_meta", None)
        if old is None:
            return
        meta = FileMetaDataset()
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "TransferSyntaxUID" in old:
            meta.TransferSyntaxUID = old.TransferSyntaxUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
        ds.file_meta = meta
        if getattr(ds, "preamble", None) is not None:
            ds.preamble = b"\x00" * 128

