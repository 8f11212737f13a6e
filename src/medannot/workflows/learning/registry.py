"""Model versions of a project: what each trained model is, where it came from, and how it was judged.

A version is a bundle folder plus a record: its number, its parent, the cases it trained and validated on (names
and a hash), the recipe, the gate's numbers and decision, the weights' sha256, what triggered it, and its status:

- ``candidate``: trained, not judged yet;
- ``active``: the model that proposes masks (at most one per project);
- ``rejected``: failed the gate (kept with its numbers; can still be activated by hand);
- ``retired``: was active, replaced by another version.

The review server keeps these records in its database (``model_versions``) and the bundles in its data folder;
``medannot simulate`` keeps them in ``versions.json`` beside its bundles. Both write a bundle completely before the
record that points to it exists.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medannot.errors import ConfigError

__all__ = ["ModelVersionRecord", "VersionStatus", "cases_hash", "write_versions"]


class VersionStatus(enum.StrEnum):
    """Life of a model version (see the module docstring)."""

    CANDIDATE = "candidate"
    ACTIVE = "active"
    REJECTED = "rejected"
    RETIRED = "retired"

    @classmethod
    def parse(cls, value: str) -> VersionStatus:
        """Convert a string once; a typo lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"unknown version status {value!r}; expected one of: {', '.join(s.value for s in cls)}") from None


def cases_hash(names: Iterable[str]) -> str:
    """SHA-256 of the sorted case names (one per line): the same set of cases gives the same hash."""
    return hashlib.sha256("\n".join(sorted(str(n) for n in names)).encode()).hexdigest()


@dataclass
class ModelVersionRecord:
    """One model version (see the module docstring).

    Attributes:
        number: 1, 2, ... within the project.
        status: :class:`VersionStatus` value.
        bundle: The bundle folder.
        bundle_sha256: sha256 of its weights.
        parent: Number of the version it was fine-tuned from (None: from scratch or from the project's base model).
        parent_model: The bundle it started from (a version's folder, a bundled model, or None).
        train_cases: Names of the cases it trained on.
        val_cases: Names of the cases it was validated on.
        trigger: Who or what asked for it (``user NAME``, ``auto after N accepted``, ``simulation``).
        recipe: The training recipe used.
        gate: The gate's decision with both models' scores (:meth:`GateDecision.to_dict`).
        seconds: Training time (s).
        label_values: Project label values of outputs 1..K.
    """

    number: int
    status: str
    bundle: str
    bundle_sha256: str
    parent: int | None
    parent_model: str | None
    train_cases: list[str]
    val_cases: list[str]
    trigger: str
    recipe: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    label_values: list[int] = field(default_factory=list)

    @property
    def cases_sha256(self) -> str:
        """:func:`cases_hash` of the training cases."""
        return cases_hash(self.train_cases)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (with ``cases_sha256``)."""
        return {**asdict(self), "cases_sha256": self.cases_sha256}


def write_versions(records: Iterable[ModelVersionRecord], path: str | Path) -> Path:
    """Write the records as ``versions.json`` atomically.

    Raises:
        OutputError: The file cannot be written.
    """
    from medannot.io import atomic_write_text

    return atomic_write_text(Path(path), json.dumps([r.to_dict() for r in records], indent=2) + "\n")
