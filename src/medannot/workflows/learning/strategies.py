"""Active learning: the order in which unreviewed cases are offered, and each case's score.

- ``random``: a fixed pseudo-random order per project (a hash of the project seed and the case key), score in 0..1.
- ``uncertainty``: highest uncertainty score first (mean normalised softmax entropy inside the proposal, see
  :mod:`.proposer`); cases without a score (no proposal yet, or a model without probabilities) come last in
  random order.
- ``diversity``: farthest-first (greedy k-centre) in the retrieval embedding (:mod:`medannot.retrieval.features`):
  each next case is the one farthest (cosine distance) from every case reviewed so far and every case already
  placed before it; its score is that distance. Without any reviewed case the first pick is the case farthest from
  the mean of all. Cases without an embedding come last in random order.
- ``mix``: the mean of a case's uncertainty and diversity ranks (each 0..1, 1 = first), a case missing one of
  them taking the other's rank; score = that mean.

Each function returns ``[(key, score), ...]`` in offering order. Ties keep the random order, so an order never
depends on how the caller listed the cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medannot.workflows.learning.settings import Strategy

__all__ = ["Candidate", "order_cases", "random_key"]


@dataclass(frozen=True)
class Candidate:
    """An unreviewed case as the strategies see it.

    Attributes:
        key: Its id (a database id or a case name).
        uncertainty: Its uncertainty score (None: unknown).
        embedding: Its retrieval vector (L2-normalised float32; None: unknown).
    """

    key: Hashable
    uncertainty: float | None = None
    embedding: np.ndarray | None = None


def random_key(seed: int | str, key: Hashable) -> float:
    """A fixed pseudo-random number in [0, 1) for ``key`` under ``seed`` (SHA-256; the same on every machine)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _random(cands: Sequence[Candidate], seed: int | str) -> list[tuple[Hashable, float]]:
    return sorted(((c.key, random_key(seed, c.key)) for c in cands), key=lambda kv: kv[1])


def _uncertainty(cands: Sequence[Candidate], seed: int | str) -> list[tuple[Hashable, float | None]]:
    rnd = {c.key: random_key(seed, c.key) for c in cands}
    known = sorted((c for c in cands if c.uncertainty is not None), key=lambda c: (-float(c.uncertainty or 0.0), rnd[c.key]))
    unknown = sorted((c for c in cands if c.uncertainty is None), key=lambda c: rnd[c.key])
    return [(c.key, float(c.uncertainty) if c.uncertainty is not None else None) for c in known] + [(c.key, None) for c in unknown]


def _diversity(cands: Sequence[Candidate], labelled: Sequence[np.ndarray], seed: int | str) -> list[tuple[Hashable, float | None]]:
    rnd = {c.key: random_key(seed, c.key) for c in cands}
    known = sorted((c for c in cands if c.embedding is not None), key=lambda c: rnd[c.key])
    unknown = sorted((c for c in cands if c.embedding is None), key=lambda c: rnd[c.key])
    out: list[tuple[Hashable, float | None]] = []
    if known:
        x = np.stack([np.asarray(c.embedding, np.float32).ravel() for c in known])
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if labelled:
            ref = np.stack([np.asarray(v, np.float32).ravel() for v in labelled])
            ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
            nearest = (1.0 - x @ ref.T).min(axis=1)
        else:
            centre = x.mean(axis=0)
            centre /= max(float(np.linalg.norm(centre)), 1e-12)
            nearest = 1.0 - x @ centre
        left = np.ones(len(known), bool)
        for _ in range(len(known)):
            masked = np.where(left, nearest, -np.inf)
            i = int(np.argmax(masked))  # ties: the first in random order
            out.append((known[i].key, float(max(nearest[i], 0.0))))
            left[i] = False
            nearest = np.minimum(nearest, 1.0 - x @ x[i])
    return out + [(c.key, None) for c in unknown]


def _ranks(order: Sequence[tuple[Hashable, float | None]]) -> dict[Hashable, float]:
    scored = [k for k, s in order if s is not None]
    n = len(scored)
    return {k: 1.0 - i / max(n - 1, 1) for i, k in enumerate(scored)} if n > 1 else {k: 1.0 for k in scored}


def order_cases(strategy: Strategy | str, candidates: Sequence[Candidate], labelled: Sequence[np.ndarray] = (),
                seed: int | str = 0) -> list[tuple[Hashable, float | None]]:
    """The offering order of ``candidates`` under ``strategy`` with each case's score (see the module docstring).

    Args:
        strategy: ``random``, ``uncertainty``, ``diversity`` or ``mix``.
        candidates: The unreviewed cases (empty: empty order).
        labelled: Retrieval vectors of the cases reviewed so far (diversity and mix).
        seed: The project's seed for the random order and ties.

    Raises:
        ConfigError: Unknown strategy name (the valid ones listed).
    """
    strategy = Strategy.parse(strategy)
    if not candidates:
        return []
    if strategy is Strategy.RANDOM:
        return list(_random(candidates, seed))
    if strategy is Strategy.UNCERTAINTY:
        return _uncertainty(candidates, seed)
    if strategy is Strategy.DIVERSITY:
        return _diversity(candidates, labelled, seed)
    u_rank, d_rank = _ranks(_uncertainty(candidates, seed)), _ranks(_diversity(candidates, labelled, seed))
    rnd: Mapping[Hashable, float] = {c.key: random_key(seed, c.key) for c in candidates}
    mixed: list[tuple[Hashable, float | None]] = []
    for c in candidates:
        parts = [r[c.key] for r in (u_rank, d_rank) if c.key in r]
        mixed.append((c.key, float(np.mean(parts)) if parts else None))
    return sorted(mixed, key=lambda kv: (kv[1] is None, -(kv[1] or 0.0), rnd[kv[0]]))
