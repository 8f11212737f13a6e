"""Case manifests: extra per-case columns (site, scanner, model version...) and breakdowns by them.

A manifest is a CSV file with a ``case`` column (the case names the evaluation
matches on) and any other columns. Evaluation rows gain those columns, and the
summary gains, for every other column, per value and label: n, mean and median
Dice and HD95 (and lesion F1 when computed). Cases present on one side only are
listed, never dropped silently.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import InputError
from medannot.evaluation.record import OPTIONAL, Record

__all__ = [
    "BREAKDOWN_METRICS",
    "MISSING_VALUE",
    "GroupLabel",
    "Manifest",
    "ManifestBreakdown",
    "ManifestGroup",
    "MeanMedian",
    "breakdown",
    "read_manifest",
]

#: Metrics summarised per manifest group, in report order.
BREAKDOWN_METRICS = ("dice", "hd95", "lesion_f1")

#: Group value given to evaluated cases that the manifest does not list.
MISSING_VALUE = "(not in manifest)"


class Manifest:
    """Per-case columns read from a CSV file.

    Attributes:
        path: The CSV file.
        columns: The columns other than ``case``, in file order.
        cases: ``{case: {column: value}}`` (values as text; empty cells are ``""``).
    """

    def __init__(self, path: Path, columns: list[str], cases: dict[str, dict[str, str]]) -> None:
        self.path = path
        self.columns = columns
        self.cases = cases

    def values(self, case: str) -> dict[str, str]:
        """Columns of ``case``; a case not in the manifest gets :data:`MISSING_VALUE` in every column."""
        found = self.cases.get(case)
        return dict(found) if found is not None else {c: MISSING_VALUE for c in self.columns}


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest CSV (UTF-8, a header row with a ``case`` column).

    Raises:
        InputError: The file is missing or unreadable, has no ``case`` column, no other column,
            or lists a case twice.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("manifest does not exist; expected a CSV file with a 'case' column", p)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the manifest as UTF-8 CSV: {exc}", p) from exc
    if "case" not in header:
        raise InputError(f"manifest has no 'case' column (columns: {', '.join(header) or 'none'}); add one with the case names", p)
    columns = [h for h in header if h and h != "case"]
    if not columns:
        raise InputError("manifest has only a 'case' column; add the columns to break results down by (site, scanner...)", p)
    cases: dict[str, dict[str, str]] = {}
    for raw in raw_rows:
        row = {str(k).strip(): ("" if v is None else str(v).strip()) for k, v in raw.items() if k is not None}
        case = row.get("case", "")
        if not case:
            continue
        if case in cases:
            raise InputError(f"manifest lists case {case!r} twice; keep one row per case", p)
        cases[case] = {c: row.get(c, "") for c in columns}
    return Manifest(p, columns, cases)


@dataclass(frozen=True, eq=False, repr=False)
class MeanMedian(Record):
    """Mean and median of one metric in one group."""

    mean: float
    median: float


@dataclass(frozen=True, eq=False, repr=False)
class GroupLabel(Record):
    """One label in one manifest group: rows, and each metric's mean/median (absent when no row has it)."""

    n: int
    dice: MeanMedian | None = field(default=None, metadata=OPTIONAL)
    hd95: MeanMedian | None = field(default=None, metadata=OPTIONAL)
    lesion_f1: MeanMedian | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, eq=False, repr=False)
class ManifestGroup(Record):
    """Cases sharing one value of a manifest column, per label."""

    n_cases: int
    labels: dict[str, GroupLabel]


@dataclass(frozen=True, eq=False, repr=False)
class ManifestBreakdown(Record):
    """Results broken down by manifest columns (see :func:`breakdown`)."""

    path: str
    columns: list[str]
    groups: dict[str, dict[str, ManifestGroup]]
    not_evaluated: list[str]
    not_in_manifest: list[str]


def _group_stats(values: list[float]) -> MeanMedian:
    arr = np.asarray(values, dtype=np.float64)
    return MeanMedian(mean=float(arr.mean()), median=float(np.median(arr)))


def breakdown(rows: Sequence[Mapping[str, Any]], manifest: Manifest, evaluated_cases: Sequence[str],
              include_absent: bool = False) -> ManifestBreakdown:
    """Per manifest column, value and label: n and mean/median of :data:`BREAKDOWN_METRICS`.

    Args:
        rows: Evaluation rows already carrying the manifest columns (see :meth:`Manifest.values`).
        manifest: The manifest.
        evaluated_cases: Every case the evaluation scored.
        include_absent: Count rows whose label is absent from both masks in the means (as the summary does;
            by default they count in ``n`` but not in the means, see :func:`medannot.evaluation.accumulate.summarise`).

    Returns:
        :class:`ManifestBreakdown`: ``path``, ``columns``, ``groups`` ({column: {value:
        :class:`ManifestGroup` (``n_cases``, ``labels``: {label: :class:`GroupLabel` (``n``, metric:
        mean/median)})}}), ``not_evaluated`` and ``not_in_manifest``. Empty cells form their own group
        ``""``; evaluated cases the manifest does not list form the group :data:`MISSING_VALUE`. A metric
        absent from every row of a group and label is left out.
    """
    evaluated = set(evaluated_cases)
    groups: dict[str, dict[str, ManifestGroup]] = {}
    for column in manifest.columns:
        per_value: dict[str, dict[str, Any]] = {}
        for row in rows:
            value = str(row.get(column, MISSING_VALUE))
            entry = per_value.setdefault(value, {"cases": set(), "labels": {}})
            entry["cases"].add(str(row["case"]))
            label = entry["labels"].setdefault(str(row["label"]), {"n": 0, **{m: [] for m in BREAKDOWN_METRICS}})
            label["n"] += 1
            if row.get("empty") == "both" and not include_absent:
                continue
            for metric in BREAKDOWN_METRICS:
                v = row.get(metric)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    label[metric].append(float(v))
        groups[column] = {
            value: ManifestGroup(
                n_cases=len(entry["cases"]),
                labels={
                    label: GroupLabel(n=stats["n"], **{m: _group_stats(stats[m]) for m in BREAKDOWN_METRICS if stats[m]})
                    for label, stats in entry["labels"].items()
                },
            )
            for value, entry in sorted(per_value.items())
        }
    return ManifestBreakdown(
        path=str(manifest.path),
        columns=list(manifest.columns),
        groups=groups,
        not_evaluated=sorted(set(manifest.cases) - evaluated),
        not_in_manifest=sorted(evaluated - set(manifest.cases)),
    )
