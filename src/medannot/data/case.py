"""Case: the named images of one subject or study, with identifiers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medannot.data.image import Image
from medannot.errors import InputError


@dataclass
class Case:
    """Named images of one case (e.g. ``{"image": ct, "label": truth}``).

    Args:
        name: Case name; output folders are named after it. Must be a plain file name.
        images: Images by role name. The main input is conventionally ``"image"``.
        identifiers: Identifiers such as patient ID or Study/Series Instance UID.
        meta: Notes for people (dataset split, channel names, ...); code reads the typed fields, never these keys.
        files: Where the main image came from: its files, a series folder's slices, or a PACS address.
        dicom_headers: The DICOM headers of the main image's instances (pixel data dropped), in slice order; empty
            for other formats. Plain pydicom datasets (no open files or connections).
    """

    name: str
    images: dict[str, Image] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    dicom_headers: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name or self.name in {".", ".."}:
            raise InputError(f"case name {self.name!r} is not a plain file name")

    @property
    def image(self) -> Image:
        """The main input image (role ``"image"``)."""
        return self["image"]

    def __getitem__(self, role: str) -> Image:
        try:
            return self.images[role]
        except KeyError:
            have = ", ".join(sorted(self.images)) or "none"
            raise InputError(f"case {self.name!r} has no image {role!r} (has: {have})") from None

    def __contains__(self, role: str) -> bool:
        return role in self.images
