"""``medannot agree``: agreement of several readers' label files for one case, with consensus masks.

Writes ``agreement.csv`` (one row per reader pair and label), ``agreement_summary.csv``
(per label), ``agreement.json`` (everything, including Fleiss' kappa on voxels and each
reader's STAPLE sensitivity/specificity) and the consensus mask ``consensus_<method>.<suffix>``.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medannot.data.image import Image, ImageKind
from medannot.errors import InputError
from medannot.evaluation.agreement import agreement_summary, fleiss_kappa, majority_vote, pairwise_agreement
from medannot.evaluation.staple import staple_labels
from medannot.io import read_image, write_image
from medannot.io.atomic import atomic_write_text


class Consensus(enum.StrEnum):
    """Which consensus mask to write."""

    STAPLE = "staple"
    MAJORITY = "majority"
    NONE = "none"


def _reader_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name.removesuffix(".gz").rsplit(".", 1)[0] if p.is_file() else p.name for p in paths]
    return names if len(set(names)) == len(names) else [f"{i}:{n}" for i, n in enumerate(names)]


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["label"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def run_agreement(
    readers: Sequence[Path],
    out: Path,
    labels: dict[int, str] | None = None,
    consensus: str = "staple",
    tie: str = "background",
) -> dict[str, Any]:
    """Compare two or more readers' label files of one case and write the results into ``out``.

    Args:
        readers: Label files (NIfTI, PNG, TIFF, DICOM), one per reader, on one grid.
        out: Output folder (created).
        labels: Label names; default: every non-zero value present, named by its value.
        consensus: ``staple``, ``majority`` or ``none``.
        tie: Majority-vote tie rule (``background``, ``lowest``, ``random-seeded``).

    Returns:
        The JSON-ready result written to ``agreement.json``.

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
    for path, img in zip(readers[1:], images[1:]):
        first.check_same_grid(img, what=f"readers {readers[0].name} and {Path(path).name}")
    names = _reader_names([Path(p) for p in readers])
    arrays = {n: img.scalar() for n, img in zip(names, images)}
    rows = pairwise_agreement(arrays, first.spacing, labels=labels)
    summary = agreement_summary(rows)
    kappa = fleiss_kappa(np.stack([a.reshape(-1) for a in arrays.values()], axis=1))
    result: dict[str, Any] = {
        "readers": names,
        "files": [str(p) for p in readers],
        "pairs": rows,
        "summary": summary,
        "fleiss_kappa_voxels": {"kappa": kappa.kappa, "degenerate": kappa.degenerate, "reason": kappa.reason},
        "consensus": method.value,
    }
    out.mkdir(parents=True, exist_ok=True)
    first_path = Path(readers[0])
    suffix = ".nii.gz" if first_path.name.endswith(".nii.gz") or first_path.is_dir() else first_path.suffix
    if suffix in {".dcm", ""}:
        suffix = ".nii.gz"
    if method is Consensus.STAPLE:
        st = staple_labels(list(arrays.values()))
        write_image(Image.from_spatial(st.consensus, first.geometry, kind=ImageKind.LABEL), out / f"consensus_staple{suffix}")
        result["staple"] = {
            str(v): {
                "sensitivity": dict(zip(names, r.sensitivity.tolist())),
                "specificity": dict(zip(names, r.specificity.tolist())),
                "iterations": r.iterations,
                "converged": r.converged,
            }
            for v, r in st.per_label.items()
        }
    elif method is Consensus.MAJORITY:
        vote = majority_vote(list(arrays.values()), tie=tie)
        write_image(Image.from_spatial(vote, first.geometry, kind=ImageKind.LABEL), out / f"consensus_majority{suffix}")
    atomic_write_text(out / "agreement.csv", _csv_text(rows))
    atomic_write_text(out / "agreement_summary.csv", _csv_text(summary))
    atomic_write_text(out / "agreement.json", json.dumps(result, indent=2, default=str))
    return result
