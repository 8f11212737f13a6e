"""The "where to look first" section of ``report.html``: explanations the annotation run left per case.

``medannot annotate --uncertainty`` writes ``explanations.uncertainty`` into each case's ``annotation.json``
(mean normalised softmax entropy inside the predicted mask, fraction of uncertain voxels...) and an entropy
overlay; a classifier writes its class, probability and Grad-CAM / occlusion overlays. When the evaluated
prediction folder holds such cases, the report ranks them so that a reviewer opens the least certain first:

- segmentation: by mean normalised entropy inside the predicted mask, highest first (a case with an empty mask
  has no inside value and comes last, flagged), with the case's mean Dice beside it when it was evaluated;
- classification: by the probability of the predicted class, lowest first.

Overlays are shrunk to thumbnails and embedded as base64 PNG (the report stays one file). The markup is
``medannot/templates/_explanations.html``, included by both report pages.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medannot.evaluation.record import HIDDEN, Record

__all__ = ["THUMB_SIDE", "ClassifiedCase", "ExplanationView", "Explanations", "UncertainCase", "collect_explanations", "explanation_view"]

THUMB_SIDE = 200
#: Overlay files shown per case, in order of preference (first found is shown).
_UNCERTAINTY_PNGS = ("uncertainty_png", "uncertainty_axial_png")
_SALIENCY_PNGS = ("gradcam_png", "gradcam_axial_png", "occlusion_png", "occlusion_axial_png")


@dataclass(frozen=True, eq=False, repr=False)
class UncertainCase(Record):
    """Uncertainty summary of one segmented case (normalised softmax entropy, 0..1; None for an empty mask).

    Attributes:
        case: Case name.
        in_mask: Mean entropy inside the predicted mask.
        uncertain_in_mask: Fraction of mask voxels above ``threshold``.
        overall: Mean entropy over the whole image.
        threshold: Entropy above which a voxel counts as uncertain.
        per_label: Label -> mean entropy inside that label.
        mc: MC-dropout mean variance inside the mask (None without MC dropout).
        thumb: Base64 PNG of the entropy overlay (HTML only, not serialised).
    """

    case: str
    in_mask: float | None
    uncertain_in_mask: float | None
    overall: float | None
    threshold: float | None
    per_label: dict[str, float | None]
    mc: float | None
    thumb: str | None = field(default=None, metadata=HIDDEN)


@dataclass(frozen=True, eq=False, repr=False)
class ClassifiedCase(Record):
    """A classifier's verdict on one case, with its explanation (Grad-CAM thumbnail, occlusion drop in nats)."""

    case: str
    label: Any
    probability: float | None
    calibrated: bool
    occlusion_drop: float | None
    thumb: str | None = field(default=None, metadata=HIDDEN)


@dataclass(frozen=True, eq=False, repr=False)
class Explanations(Record):
    """Cases of a prediction folder ranked for review: uncertain segmentations first, least confident classes first."""

    uncertainty: list[UncertainCase] = field(default_factory=list)
    classification: list[ClassifiedCase] = field(default_factory=list)


def _thumb(path: Path) -> str | None:
    """Base64 PNG of the image at ``path`` shrunk to at most ``THUMB_SIDE`` pixels (None when unreadable)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as opened:
            im = opened.convert("RGB")
            im.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except (OSError, ValueError):
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _first_png(folder: Path, files: dict[str, str], keys: Sequence[str]) -> str | None:
    for key in keys:
        name = files.get(key)
        if name and (folder / name).is_file():
            return _thumb(folder / name)
    return None


def collect_explanations(prediction: str | Path | None, cases: Sequence[str] | None = None) -> Explanations:
    """Read the explanations of every case folder under ``prediction`` (``<case>/annotation.json``).

    Args:
        prediction: The evaluated prediction folder (a ``medannot annotate --out`` folder); a file or None gives nothing.
        cases: Only these case names (None = all).

    Returns:
        :class:`Explanations` (``uncertainty`` and ``classification`` lists of per-case records, ``thumb``
        base64 or None), ranked as in the module docstring; empty lists when there is nothing. Unreadable
        ``annotation.json`` files are skipped (the evaluation itself does not depend on them).
    """
    uncertain: list[UncertainCase] = []
    classified: list[ClassifiedCase] = []
    root = Path(prediction) if prediction is not None else None
    if root is None or not root.is_dir():
        return Explanations()
    wanted = None if cases is None else {str(c) for c in cases}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if wanted is not None and folder.name not in wanted:
            continue
        try:
            ann = json.loads((folder / "annotation.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(ann, dict):
            continue
        files = ann.get("files") or {}
        exp = ann.get("explanations") or {}
        unc = exp.get("uncertainty")
        if isinstance(unc, dict):
            uncertain.append(UncertainCase(
                case=folder.name,
                in_mask=unc.get("mean_entropy_in_mask"),
                uncertain_in_mask=unc.get("uncertain_fraction_in_mask"),
                overall=unc.get("mean_entropy"),
                threshold=unc.get("threshold"),
                per_label={k: v.get("mean_entropy") for k, v in (unc.get("per_label") or {}).items() if isinstance(v, dict)},
                mc=unc.get("mc_dropout_mean_variance_in_mask"),
                thumb=_first_png(folder, files, _UNCERTAINTY_PNGS),
            ))
        cls = ann.get("classification")
        if isinstance(cls, dict) and cls.get("label") is not None:
            occ = exp.get("occlusion") or {}
            classified.append(ClassifiedCase(
                case=folder.name,
                label=cls.get("label"),
                probability=cls.get("probability"),
                calibrated=bool(cls.get("calibrated")),
                occlusion_drop=occ.get("max_log_odds_drop"),
                thumb=_first_png(folder, files, _SALIENCY_PNGS),
            ))

    def unc_key(r: UncertainCase) -> tuple[int, float, str]:
        return (1, 0.0, r.case) if r.in_mask is None else (0, -float(r.in_mask), r.case)

    uncertain.sort(key=unc_key)
    classified.sort(key=lambda r: (float(r.probability) if r.probability is not None else 2.0, r.case))
    return Explanations(uncertainty=uncertain, classification=classified)


def _case_dice(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    per: dict[str, list[float]] = {}
    for r in rows:
        d = r.get("dice")
        if isinstance(d, (int, float)) and math.isfinite(float(d)):
            per.setdefault(str(r["case"]), []).append(float(d))
    return {c: sum(v) / len(v) for c, v in per.items()}


def _spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None for fewer than 3 pairs or a constant side."""
    if len(a) < 3:
        return None
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


@dataclass(frozen=True)
class ExplanationView:
    """What the "where to look first" section shows (``templates/_explanations.html``).

    Attributes:
        uncertainty: Segmented cases, most uncertain inside the mask first.
        classification: Classified cases, least confident first.
        labels: Label names with a per-label uncertainty column.
        threshold: Entropy above which a voxel counts as uncertain.
        dice: Case -> mean Dice over its labels (cases that were evaluated).
        rho: Spearman correlation of uncertainty in the mask with the case's mean Dice (None: fewer than 3 cases).
        n_pairs: Cases in that correlation.
        has_mc: Some case has an MC-dropout variance.
        truth: Case -> true class, to mark wrong classifications (None: not shown).
        limit: Most cases shown with a thumbnail per kind (the tables list all).
    """

    uncertainty: list[UncertainCase]
    classification: list[ClassifiedCase]
    labels: list[str]
    threshold: float
    dice: dict[str, float]
    rho: float | None
    n_pairs: int
    has_mc: bool
    truth: dict[str, str] | None
    limit: int


def explanation_view(explanations: Explanations, rows: Sequence[Mapping[str, Any]] = (), limit: int = 24,
                     truth: dict[str, str] | None = None) -> ExplanationView | None:
    """Content of the section, or None when no case has explanations.

    Args:
        explanations: From :func:`collect_explanations`.
        rows: The evaluation's metric rows (for each case's mean Dice beside its uncertainty).
        limit: Most cases shown with a thumbnail per kind (the table lists all).
        truth: Case -> true class, to mark wrong classifications (None: not shown).
    """
    unc, cls = explanations.uncertainty, explanations.classification
    if not unc and not cls:
        return None
    dice = _case_dice(rows) if unc else {}
    pairs = [(float(r.in_mask), dice[r.case]) for r in unc if r.in_mask is not None and r.case in dice]
    return ExplanationView(
        uncertainty=unc,
        classification=cls,
        labels=list(dict.fromkeys(k for r in unc for k in r.per_label)),
        threshold=next((float(r.threshold) for r in unc if r.threshold is not None), 0.5),
        dice=dice,
        rho=_spearman([p[0] for p in pairs], [p[1] for p in pairs]),
        n_pairs=len(pairs),
        has_mc=any(r.mc is not None for r in unc),
        truth=truth,
        limit=int(limit),
    )
