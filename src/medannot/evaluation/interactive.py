"""Simulated user and interactive metrics for promptable engines (clicks -> Dice, NoC@80/85/90).

The clicker (the protocol of RITM / nnInteractive's evaluations):

- first click inside the object at the point farthest from its boundary (Euclidean distance transform
  in mm, the image edge counting as boundary);
- each next click at the point farthest from the boundary of the largest error region (connected
  components of misses and false alarms, face connectivity), positive on a miss and negative on a
  false alarm;
- a box from the object's extent, optionally jittered (each side moves by up to ``jitter`` times the
  object's size along that axis).

It is deterministic: ties go to the first voxel in array order, and jitter comes from a seeded generator.

``simulate(engine, image, truth)`` runs up to ``max_clicks`` interactions, each with every click so far and
the previous mask, and records Dice after each. NoC@t (number of clicks) is the first interaction whose
Dice reaches ``t``; a case that never reaches it within ``max_clicks`` counts ``max_clicks`` and is a
failure. Dice of an empty prediction against an empty truth is 1 (truth masks here are never empty:
``simulate`` refuses them).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage as ndi

from medannot.data.image import Image
from medannot.data.prompts import BoxPrompt, PromptableEngine, Prompts, PromptSpace
from medannot.errors import InputError, OutputError

__all__ = [
    "Click",
    "InteractiveAccumulator",
    "InteractiveResult",
    "InteractiveSummary",
    "NOC_THRESHOLDS",
    "box_from_mask",
    "first_click",
    "next_click",
    "noc",
    "plot_clicks_vs_dice",
    "simulate",
    "write_interactive_csv",
]

NOC_THRESHOLDS = (0.80, 0.85, 0.90)


@dataclass(frozen=True)
class Click:
    """A simulated click: voxel index (array order) and sign."""

    index: tuple[int, ...]
    positive: bool


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    inter = int(np.count_nonzero(pred & truth))
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))
    return 1.0 if total == 0 else 2.0 * inter / total


def _centre(region: np.ndarray, spacing: Sequence[float] | None) -> tuple[int, ...]:
    """Voxel of ``region`` farthest from its boundary (EDT on the region's bounding box padded by one)."""
    nz = np.nonzero(region)
    lo = np.array([a.min() for a in nz])
    hi = np.array([a.max() for a in nz]) + 1
    sub = np.pad(region[tuple(slice(a, b) for a, b in zip(lo, hi))], 1)
    dist = ndi.distance_transform_edt(sub, sampling=spacing)
    idx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return tuple(int(i - 1 + a) for i, a in zip(idx, lo))


def first_click(truth: np.ndarray, spacing: Sequence[float] | None = None) -> Click:
    """The object's voxel farthest from its boundary (positive).

    Args:
        truth: Bool mask of the object (not empty).
        spacing: Voxel spacing in mm (default isotropic 1).

    Raises:
        InputError: If ``truth`` is empty.
    """
    truth = np.asarray(truth, bool)
    if not truth.any():
        raise InputError("simulated user: the truth mask is empty; give a mask with the object in it")
    return Click(_centre(truth, spacing), True)


def next_click(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | None = None) -> Click | None:
    """The click at the centre of the largest error region (None when the prediction is perfect).

    Args:
        truth: Bool mask of the object.
        pred: Bool mask predicted so far (same shape).
        spacing: Voxel spacing in mm.

    Returns:
        A positive click inside the largest missed region, or a negative one inside the largest false
        alarm (the larger by voxel count; a miss wins a tie).
    """
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    if truth.shape != pred.shape:
        raise InputError(f"simulated user: prediction shape {pred.shape} differs from truth shape {truth.shape}")
    best: tuple[int, bool, np.ndarray] | None = None
    for positive, err in ((True, truth & ~pred), (False, pred & ~truth)):
        if not err.any():
            continue
        lab = cc3d.connected_components(err, connectivity=4) if err.ndim == 2 else cc3d.connected_components(err, connectivity=6)
        counts = np.bincount(lab.ravel())
        counts[0] = 0
        k = int(np.argmax(counts))
        if best is None or counts[k] > best[0]:
            best = (int(counts[k]), positive, lab == k)
    if best is None:
        return None
    return Click(_centre(best[2], spacing), best[1])


def box_from_mask(truth: np.ndarray, jitter: float = 0.0, rng: np.random.Generator | int | None = 0) -> BoxPrompt:
    """A voxel box (inclusive corners) around the object, each side moved by up to ``jitter`` x its size.

    Raises:
        InputError: If ``truth`` is empty.
    """
    truth = np.asarray(truth, bool)
    if not truth.any():
        raise InputError("simulated user: the truth mask is empty; give a mask with the object in it")
    nz = np.nonzero(truth)
    lo = np.array([a.min() for a in nz], float)
    hi = np.array([a.max() for a in nz], float)
    if jitter > 0:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        size = hi - lo + 1
        lo = lo + np.rint(gen.uniform(-jitter, jitter, lo.shape) * size)
        hi = hi + np.rint(gen.uniform(-jitter, jitter, hi.shape) * size)
        upper = np.asarray(truth.shape) - 1
        lo, hi = np.clip(lo, 0, upper), np.clip(hi, 0, upper)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return BoxPrompt(tuple(lo.tolist()), tuple(hi.tolist()))


def noc(dices: Sequence[float], threshold: float, max_clicks: int = 20) -> tuple[int, bool]:
    """``(clicks, failed)``: the first 1-based interaction with Dice >= ``threshold``; ``(max_clicks, True)`` if none."""
    for k, d in enumerate(dices[:max_clicks], 1):
        if d >= threshold:
            return k, False
    return max_clicks, True


@dataclass
class InteractiveResult:
    """One simulated session of one engine on one case.

    Attributes:
        case: Case name.
        engine: Engine name.
        dices: Dice after each interaction (1-based interaction k is ``dices[k-1]``).
        clicks: The interactions (a box is recorded as ``Click(index=(), positive=True)``).
        seconds: Wall time of each interaction (s).
        max_clicks: The cap used for NoC.
    """

    case: str
    engine: str
    dices: list[float]
    clicks: list[Click]
    seconds: list[float]
    max_clicks: int = 20

    def noc(self, threshold: float) -> tuple[int, bool]:
        """NoC at ``threshold`` and whether it failed."""
        return noc(self.dices, threshold, self.max_clicks)

    def row(self, thresholds: Sequence[float] = NOC_THRESHOLDS) -> dict[str, Any]:
        """One CSV row: case, engine, NoC@t and failure per threshold, Dice per interaction, median time."""
        out: dict[str, Any] = {"case": self.case, "engine": self.engine}
        for t in thresholds:
            k, failed = self.noc(t)
            out[f"noc{round(t * 100)}"] = k
            out[f"failed{round(t * 100)}"] = int(failed)
        out["median_seconds"] = round(float(np.median(self.seconds)), 4) if self.seconds else ""
        for k in range(self.max_clicks):
            out[f"dice_{k + 1}"] = round(self.dices[k], 4) if k < len(self.dices) else ""
        return out


def simulate(engine: PromptableEngine, image: Image, truth: np.ndarray | Image, max_clicks: int = 20,
             first: str = "click", box_jitter: float = 0.0, stop_at: float | None = None, case: str = "case",
             seed: int = 0) -> InteractiveResult:
    """Run the simulated user against ``engine`` on one object.

    Args:
        engine: Any :class:`~medannot.data.prompts.PromptableEngine`.
        image: The image (single channel).
        truth: The object's mask on the image grid (bool array or label image; non-zero = object).
        max_clicks: Interactions to run (and the NoC cap).
        first: ``"click"`` (first click at the object's centre) or ``"box"`` (first interaction a box;
            later ones clicks).
        box_jitter: Jitter of the box (fraction of the object's size per side).
        stop_at: Stop once Dice reaches this (the curve is then shorter; NoC at thresholds <= ``stop_at``
            is unaffected). None runs all ``max_clicks``.
        case: Case name for the result.
        seed: Seed of the box jitter.

    Raises:
        InputError: Empty truth, truth on another grid, or an unknown ``first``.
    """
    t = truth.array[0] if isinstance(truth, Image) else np.asarray(truth)
    if isinstance(truth, Image):
        image.check_same_grid(truth, "image and truth mask")
    t = t != 0
    if t.shape != image.spatial_shape:
        raise InputError(f"simulated user: truth shape {t.shape} differs from the image's {image.spatial_shape}")
    if not t.any():
        raise InputError(f"simulated user: the truth mask of case {case!r} is empty; give a mask with the object in it")
    if first not in ("click", "box"):
        raise InputError(f"simulated user: first must be 'click' or 'box', got {first!r}")
    spacing = image.spacing
    prompts = Prompts(space=PromptSpace.VOXEL)
    dices: list[float] = []
    clicks: list[Click] = []
    seconds: list[float] = []
    pred: np.ndarray | None = None
    for k in range(max_clicks):
        if k == 0 and first == "box":
            prompts = Prompts(boxes=(box_from_mask(t, box_jitter, seed),), space=PromptSpace.VOXEL)
            clicks.append(Click((), True))
        else:
            click = first_click(t, spacing) if pred is None else next_click(t, pred, spacing)
            if click is None:  # perfect: the user stops; the curve stays at 1
                dices.append(1.0)
                seconds.append(0.0)
                continue
            clicks.append(click)
            prompts = prompts.with_point(click.index, click.positive)
        start = time.perf_counter()
        pred = np.asarray(engine.segment(image, prompts.with_previous(pred)), bool)
        seconds.append(time.perf_counter() - start)
        dices.append(_dice(pred, t))
        if stop_at is not None and dices[-1] >= stop_at:
            break
    return InteractiveResult(case, engine.name, dices, clicks, seconds, max_clicks)


@dataclass
class InteractiveSummary:
    """Aggregate of one engine over cases.

    Attributes:
        engine: Engine name.
        cases: Number of cases.
        mean_noc: Mean NoC per threshold (failures count ``max_clicks``).
        failure_rate: Fraction of cases that never reached each threshold.
        mean_dice: Mean Dice after interaction 1..max_clicks (a case that stopped early keeps its last Dice).
        median_seconds: Median time of one interaction over all cases.
    """

    engine: str
    cases: int
    mean_noc: dict[float, float]
    failure_rate: dict[float, float]
    mean_dice: list[float]
    median_seconds: float

    def to_dict(self, at: Sequence[int] = (1, 3, 5)) -> dict[str, Any]:
        """JSON-ready numbers: ``cases``, ``dice<k>`` after interactions ``at`` and after the last (``dice_last``),
        ``noc<t>`` and ``fail<t>`` per threshold (percent), ``median_seconds`` of one interaction."""
        out: dict[str, Any] = {"cases": self.cases}
        for k in at:
            if k <= len(self.mean_dice):
                out[f"dice{k}"] = round(self.mean_dice[k - 1], 4)
        out["dice_last"] = round(self.mean_dice[-1], 4) if self.mean_dice else float("nan")
        out["clicks"] = len(self.mean_dice)
        for t, v in self.mean_noc.items():
            out[f"noc{round(t * 100)}"] = round(v, 3)
        for t, v in self.failure_rate.items():
            out[f"fail{round(t * 100)}"] = round(v, 4)
        out["median_seconds"] = round(self.median_seconds, 4)
        return out


@dataclass
class InteractiveAccumulator:
    """Collects :class:`InteractiveResult` of one or more engines: ``update / compute / reset``."""

    thresholds: Sequence[float] = NOC_THRESHOLDS
    results: list[InteractiveResult] = field(default_factory=list)

    def update(self, result: InteractiveResult) -> None:
        """Add one session."""
        self.results.append(result)

    def reset(self) -> None:
        """Forget every session."""
        self.results.clear()

    def compute(self) -> dict[str, InteractiveSummary]:
        """Summary per engine (engines in the order first seen); empty when nothing was added."""
        out: dict[str, InteractiveSummary] = {}
        for name in dict.fromkeys(r.engine for r in self.results):
            rs = [r for r in self.results if r.engine == name]
            cap = max(r.max_clicks for r in rs)
            curves = np.array([(r.dices + [r.dices[-1]] * cap)[:cap] for r in rs])
            mean_noc = {t: float(np.mean([r.noc(t)[0] for r in rs])) for t in self.thresholds}
            fail = {t: float(np.mean([r.noc(t)[1] for r in rs])) for t in self.thresholds}
            secs = [s for r in rs for s in r.seconds]
            out[name] = InteractiveSummary(name, len(rs), mean_noc, fail, curves.mean(axis=0).tolist(),
                                           float(np.median(secs)) if secs else float("nan"))
        return out


def write_interactive_csv(results: Iterable[InteractiveResult], path: str | Path,
                          thresholds: Sequence[float] = NOC_THRESHOLDS, groups: dict[str, str] | None = None) -> Path:
    """Write one row per (case, engine) session (see :meth:`InteractiveResult.row`).

    Args:
        results: The sessions.
        path: The CSV file.
        thresholds: NoC thresholds.
        groups: Case name -> group (e.g. the object's source), written as a ``group`` column after ``case``.

    Raises:
        OutputError: If the file cannot be written or there is no result.
    """
    rows = []
    for r in results:
        row = r.row(thresholds)
        if groups is not None:
            row = {"case": row.pop("case"), "group": groups.get(r.case, ""), **row}
        rows.append(row)
    if not rows:
        raise OutputError("no interactive results to write; run simulate() on at least one case", path)
    p = Path(path)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(p)
    except OSError as exc:
        raise OutputError(f"cannot write the interactive CSV: {exc.strerror}", p) from None
    return p


def plot_clicks_vs_dice(summaries: dict[str, InteractiveSummary], path: str | Path, title: str = "") -> Path:
    """Mean Dice against the number of interactions, one line per engine, saved as PNG.

    Raises:
        OutputError: If nothing to plot or the file cannot be written.
    """
    if not summaries:
        raise OutputError("no interactive summaries to plot", path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=100)
    for name, s in summaries.items():
        x = np.arange(1, len(s.mean_dice) + 1)
        ax.plot(x, s.mean_dice, marker="o", markersize=3, label=f"{name} (NoC@85 {s.mean_noc.get(0.85, float('nan')):.1f})")
    for t in NOC_THRESHOLDS:
        ax.axhline(t, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel("interactions (clicks)")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.set_title(title or "clicks vs Dice")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p)
    except OSError as exc:
        raise OutputError(f"cannot write the plot: {exc.strerror}", p) from None
    finally:
        plt.close(fig)
    return p
