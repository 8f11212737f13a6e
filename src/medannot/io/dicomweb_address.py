"""DICOMweb addresses: ``dicomweb+http(s)://HOST/ROOT/studies/UID[/series/UID]`` and ``--pacs URL --study UID``.

UIDs are checked to be DICOM UIDs (digits and dots) before use; credentials (``USER:PASSWORD@HOST``) are kept out
of everything printed. Used by :mod:`medannot.io.dicomweb` (which re-exports these names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from medannot.errors import InputError

__all__ = ["SCHEMES", "DicomWebLocation", "check_uid", "is_dicomweb_url", "pacs_location", "parse_dicomweb_url", "split_base"]

SCHEMES = ("dicomweb+http", "dicomweb+https")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_STUDY_PATH = re.compile(r"^(?P<root>.*?)/studies/(?P<study>[^/]+)(?:/series/(?P<series>[^/]+))?/?$")


def check_uid(uid: str, what: str) -> str:
    """``uid`` stripped, checked to be a DICOM UID (digits separated by dots, at most 64 characters).

    Raises:
        InputError: Not a DICOM UID (``what`` names it).
    """
    uid = uid.strip()
    if len(uid) > 64 or not _UID.match(uid):
        raise InputError(f"{what} {uid[:80]!r} is not a DICOM UID (digits separated by dots, at most 64 characters)")
    return uid


def is_dicomweb_url(text: str | Path) -> bool:
    """True for ``dicomweb+http://...`` and ``dicomweb+https://...`` addresses (a Path never is one)."""
    return isinstance(text, str) and text.strip().lower().startswith(tuple(f"{s}://" for s in SCHEMES))


@dataclass(frozen=True)
class DicomWebLocation:
    """A study (or one series of it) on a DICOMweb server.

    Attributes:
        base_url: DICOMweb root without credentials or trailing slash, e.g. ``http://127.0.0.1:8042/dicom-web``.
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID when one series was named, else None (every image series of the study).
        username: HTTP basic-auth user, if the address had one.
        password: Its password (never shown).
    """

    base_url: str
    study_uid: str
    series_uid: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The ``dicomweb+http(s)://`` address without credentials (safe to print)."""
        tail = f"/studies/{self.study_uid}" + (f"/series/{self.series_uid}" if self.series_uid else "")
        return f"dicomweb+{self.base_url}{tail}"

    def url_with_credentials(self) -> str:
        """The address including ``USER:PASSWORD@`` when there are credentials (never print it)."""
        if self.username is None:
            return self.url
        scheme, rest = self.url.split("://", 1)
        userinfo = quote(self.username, safe="") + (":" + quote(self.password, safe="") if self.password is not None else "")
        return f"{scheme}://{userinfo}@{rest}"


def split_base(url: str, what: str) -> tuple[str, str | None, str | None, str]:
    """(scheme://host[:port], user, password, path) of an http(s) address; credentials removed."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise InputError(f"{what} must start with http:// or https:// (or dicomweb+http://), got {url[:80]!r}")
    if not parts.hostname:
        raise InputError(f"{what} has no host name: {url[:80]!r}")
    if parts.query or parts.fragment:
        raise InputError(f"{what} must not have a query or fragment ('?'/'#'): {url[:80]!r}")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"{what} has an invalid port: {url[:80]!r}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return origin, user, password, parts.path


def parse_dicomweb_url(url: str) -> DicomWebLocation:
    """Parse ``dicomweb+http(s)://[USER:PASSWORD@]HOST[:PORT]/ROOT/studies/UID[/series/UID]``.

    Args:
        url: The address; ROOT is the server's DICOMweb root (``dicom-web`` for Orthanc), possibly empty.

    Returns:
        The location; ``base_url`` is ``http(s)://HOST[:PORT]/ROOT``.

    Raises:
        InputError: Not a ``dicomweb+`` address, no ``/studies/UID`` part, or UIDs that are not DICOM UIDs.
    """
    text = url.strip()
    if not is_dicomweb_url(text):
        raise InputError(f"expected a dicomweb+http:// or dicomweb+https:// address, got {text[:80]!r}")
    origin, user, password, path = split_base(text.split("+", 1)[1], "the DICOMweb address")
    match = _STUDY_PATH.match(path)
    if match is None:
        raise InputError(
            f"the DICOMweb address must end in /studies/STUDY_UID or /studies/STUDY_UID/series/SERIES_UID, got path {path!r}"
        )
    study = check_uid(unquote(match["study"]), "StudyInstanceUID")
    series = check_uid(unquote(match["series"]), "SeriesInstanceUID") if match["series"] else None
    return DicomWebLocation(origin + match["root"].rstrip("/"), study, series, user, password)


def pacs_location(pacs_url: str, study_uid: str, series_uid: str | None = None) -> DicomWebLocation:
    """The location given as ``--pacs URL --study UID``.

    Args:
        pacs_url: DICOMweb root, ``http(s)://HOST:PORT/dicom-web`` (a ``dicomweb+`` prefix is accepted).
        study_uid: StudyInstanceUID.
        series_uid: Optional SeriesInstanceUID.

    Raises:
        InputError: Malformed address or UIDs.
    """
    text = pacs_url.strip()
    if is_dicomweb_url(text):
        text = text.split("+", 1)[1]
    origin, user, password, path = split_base(text, "--pacs")
    if "/studies" in path:
        raise InputError(f"--pacs is the DICOMweb root (e.g. http://HOST:PORT/dicom-web); give the study with --study, got {pacs_url[:80]!r}")
    study = check_uid(study_uid, "StudyInstanceUID")
    series = check_uid(series_uid, "SeriesInstanceUID") if series_uid else None
    return DicomWebLocation(origin + path.rstrip("/"), study, series, user, password)
