"""DICOM de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile.

- :class:`Deidentifier` (``Deidentifier(options, uid_map).deidentify(ds) -> Dataset``) works on
  in-memory pydicom datasets, so files, folders and PACS ingest share one implementation;
- :class:`UidMap` keeps UID replacements, patient pseudonyms and date shifts in SQLite;
- :mod:`medannot.privacy.profile` holds Table E.1-1 as data;
- :func:`medannot.privacy.batch.deidentify_tree` de-identifies a file or folder tree (``medannot deid``).
"""

from medannot.privacy.deidentify import (
    BurnedInAnnotationError,
    Deidentifier,
    DeidOptions,
    PrivateTagRule,
    burned_in_reason,
    parse_private_tag,
)
from medannot.privacy.uidmap import UidMap

__all__ = [
    "BurnedInAnnotationError",
    "DeidOptions",
    "Deidentifier",
    "PrivateTagRule",
    "UidMap",
    "burned_in_reason",
    "parse_private_tag",
]
