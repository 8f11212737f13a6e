"""``medannot agree``: agreement of several readers' label files for one case, with consensus masks.

Writes ``agreement.csv`` (one row per reader pair and label), ``agreement_summary.csv``
(per label), ``agreement.json`` (everything, including Fleiss' kappa on voxels and each
reader's STAPLE sensitivity/specificity) and the consensus mask ``consensus_<method>.<suffix>``.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medannot.data.image import Image, ImageKind
from medannot.errors import InputError
from medannot.evaluation.agreement import (
    AgreementLabelSummary,
    AgreementPair,
    agreement_summary,
    fleiss_kappa,
    majority_vote,
    pairwise_agreement,
)
from medannot.evaluation.record import OPTIONAL, Record
from medannot.evaluation.staple import staple_labels
from medannot.io import read_image, write_image
from medannot.io.atomic import atomic_write_text

__all__ = ["AgreementResult", "Consensus", "KappaSummary", "ReaderStaple", "run_agreement"]


class Consensus(enum.StrEnum):
    """Which consensus mask to write."""

    STAPLE = "staple"
    MAJORITY = "majority"
    NONE = "none"


@dataclass(frozen=True, eq=False, repr=False)
class KappaSummary(Record):
    """Fleiss' kappa on voxels; ``degenerate`` (with the ``reason``) when every rating is one category (kappa 1.0)."""

    kappa: float
    degenerate: bool
    reason: str


@dataclass(frozen=True, eq=False, repr=False)
class ReaderStaple(Record):
    """STAPLE's estimate of each reader for one label: sensitivity and specificity (0..1), EM iterations, convergence."""

    sensitivity: dict[str, float]
    specificity: dict[str, float]
    iterations: int
    converged: bool


@dataclass(frozen=True, eq=False, repr=False)
class AgreementResult(Record):
    """Outcome of :func:`run_agreement` (the content of ``agreement.json``).

    Attributes:
        readers: Reader names (file names, made unique).
        files: The reader files.
        pairs: One :class:`~medannot.evaluation.agreement.AgreementPair` per reader pair and label.
        summary: One :class:`~medannot.evaluation.agreement.AgreementLabelSummary` per label.
        fleiss_kappa_voxels: :class:`KappaSummary` over all voxels and readers.
        consensus: The consensus written (``staple``, ``majority`` or ``none``).
        staple: Label value -> :class:`ReaderStaple` (STAPLE consensus only).
    """

    readers: list[str]
    files: list[str]
    pairs: list[AgreementPair]
    summary: list[AgreementLabelSummary]
    fleiss_kappa_voxels: KappaSummary
    consensus: str
    staple: Mapping[str, ReaderStaple] | None = field(default=None, metadata=OPTIONAL)

    def summary_line(self) -> str:
        """``"3 readers, Fleiss' kappa on voxels 0.888: x mean Dice 0.965 (min 0.947), y mean Dice 0.333 (min 0.000)"``."""
        labels = ", ".join(f"{s.label_name} mean Dice {s.mean_dice:.3f} (min {s.min_dice:.3f})" for s in self.summary)
        return f"{len(self.readers)} readers, Fleiss' kappa on voxels {self.fleiss_kappa_voxels.kappa:.3f}: {labels or 'no label drawn'}"


def _reader_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name.removesuffix(".gz").rsplit(".", 1)[0] if p.is_file() else p.name for p in paths]
    return names if len(set(names)) == len(names) else [f"{i}:{n}" for i, n in enumerate(names)]


def _csv_text(rows: Sequence[Record]) -> str:
    plain = [r.to_dict() for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(plain[0]) if plain else ["label"])
    writer.writeheader()
    writer.writerows(plain)
    return buf.getvalue()


def run_agreement(
    readers: Sequence[Path],
    out: Path,
    labels: dict[int, str] | None = None,
    consensus: str = "staple",
    tie: str = "background",
) -> AgreementResult:
    """Compare two or more readers' label files of one case and write the results into ``out``.

    The agreement entry point (``medannot agree``).

    Args:
        readers: Label files (NIfTI, PNG, TIFF, DICOM), one per reader, on one grid.
        out: Output folder (created).
        labels: Label names; default: every non-zero value present, named by its value.
        consensus: ``staple``, ``majority`` or ``none``.
        tie: Majority-vote tie rule (``background``, ``lowest``, ``random-seeded``).

    Returns:
        :class:`AgreementResult` (what ``agreement.json`` holds).

    Raises:
        InputError: Fewer than two readers, unreadable files, unknown option values.
        GeometryError: Readers on different grids.
    """
    try:
        method = Consensus(consensus)
    except ValueError:
        raise InputError(f"--consensus must be one of {', '.join(c.value for c in Consensus)}, got {consensus!r}") from None
    if len(readers) < 2:
        raise InputError(f"agreement needs at least two reader files, got {len(readers)}")
    images = [read_image(p, kind=ImageKind.LABEL) for p in readers]
    first = images[0]
    for path, img in zip(readers[1:], images[1:], strict=True):
        first.check_same_grid(img, what=f"readers {readers[0].name} and {Path(path).name}")
    names = _reader_names([Path(p) for p in readers])
    arrays = {n: img.scalar() for n, img in zip(names, images, strict=True)}
    rows = pairwise_agreement(arrays, first.spacing, labels=labels)
    summary = agreement_summary(rows)
    kappa = fleiss_kappa(np.stack([a.reshape(-1) for a in arrays.values()], axis=1))
    staple: dict[str, ReaderStaple] | None = None
    out.mkdir(parents=True, exist_ok=True)
    first_path = Path(readers[0])
    suffix = ".nii.gz" if first_path.name.endswith(".nii.gz") or first_path.is_dir() else first_path.suffix
    if suffix in {".dcm", ""}:
        suffix = ".nii.gz"
    if method is Consensus.STAPLE:
        st = staple_labels(list(arrays.values()))
        write_image(Image.from_spatial(st.consensus, first.geometry, kind=ImageKind.LABEL), out / f"consensus_staple{suffix}")
        staple = {
            str(v): ReaderStaple(
                sensitivity=dict(zip(names, r.sensitivity.tolist(), strict=True)),
                specificity=dict(zip(names, r.specificity.tolist(), strict=True)),
                iterations=int(r.iterations),
                converged=bool(r.converged),
            )
            for v, r in st.per_label.items()
        }
    elif method is Consensus.MAJORITY:
        vote = majority_vote(list(arrays.values()), tie=tie)
        write_image(Image.from_spatial(vote, first.geometry, kind=ImageKind.LABEL), out / f"consensus_majority{suffix}")
    result = AgreementResult(
        readers=names,
        files=[str(p) for p in readers],
        pairs=rows,
        summary=summary,
        fleiss_kappa_voxels=KappaSummary(kappa=kappa.kappa, degenerate=kappa.degenerate, reason=kappa.reason),
        consensus=method.value,
        staple=staple,
    )
    atomic_write_text(out / "agreement.csv", _csv_text(rows))
    atomic_write_text(out / "agreement_summary.csv", _csv_text(summary))
    atomic_write_text(out / "agreement.json", result.to_json())
    return result
