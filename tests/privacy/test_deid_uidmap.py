"""The SQLite map: persistent, consistent, valid UIDs, guarded secret."""

from __future__ import annotations

import re
import sqlite3

import pytest

from medannot.errors import ConfigError
from medannot.privacy import UidMap

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def test_uids_are_valid_consistent_and_persisted(tmp_path):
    path = tmp_path / "map.sqlite"
    with UidMap(path) as first:
        a, b = first.uid("1.2.3.4"), first.uid("1.2.3.5")
        assert a == first.uid("1.2.3.4 ") and a != b
        assert a.startswith("2.25.") and len(a) <= 64 and UID_RE.match(a)
        patient = first.patient("id:123|")
    with UidMap(path) as second:  # a later batch
        assert second.uid("1.2.3.4") == a and second.original_uid(a) == "1.2.3.4"
        again = second.patient("id:123|")
        assert (again.pseudonym, again.date_shift_days) == (patient.pseudonym, patient.date_shift_days)
        assert -3650 <= again.date_shift_days <= -1
        assert len(second) == 2
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_secret_decides_the_replacements(tmp_path):
    with UidMap(secret="s1") as one, UidMap(secret="s1") as same, UidMap(secret="s2") as other:
        assert one.uid("1.2.3") == same.uid("1.2.3") != other.uid("1.2.3")
    with UidMap(tmp_path / "m.sqlite", secret="s1") as stored:
        stored.uid("1.2.3")
    with UidMap(tmp_path / "m.sqlite") as reopened:  # the stored secret is used
        assert reopened.uid("1.2.9") == UidMap(secret="s1").uid("1.2.9")
    with pytest.raises(ConfigError, match="secret differs"):
        UidMap(tmp_path / "m.sqlite", secret="s2")


def test_custom_root_and_bad_root(tmp_path):
    with UidMap(uid_root="1.2.826.0.1.3680043.10.999") as m:
        uid = m.uid("1.2.3")
        assert uid.startswith("1.2.826.0.1.3680043.10.999.") and len(uid) <= 64 and UID_RE.match(uid)
    with pytest.raises(ConfigError, match="uid_root"):
        UidMap(uid_root="1.02.x")
    with UidMap(tmp_path / "r.sqlite", uid_root="1.2.3") as m:
        m.uid("9.9")
    with pytest.raises(ConfigError, match="UID root"):
        UidMap(tmp_path / "r.sqlite")
