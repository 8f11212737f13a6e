"""The de-identification map: original UID -> new UID, patient -> pseudonym and date shift.

Kept in SQLite (stdlib ``sqlite3``, WAL journal) so that a later batch, or the PACS ingest of
another series of the same study, maps the same UIDs to the same replacements and shifts the
same patient's dates by the same number of days.

Replacements are derived from a project secret with HMAC-SHA256, so two maps holding the
same secret agree even before they share rows; the rows are still stored, which lets an
authorised person look an original up (the database is therefore as sensitive as the
originals: keep it out of the de-identified output). The secret is stored in the database the
first time it is opened; giving a different secret later is refused.

New UIDs are ``2.25.<128-bit integer>`` (ITU-T X.667 / PS3.5 B.2: a UUID written as an
integer; the 128 bits come from the HMAC with the UUID version and variant bits set) or, with
a custom ``uid_root``, ``<root>.<integer>`` cut to the 64-character limit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import uuid
from pathlib import Path

from medannot.errors import ConfigError, OutputError

__all__ = ["UidMap", "PatientEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uid (original TEXT PRIMARY KEY, replacement TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS patient (
    original_key TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL UNIQUE,
    date_shift_days INTEGER NOT NULL
);
"""

MAX_SHIFT_DAYS = 3650


class PatientEntry:
    """A patient's pseudonym and date shift (days; negative moves dates into the past)."""

    __slots__ = ("pseudonym", "date_shift_days")

    def __init__(self, pseudonym: str, date_shift_days: int) -> None:
        self.pseudonym = pseudonym
        self.date_shift_days = date_shift_days

    def __repr__(self) -> str:
        return f"PatientEntry({self.pseudonym!r}, {self.date_shift_days})"


class UidMap:
    """Persistent, consistent replacement of UIDs and patient identities.

    Args:
        path: SQLite file; created if missing. None keeps the map in memory (replacements are
            then consistent within this object, and across objects only if they share a secret).
        secret: Project secret for the HMAC. None: the one stored in ``path``, or a new random
            one (stored when ``path`` is given).
        uid_root: Root of the new UIDs (digits and dots), ``"2.25"`` by default.

    Raises:
        ConfigError: If ``secret`` differs from the one stored in ``path``, or ``uid_root`` is
            not a valid UID root.
        OutputError: If the database cannot be opened or written.
    """

    def __init__(self, path: str | Path | None = None, secret: str | None = None, uid_root: str = "2.25") -> None:
        root = uid_root.rstrip(".")
        if not root or any(not part.isdigit() or (len(part) > 1 and part[0] == "0") for part in root.split(".")) or len(root) > 40:
            raise ConfigError(f"uid_root must be digits separated by dots, without leading zeros, at most 40 characters; got {uid_root!r}")
        self.path = None if path is None else Path(path)
        self.uid_root = root
        self._lock = threading.Lock()
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path), timeout=30.0, check_same_thread=False)
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open the de-identification map ({exc})", self.path) from exc
        self._secret = self._settle_secret(secret)

    def _settle_secret(self, secret: str | None) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        stored_root = self._db.execute("SELECT value FROM meta WHERE key = 'uid_root'").fetchone()
        if stored_root is not None and stored_root[0] != self.uid_root:
            raise ConfigError(f"this map was made with UID root {stored_root[0]!r}, not {self.uid_root!r}; use the same root", self.path)
        if row is not None:
            if secret is not None and secret != row[0]:
                raise ConfigError("the secret differs from the one this map was made with; use the same secret or a new map", self.path)
            return row[0].encode()
        value = secret if secret is not None else secrets.token_hex(32)
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (value,))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('uid_root', ?)", (self.uid_root,))
        # Another process may have won the race: use whatever is stored now.
        return self._db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()[0].encode()

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    def _new_uid(self, original: str) -> str:
        number = uuid.UUID(bytes=self._digest("uid", original)[:16], version=4).int
        if self.uid_root == "2.25":
            return f"2.25.{number}"
        room = 64 - len(self.uid_root) - 1
        return f"{self.uid_root}.{str(number)[:room].lstrip('0') or '1'}"

    def uid(self, original: str) -> str:
        """The replacement of ``original`` (created and stored on first use).

        Args:
            original: A UID from the source data (surrounding spaces and NULs are ignored).

        Returns:
            The replacement UID, the same for the same original in every batch using this map.
        """
        original = original.strip(" \x00")
        with self._lock:
            row = self._db.execute("SELECT replacement FROM uid WHERE original = ?", (original,)).fetchone()
            if row is not None:
                return row[0]
            replacement = self._new_uid(original)
            try:
                with self._db:
                    self._db.execute("INSERT OR IGNORE INTO uid VALUES (?, ?)", (original, replacement))
            except sqlite3.Error as exc:
                raise OutputError(f"cannot write the de-identification map ({exc})", self.path) from exc
            return self._db.execute("SELECT replacement FROM uid WHERE original = ?", (original,)).fetchone()[0]

    def patient(self, key: str) -> PatientEntry:
        """The pseudonym and date shift of the patient identified by ``key`` (stored on first use).

        Args:
            key: A stable identity of the patient in the source data (e.g. Patient ID and issuer).

        Returns:
            Pseudonym ``ANON<12 hex digits>`` and a shift of 1 to 3650 days into the past.
        """
        with self._lock:
            row = self._db.execute("SELECT pseudonym, date_shift_days FROM patient WHERE original_key = ?", (key,)).fetchone()
            if row is None:
                digest = self._digest("patient", key)
                pseudonym = "ANON" + digest[:6].hex().upper()
                shift = -(int.from_bytes(digest[6:10], "big") % MAX_SHIFT_DAYS + 1)
                try:
                    with self._db:
                        self._db.execute("INSERT OR IGNORE INTO patient VALUES (?, ?, ?)", (key, pseudonym, shift))
                except sqlite3.Error as exc:
                    raise OutputError(f"cannot write the de-identification map ({exc})", self.path) from exc
                row = self._db.execute("SELECT pseudonym, date_shift_days FROM patient WHERE original_key = ?", (key,)).fetchone()
            return PatientEntry(row[0], int(row[1]))

    def original_uid(self, replacement: str) -> str | None:
        """Reverse look-up for authorised re-identification: the original of ``replacement``, or None."""
        with self._lock:
            row = self._db.execute("SELECT original FROM uid WHERE replacement = ?", (replacement,)).fetchone()
        return None if row is None else row[0]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM uid").fetchone()[0])

    def close(self) -> None:
        """Close the database (the map can no longer be used)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> UidMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
