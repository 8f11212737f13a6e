"""The simulated annotator: how much work it takes to correct a proposal to the truth.

Two measures per case, both against painting the case by hand from an empty mask:

- **voxels**: voxels whose label the annotator changes (``proposal != truth``); painting by hand changes every
  labelled voxel of the truth (``truth != 0``).
- **clicks** with a promptable engine, to bring the case to Dice ``target`` (the mean over the label values
  present): while the case is below it, the annotator fixes the worst remaining item, largest error first. An
  item is an object of the truth (a connected region of one label value, 8-connected in 2D, 26-connected in 3D)
  whose proposal (the proposed regions of that label touching it) has Dice below ``target``: it is corrected with
  the engine by the simulated clicker of :mod:`medannot.evaluation.interactive` (first click at the object's
  centre when nothing of it was proposed, else at the centre of the largest error; each next click at the centre
  of the largest error, positive on a miss, negative on a false alarm) until its Dice reaches ``target`` or
  ``max_clicks`` (then it counts ``max_clicks`` and a failure), and the engine's mask replaces the proposal there.
  Or it is a proposed region touching no object of its label: one eraser stroke removes it.

Objects are corrected on a crop of the image around them (their bounding box with the proposal's, plus
``margin`` voxels), which keeps the cost to the object's size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cc3d
import numpy as np

from medannot.data.image import Image
from medannot.data.prompts import PromptableEngine, Prompts, PromptSpace
from medannot.errors import InputError
from medannot.evaluation.interactive import first_click, next_click
from medannot.evaluation.metrics import dice
from medannot.training.sources import crop_image

__all__ = ["CaseEffort", "correction_effort"]


@dataclass
class CaseEffort:
    """The correction effort of one case.

    Attributes:
        voxels_changed: Voxels whose label changed from proposal to truth.
        manual_voxels: Labelled voxels of the truth (the effort of painting the case by hand).
        dice: Mean Dice of the proposal over the label values present in the proposal or the truth (1.0 if none).
        clicks: Promptable interactions to bring the case to ``target``: clicks plus eraser strokes.
        objects: Objects in the truth.
        objects_corrected: Objects corrected with the engine.
        objects_failed: Of those, objects that did not reach ``target`` within ``max_clicks``.
        erase_strokes: Proposed regions touching no object of their label that were erased.
        engine_seconds: Time spent in the engine (s).
        dice_after_clicks: Dice of the case after the clicks (below ``target`` only when objects failed).
    """

    voxels_changed: int
    manual_voxels: int
    dice: float
    clicks: int
    objects: int
    objects_corrected: int
    objects_failed: int
    erase_strokes: int
    engine_seconds: float
    dice_after_clicks: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels = cc3d.connected_components(np.ascontiguousarray(mask, dtype=np.uint8), connectivity=8 if mask.ndim == 2 else 26)
    return labels, int(labels.max())


def _region(masks: Sequence[np.ndarray], margin: int, shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    nz = [np.argwhere(m) for m in masks if m.any()]
    pts = np.concatenate(nz)
    lo = np.maximum(pts.min(axis=0) - margin, 0)
    hi = np.minimum(pts.max(axis=0) + 1 + margin, np.asarray(shape))
    return lo.tolist(), hi.tolist()


def _clicks_for(engine: PromptableEngine, image: Image, truth: np.ndarray, start: np.ndarray, target: float,
                max_clicks: int) -> tuple[int, bool, np.ndarray]:
    """Interactions until ``dice(pred, truth) >= target`` starting from ``start``: (clicks, failed, final mask)."""
    spacing = image.spacing
    prompts = Prompts(space=PromptSpace.VOXEL)
    pred = start
    for k in range(1, max_clicks + 1):
        click = first_click(truth, spacing) if not pred.any() else next_click(truth, pred, spacing)
        if click is None:
            return k - 1, False, pred
        prompts = prompts.with_point(click.index, click.positive)
        pred = np.asarray(engine.segment(image, prompts.with_previous(pred if pred.any() else None)), bool)
        if dice(pred, truth) >= target:
            return k, False, pred
    return max_clicks, True, pred


def correction_effort(image: Image, proposal: np.ndarray, truth: np.ndarray, label_values: Sequence[int],
                      engine: PromptableEngine | None, target: float = 0.90, max_clicks: int = 20, margin: int = 12) -> CaseEffort:
    """The effort of correcting ``proposal`` to ``truth`` (see the module docstring).

    Args:
        image: The case image (single channel; 2D or 3D).
        proposal: Proposed label array on the image grid (spatial shape).
        truth: Truth label array on the same grid.
        label_values: The project's label values (others in the masks are an error).
        engine: The promptable engine; None: no click count (clicks 0).
        target: Dice each object must reach.
        max_clicks: Cap of clicks per object.
        margin: Voxels around an object on the crop the engine works on.

    Raises:
        InputError: Masks not on the image grid, or label values outside ``label_values``.
    """
    p, t = np.asarray(proposal), np.asarray(truth)
    shape = image.spatial_shape
    if p.shape != shape or t.shape != shape:
        raise InputError(f"effort: proposal {p.shape} and truth {t.shape} must both have the image's shape {shape}")
    allowed = {0, *map(int, label_values)}
    for what, arr in (("proposal", p), ("truth", t)):
        extra = sorted({int(v) for v in np.unique(arr)} - allowed)
        if extra:
            raise InputError(f"effort: {what} holds label values {extra[:5]} outside the label map {sorted(allowed - {0})}")
    def case_dice(mask: np.ndarray) -> float:
        found = [dice(mask == v, t == v) for v in label_values if (mask == v).any() or (t == v).any()]
        return float(np.mean(found)) if found else 1.0

    first = case_dice(p)
    grey = image if image.channels == 1 else image.with_array(image.array.mean(axis=0, keepdims=True))
    truth_parts: dict[int, np.ndarray] = {}
    items: list[tuple[int, int, str, int]] = []  # (error voxels, label value, "object" | "stray", component id)
    objects = 0
    for v in map(int, label_values):
        tcomp, n_t = _components(t == v)
        pcomp, n_p = _components(p == v)
        truth_parts[v] = tcomp
        objects += n_t
        pairs = np.unique(np.stack([tcomp[pcomp > 0], pcomp[pcomp > 0]]), axis=1) if n_p else np.zeros((2, 0), int)
        touched = {int(b) for a, b in pairs.T if a > 0}
        for k in range(1, n_t + 1):
            obj = tcomp == k
            hit = [int(b) for a, b in pairs.T if a == k]
            start = np.isin(pcomp, hit) if hit else np.zeros(shape, bool)
            if dice(start, obj) < target:
                items.append((int(np.count_nonzero(start ^ obj)), v, "object", k))
        for k in sorted(set(range(1, n_p + 1)) - touched):
            items.append((int(np.count_nonzero(pcomp == k)), v, "stray", k))
        if any(kind == "stray" for _, lv, kind, _ in items if lv == v):
            truth_parts[-v] = pcomp
    items.sort(key=lambda it: -it[0])
    current = p.copy()
    clicks = corrected = failed = strokes = 0
    seconds = 0.0
    for _, v, kind, k in items:
        if engine is None or case_dice(current) >= target:
            break
        if kind == "stray":
            strokes += 1
            current[(truth_parts[-v] == k) & (current == v)] = 0
            continue
        obj = truth_parts[v] == k
        lo, hi = _region([obj], margin, shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        local, here = obj[sl], current[sl] == v
        comp, _ = _components(here)
        found = np.unique(comp[local & (comp > 0)])
        start = np.isin(comp, found) if len(found) else np.zeros(local.shape, bool)
        if dice(start, local) >= target:
            continue
        corrected += 1
        t0 = time.perf_counter()
        n, bad, mask = _clicks_for(engine, crop_image(grey, lo, hi), local, start, target, max_clicks)
        seconds += time.perf_counter() - t0
        clicks += n
        failed += int(bad)
        window = current[sl]
        window[start] = 0
        window[mask] = v
    return CaseEffort(int(np.count_nonzero(p != t)), int(np.count_nonzero(t)), first, clicks + strokes, objects, corrected,
                      failed, strokes, round(seconds, 4), case_dice(current) if engine is not None else first)
