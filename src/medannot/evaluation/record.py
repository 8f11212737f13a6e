"""Result records: typed dataclasses with a read-only mapping view, serialised to JSON/CSV only at the edge.

Every evaluation result is a frozen dataclass that derives from :class:`Record`. Code reads typed
attributes (``row.dice``, ``result.summary.n_cases``); the read-only mapping view (``row["dice"]``,
``dict(row)``, ``{**row}``) shows exactly the keys of the serialised JSON object, in its order, so
scripts written against the JSON documents and the earlier dict results keep working (Hugging Face's
``ModelOutput`` pairs a dataclass and a mapping the same way).

Field markers (``dataclasses.field(metadata=...)``):

- :data:`OPTIONAL`: absent from the view and the JSON while None (a section that was not computed).
- :data:`FLATTEN`: the field is itself a mapping whose keys are spread into the parent (a row's metrics,
  its lesion columns and manifest columns).
- :data:`HIDDEN`: kept on the object, never serialised (large in-memory data such as thumbnails).

Serialisation happens once, at the edge: :meth:`Record.to_dict` gives plain Python containers (enums as
their values, numpy scalars as Python numbers, paths as text) and :func:`dumps_json` writes strict JSON:
non-finite numbers become ``null`` (:func:`json_safe`, documented per metric as "undefined") and
``allow_nan=False`` guarantees that no ``NaN``/``Infinity`` token is ever written.
"""

from __future__ import annotations

import enum
import functools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

__all__ = ["FLATTEN", "HIDDEN", "OPTIONAL", "Record", "dumps_json", "json_safe", "plain"]

#: Field metadata: leave the key out while the value is None.
OPTIONAL: Mapping[str, bool] = {"optional": True}
#: Field metadata: spread the keys of this mapping into the parent.
FLATTEN: Mapping[str, bool] = {"flatten": True}
#: Field metadata: never part of the mapping view or the JSON.
HIDDEN: Mapping[str, bool] = {"hidden": True}


@functools.cache
def _layout(cls: type) -> tuple[tuple[str, bool, bool], ...]:
    """``(name, optional, flatten)`` of the serialised fields of a record class, in declaration order."""
    out = []
    for f in fields(cls):
        meta: Mapping[str, Any] = f.metadata
        if meta.get("hidden"):
            continue
        out.append((f.name, bool(meta.get("optional")), bool(meta.get("flatten"))))
    return tuple(out)


@functools.cache
def _direct(cls: type) -> dict[str, bool]:
    """Serialised non-flattened field names -> optional flag."""
    return {name: optional for name, optional, flat in _layout(cls) if not flat}


class Record(Mapping[str, Any]):
    """Base class of result dataclasses: typed attributes plus a read-only mapping view of the JSON keys.

    Subclasses are declared ``@dataclass(frozen=True, eq=False)``; equality is mapping equality, so a
    record equals a dict with the same keys and values. Empty rule: a record without fields is an empty
    mapping.
    """

    __slots__ = ()

    def _pairs(self) -> Iterator[tuple[str, Any]]:
        """The serialised ``(key, value)`` pairs in order (override to reorder)."""
        for name, optional, flat in _layout(type(self)):
            value = getattr(self, name)
            if value is None and (optional or flat):
                continue
            if flat:
                yield from value.items()
            else:
                yield name, value

    def __getitem__(self, key: str) -> Any:
        direct = _direct(type(self))
        if key in direct:
            value = getattr(self, key)
            if value is None and direct[key]:
                raise KeyError(key)
            return value
        for name, _, flat in _layout(type(self)):
            if flat:
                inner = getattr(self, name)
                if inner is not None and key in inner:
                    return inner[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._pairs())

    def __len__(self) -> int:
        return sum(1 for _ in self._pairs())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in _fields(type(self)) if f.repr)
        return f"{type(self).__name__}({inner})"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready containers with the keys of the mapping view (non-finite floats kept; see :func:`json_safe`)."""
        return {key: plain(value) for key, value in self._pairs()}

    def to_json(self, indent: int | None = 2) -> str:
        """Strict JSON text of :meth:`to_dict` (non-finite numbers as ``null``), see :func:`dumps_json`."""
        return dumps_json(self.to_dict(), indent=indent)


@functools.cache
def _fields(cls: type) -> tuple[Field[Any], ...]:
    return fields(cls)


def plain(value: Any) -> Any:
    """``value`` as plain Python containers: records and mappings as dicts, sequences as lists, enums as values.

    numpy scalars and arrays become Python numbers and lists, paths become text; other values are kept.
    """
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k.value if isinstance(k, enum.Enum) else k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return value.tolist()
    return value


def json_safe(value: Any) -> Any:
    """``value`` ready for strict JSON: non-finite floats become None, keys become text, containers become plain.

    Returns:
        Plain dicts/lists/str/int/float/bool/None; a non-finite float anywhere becomes None (the reports
        document which values can be undefined and flag them).
    """
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def dumps_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (after :func:`json_safe`; ``allow_nan=False``, so no NaN/Infinity token)."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)
