"""Coded concepts (SNOMED CT) for label names, as DICOM SEG segment descriptions need them.

DICOM SEG describes each segment by a *property category* (CID 7150: tissue, anatomical structure,
morphologically abnormal structure, ...) and a *property type* (CID 7151 and friends: liver,
grey matter, neoplasm, ...). Label names of a bundle are free text, so they are matched here
against a short table of common structures, case- and spelling-insensitively ("grey matter" ==
"Gray_Matter", "tumour" == "tumor"). Unknown names get the generic Tissue / Tissue pair
(SCT 85756007), which viewers accept and display by the segment label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SegmentCodes", "codes_for_label"]


@dataclass(frozen=True)
class SegmentCodes:
    """(value, scheme, meaning) of the property category and type of one segment.

    Attributes:
        category: CID 7150 concept, e.g. ``("85756007", "SCT", "Tissue")``.
        type: Concept of the structure itself, e.g. ``("10200004", "SCT", "Liver")``.
        known: False when the name matched nothing and the generic Tissue pair was used.
    """

    category: tuple[str, str, str]
    type: tuple[str, str, str]
    known: bool = True

    @property
    def rt_interpreted_type(self) -> str:
        """RTROIInterpretedType for RTSTRUCT: ORGAN for anatomy, empty (unknown) otherwise."""
        return "ORGAN" if self.category[0] == _ANATOMY[0] and self.known else ""


_TISSUE = ("85756007", "SCT", "Tissue")
_ANATOMY = ("91723000", "SCT", "Anatomical Structure")
_ABNORMAL = ("49755003", "SCT", "Morphologically Altered Structure")
_SUBSTANCE = ("91720002", "SCT", "Body Substance")

# normalised name -> (category, (code, scheme, meaning) of the type)
_TABLE: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "tissue": (_TISSUE, _TISSUE),
    "graymatter": (_TISSUE, ("389081007", "SCT", "Gray matter")),
    "whitematter": (_TISSUE, ("389080008", "SCT", "White matter")),
    "bone": (_TISSUE, ("272673000", "SCT", "Bone")),
    "muscle": (_TISSUE, ("71616004", "SCT", "Muscle")),
    "fat": (_TISSUE, ("256674009", "SCT", "Fat")),
    "csf": (_SUBSTANCE, ("65216001", "SCT", "Cerebrospinal fluid")),
    "cerebrospinalfluid": (_SUBSTANCE, ("65216001", "SCT", "Cerebrospinal fluid")),
    "liver": (_ANATOMY, ("10200004", "SCT", "Liver")),
    "kidney": (_ANATOMY, ("64033007", "SCT", "Kidney")),
    "spleen": (_ANATOMY, ("78961009", "SCT", "Spleen")),
    "lung": (_ANATOMY, ("39607008", "SCT", "Lung")),
    "heart": (_ANATOMY, ("80891009", "SCT", "Heart")),
    "pancreas": (_ANATOMY, ("15776009", "SCT", "Pancreas")),
    "brain": (_ANATOMY, ("12738006", "SCT", "Brain")),
    "prostate": (_ANATOMY, ("41216001", "SCT", "Prostate")),
    "bladder": (_ANATOMY, ("89837001", "SCT", "Bladder")),
    "stomach": (_ANATOMY, ("69695003", "SCT", "Stomach")),
    "aorta": (_ANATOMY, ("15825003", "SCT", "Aorta")),
    "thyroid": (_ANATOMY, ("69748006", "SCT", "Thyroid")),
    "gallbladder": (_ANATOMY, ("28231008", "SCT", "Gallbladder")),
    "esophagus": (_ANATOMY, ("32849002", "SCT", "Esophagus")),
    "colon": (_ANATOMY, ("71854001", "SCT", "Colon")),
    "breast": (_ANATOMY, ("76752008", "SCT", "Breast")),
    "hippocampus": (_ANATOMY, ("5366008", "SCT", "Hippocampus")),
    "lateralventricle": (_ANATOMY, ("66720007", "SCT", "Lateral Ventricle")),
    "skull": (_ANATOMY, ("89546000", "SCT", "Skull")),
    "vertebra": (_ANATOMY, ("51282000", "SCT", "Vertebra")),
    "nucleus": (_ANATOMY, ("84640000", "SCT", "Nucleus")),
    "nuclei": (_ANATOMY, ("84640000", "SCT", "Nucleus")),
    "cell": (_ANATOMY, ("4421005", "SCT", "Cell")),
    "tumor": (_ABNORMAL, ("108369006", "SCT", "Neoplasm")),
    "neoplasm": (_ABNORMAL, ("108369006", "SCT", "Neoplasm")),
    "mass": (_ABNORMAL, ("4147007", "SCT", "Mass")),
    "lesion": (_ABNORMAL, ("52988006", "SCT", "Lesion")),
    "nodule": (_ABNORMAL, ("27925004", "SCT", "Nodule")),
    "cyst": (_ABNORMAL, ("367643001", "SCT", "Cyst")),
    "edema": (_ABNORMAL, ("79654002", "SCT", "Edema")),
    "necrosis": (_ABNORMAL, ("6574001", "SCT", "Necrosis")),
    "hemorrhage": (_ABNORMAL, ("50960005", "SCT", "Hemorrhage")),
}

_SPELLINGS = (("grey", "gray"), ("tumour", "tumor"), ("oedema", "edema"), ("haemorrhage", "hemorrhage"),
              ("oesophagus", "esophagus"), ("kidneys", "kidney"), ("lungs", "lung"))  # fmt: skip


def _normalise(name: str) -> str:
    text = name.lower()
    for british, american in _SPELLINGS:
        text = text.replace(british, american)
    return re.sub(r"[^a-z]", "", text)


def codes_for_label(name: str) -> SegmentCodes:
    """Category and type codes for a label name; generic Tissue / Tissue when the name is unknown.

    Matching ignores case, spaces, digits and punctuation, and British spellings; a name that
    *contains* a known word after a side prefix (``left kidney``, ``liver_tumour``) takes the
    longest known word it ends with.

    Args:
        name: Free-text label name, e.g. ``"grey matter"``.

    Returns:
        The codes (``known`` False for the generic fallback).
    """
    key = _normalise(name)
    if key in _TABLE:
        category, type_ = _TABLE[key]
        return SegmentCodes(category, type_)
    for word in sorted(_TABLE, key=len, reverse=True):
        if key.endswith(word):
            category, type_ = _TABLE[word]
            return SegmentCodes(category, type_)
    return SegmentCodes(_TISSUE, _TISSUE, known=False)
