"""STAPLE consensus of readers (Warfield, Zou and Wells, IEEE TMI 2004).

:func:`staple` is binary STAPLE by exact EM on reader decision patterns: every voxel with
the same pattern of reader decisions gets the same probability, so the EM runs on at most
2**R patterns weighted by their voxel counts, with two chunked passes over the image and no
``(R, *shape)`` float64 array. :func:`staple_labels` applies it one-vs-rest per label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medannot.errors import InputError
from medannot.evaluation.agreement import _label_maps

__all__ = ["CHUNK_VOXELS", "MAX_STAPLE_READERS", "MultiLabelStaple", "StapleResult", "staple", "staple_labels"]

#: Voxels processed at once by the chunked passes (majority vote is whole-array; STAPLE is chunked).
CHUNK_VOXELS = 1 << 20
#: Up to this many readers STAPLE counts patterns with a dense ``bincount`` of 2**R bins.
_DENSE_PATTERN_READERS = 20
#: Readers are packed into the bits of one uint64 code.
MAX_STAPLE_READERS = 63


@dataclass
class StapleResult:
    """Binary STAPLE estimate.

    Attributes:
        probability: Posterior probability that each voxel is foreground (float32, the masks' shape).
        consensus: ``probability >= 0.5`` (decided in float64 before the cast).
        sensitivity: Each reader's estimated sensitivity ``p_r`` (true-positive fraction), reader order.
        specificity: Each reader's estimated specificity ``q_r`` (true-negative fraction).
        prior: The foreground prior ``g`` used (fixed during EM).
        iterations: EM iterations performed.
        converged: Whether every ``|p_r|`` and ``|q_r|`` change fell to ``tol`` or below.
        degenerate: "" or why the estimate is not from EM ("all empty", "all full").
    """

    probability: np.ndarray
    consensus: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    prior: float
    iterations: int
    converged: bool
    degenerate: str = ""


def _pattern_counts(flats: list[np.ndarray], chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct reader-decision codes (bit r = reader r says foreground) and their voxel counts."""
    n_readers, size = len(flats), flats[0].size
    dense = n_readers <= _DENSE_PATTERN_READERS
    counts = np.zeros(1 << n_readers if dense else 0, np.int64)  # dense: count per possible code
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, size, chunk):
        code = _codes(flats, start, min(start + chunk, size))
        if dense:
            counts += np.bincount(code, minlength=1 << n_readers)
        else:
            parts.append(np.unique(code, return_counts=True))
    if dense:
        codes = np.flatnonzero(counts).astype(np.uint64)
        return codes, counts[codes.astype(np.int64)]
    all_codes = np.concatenate([p[0] for p in parts])
    all_counts = np.concatenate([p[1] for p in parts])
    codes, inverse = np.unique(all_codes, return_inverse=True)
    return codes, np.bincount(inverse, weights=all_counts).astype(np.int64)


def _codes(flats: list[np.ndarray], start: int, stop: int) -> np.ndarray:
    dtype = np.int64 if len(flats) <= _DENSE_PATTERN_READERS else np.uint64
    code = np.zeros(stop - start, dtype)
    for r, f in enumerate(flats):
        code |= (f[start:stop] != 0).astype(dtype) << dtype(r)
    return code


def staple(
    masks: Sequence[Any],
    max_iter: int = 100,
    tol: float = 1e-7,
    prior: float | None = None,
    chunk_voxels: int = CHUNK_VOXELS,
) -> StapleResult:
    """Binary STAPLE (Warfield, Zou and Wells, IEEE TMI 23(7), 2004) by EM.

    Model: each voxel is foreground with prior probability ``g``; reader ``r``
    marks a foreground voxel with probability ``p_r`` (sensitivity) and leaves
    a background voxel unmarked with probability ``q_r`` (specificity). EM,
    as ITK's ``STAPLEImageFilter`` (SimpleITK ``sitk.STAPLE``):

    - start: ``W`` = fraction of readers marking each voxel; ``g`` = mean of
      that over the image (``prior=None``; ITK with ConfidenceWeight 1) and
      kept fixed;
    - M-step: ``p_r = sum(W * D_r) / sum(W)``, ``q_r = sum((1-W)(1-D_r)) / sum(1-W)``;
    - E-step: ``W = g a / (g a + (1-g) b)`` with ``a = prod_r p_r^D (1-p_r)^(1-D)``
      and ``b = prod_r (1-q_r)^D q_r^(1-D)``;
    - stop when every ``(p_r - p_r_old)^2`` and ``(q_r - q_r_old)^2`` is at most
      ``tol^2`` (ITK: 1e-14, i.e. ``tol=1e-7``), checked from the 2nd iteration.

    ``W`` depends only on a voxel's decision pattern (which readers marked
    it), so the EM runs exactly on the at most ``2^R`` distinct patterns
    weighted by their voxel counts: one chunked pass to count them, EM on a
    tiny table, one chunked pass to write the float32 map. No
    ``(R, *shape)`` float64 array is ever built (512^3 voxels: the result's
    0.67 GB plus ~40 MB of per-chunk temporaries). Any non-zero value is foreground.

    Multi-label maps: use :func:`staple_labels` (one-vs-rest per label).

    Degenerate inputs: no reader marks any voxel -> probability 0 everywhere,
    sensitivity/specificity 1.0, ``degenerate="all empty"`` (EM would give
    0/0); every reader marks every voxel -> probability 1, ``"all full"``.

    Args:
        masks: Readers' binary masks (2D or 3D, one shape), at least two, at most 63.
        max_iter: Maximum EM iterations (ITK's default is unlimited).
        tol: Convergence tolerance on the change of each ``p_r`` and ``q_r``.
        prior: Fixed foreground prior ``g`` in (0, 1); ``None``: mean marked fraction.
        chunk_voxels: Voxels per chunk of the two passes over the image.

    Returns:
        :class:`StapleResult`.

    Raises:
        InputError: Fewer than two or more than 63 masks, shape mismatch,
            non-integer masks, invalid ``prior``, ``max_iter`` or ``tol``.
    """
    arrays = _label_maps(masks, "staple")
    n_readers = len(arrays)
    if n_readers > MAX_STAPLE_READERS:
        raise InputError(f"staple: at most {MAX_STAPLE_READERS} readers, got {n_readers}; split the readers into groups")
    if prior is not None and not (0.0 < float(prior) < 1.0):
        raise InputError(f"staple: prior must be a probability in (0, 1) or None, got {prior}")
    if max_iter < 1 or not (math.isfinite(tol) and tol >= 0):
        raise InputError(f"staple: max_iter must be >= 1 and tol a finite number >= 0, got max_iter={max_iter}, tol={tol}")
    shape = arrays[0].shape
    flats = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    chunk = max(int(chunk_voxels), 1)
    codes, counts = _pattern_counts(flats, chunk)
    bits = ((codes[:, None] >> np.arange(n_readers, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(bool)  # (K, R)
    cnt = counts.astype(np.float64)
    marked = float((cnt[:, None] * bits).sum()) / (n_readers * cnt.sum())
    ones = np.ones(n_readers)
    if marked == 0.0 or marked == 1.0:
        value = np.float32(marked)
        prob = np.full(shape, value, np.float32)
        return StapleResult(prob, prob >= 0.5, ones.copy(), ones.copy(), float(marked), 0, True, "all empty" if marked == 0.0 else "all full")
    g = marked if prior is None else float(prior)
    W = bits.mean(axis=1)
    last_p = np.full(n_readers, -10.0)
    last_q = np.full(n_readers, -10.0)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        cw, cv = cnt * W, cnt * (1.0 - W)
        p = (cw @ bits) / cw.sum()
        q = (cv @ ~bits) / cv.sum()
        alpha = np.prod(np.where(bits, p, 1.0 - p), axis=1)
        beta = np.prod(np.where(bits, 1.0 - q, q), axis=1)
        den = g * alpha + (1.0 - g) * beta
        with np.errstate(invalid="ignore", divide="ignore"):
            W = np.where(den > 0, g * alpha / den, g)
        if it > 1 and np.all((p - last_p) ** 2 <= tol * tol) and np.all((q - last_q) ** 2 <= tol * tol):
            converged = True
            break
        last_p, last_q = p, q
    prob = np.empty(shape, np.float32)
    consensus = np.empty(shape, bool)
    out_p, out_c = prob.reshape(-1), consensus.reshape(-1)
    dense = n_readers <= _DENSE_PATTERN_READERS
    if dense:
        lut = np.zeros(1 << n_readers, np.float64)
        lut[codes.astype(np.int64)] = W
    for start in range(0, out_p.size, chunk):
        stop = min(start + chunk, out_p.size)
        code = _codes(flats, start, stop)
        w = lut[code] if dense else W[np.searchsorted(codes, code)]
        out_p[start:stop] = w
        out_c[start:stop] = w >= 0.5
    return StapleResult(prob, consensus, p, q, g, it, converged)


@dataclass
class MultiLabelStaple:
    """One-vs-rest STAPLE over labels.

    Attributes:
        per_label: Label value -> :class:`StapleResult` of the binary masks ``map == label``.
        consensus: Label map: at each voxel the label with the highest STAPLE
            probability if that probability is >= 0.5, else 0 (ties: lowest label).
    """

    consensus: np.ndarray
    per_label: dict[int, StapleResult] = field(default_factory=dict)


def staple_labels(
    masks: Sequence[Any],
    labels: Sequence[int] | None = None,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> MultiLabelStaple:
    """Multi-label STAPLE as one binary STAPLE per label (one-vs-rest).

    Each label ``l`` (non-zero) is estimated independently from the masks
    ``map_r == l`` with :func:`staple` (its own prior, sensitivities and
    specificities). This is not the multi-category STAPLE of Warfield 2004
    (a confusion matrix per reader): per-label probabilities need not sum to
    at most 1. The consensus takes, per voxel, the label of highest
    probability where it reaches 0.5, background elsewhere. Memory: one
    float32 map per label.

    Args:
        masks: Readers' label maps (2D or 3D integer arrays, one shape).
        labels: Labels to estimate; ``None``: every non-zero value found.
        max_iter: See :func:`staple`.
        tol: See :func:`staple`.

    Returns:
        :class:`MultiLabelStaple`.
    """
    arrays = _label_maps(masks, "staple_labels")
    values = sorted(set().union(*(np.unique(a).tolist() for a in arrays)) - {0}) if labels is None else sorted(int(v) for v in labels if int(v) != 0)
    dtype = np.result_type(*arrays)
    if dtype == bool:
        dtype = np.dtype(np.uint8)
    consensus = np.zeros(arrays[0].shape, dtype)
    best = np.full(arrays[0].shape, -1.0, np.float32)
    result = MultiLabelStaple(consensus=consensus)
    for value in values:
        res = staple([a == value for a in arrays], max_iter=max_iter, tol=tol)
        result.per_label[value] = res
        take = res.consensus & (res.probability > best)
        consensus[take] = value
        best[take] = res.probability[take]
    return result
