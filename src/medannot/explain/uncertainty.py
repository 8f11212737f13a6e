"""Per-voxel uncertainty of a segmentation: softmax entropy, optional Monte-Carlo dropout, per-case summary.

- Entropy ``H = -sum_k p_k ln p_k`` in nats (natural log, as :func:`scipy.stats.entropy`), from 0 (certain) to
  ``ln K``; *normalised* entropy divides by ``ln K`` (0..1). ``0 ln 0 = 0``.
- Monte-Carlo dropout (Gal & Ghahramani 2016): the network's dropout layers stay active at inference and the
  softmax is averaged over ``n`` passes; the per-voxel variance of the label's probability is reported. Only for
  networks that have dropout with p > 0 (others give identical passes: refused with a clear error).
- Summary per case: mean normalised entropy over the image and inside the predicted foreground, per label, and
  the fraction of voxels above the ``threshold`` (default 0.5) of normalised entropy. An empty foreground gives
  None for the "inside" values (never a silent 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medannot.errors import ModelError

__all__ = ["softmax_entropy", "mc_dropout_probabilities", "uncertainty_summary", "MCDropoutNetwork"]


def softmax_entropy(probabilities: np.ndarray, normalised: bool = False) -> np.ndarray:
    """Entropy (nats) of class probabilities along axis 0.

    Args:
        probabilities: ``(K, *spatial)`` probabilities (each voxel sums to 1), K >= 2.
        normalised: Divide by ``ln K`` so the result lies in [0, 1].

    Returns:
        ``(*spatial)`` float32 entropy.
    """
    p = np.asarray(probabilities, dtype=np.float32)
    if p.shape[0] < 2:
        raise ModelError(f"entropy needs at least 2 class probabilities per voxel, got {p.shape[0]}")
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    h = -plogp.sum(axis=0)
    if normalised:
        h /= np.log(p.shape[0])
    return np.clip(h, 0.0, None).astype(np.float32)


class MCDropoutNetwork(torch.nn.Module):
    """Wraps a network so that its dropout layers stay active even in eval mode (batch norm stays in eval).

    Raises:
        ModelError: If the network has no dropout layer with p > 0.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        from medannot.models.classification import has_dropout

        super().__init__()
        if not has_dropout(network):
            raise ModelError("Monte-Carlo dropout needs a network with dropout (p > 0); this model has none: use entropy only")
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.network.modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                m.train()
        return self.network(x)


def mc_dropout_probabilities(predictor: Any, array: np.ndarray, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the softmax over ``n`` Monte-Carlo dropout passes of a :class:`~medannot.inference.Predictor`.

    Args:
        predictor: A predictor whose network has dropout (its network is wrapped, not changed).
        array: Preprocessed channel-first array (the predictor's working grid).
        n: Number of passes (>= 2).
        seed: Torch seed for the dropout masks (reproducible).

    Returns:
        ``(mean (K, *spatial), variance (K, *spatial))`` float32.

    Raises:
        ModelError: No dropout in the network, or ``n < 2``.
    """
    from medannot.inference.predictor import Predictor

    if n < 2:
        raise ModelError(f"Monte-Carlo dropout needs at least 2 passes, got {n}")
    mc = Predictor(predictor.bundle, network=MCDropoutNetwork(predictor.network), tta=False)
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        runs = [mc.network_probabilities(array) for _ in range(n)]
    finally:
        torch.set_rng_state(gen_state)
    stack = np.stack(runs)
    return stack.mean(axis=0).astype(np.float32), stack.var(axis=0).astype(np.float32)


def uncertainty_summary(entropy_norm: np.ndarray, labels: np.ndarray, label_names: dict[int, str], threshold: float = 0.5,
                        variance: np.ndarray | None = None) -> dict[str, Any]:
    """Per-case summary of a normalised entropy map (see the module docstring).

    Args:
        entropy_norm: ``(*spatial)`` normalised entropy in [0, 1].
        labels: ``(*spatial)`` predicted label map on the same grid.
        label_names: Label value -> name (0 = background).
        threshold: Voxels above this normalised entropy count as uncertain.
        variance: Optional Monte-Carlo dropout variance of the predicted label's probability (``(*spatial)``).

    Returns:
        ``mean_entropy``, ``mean_entropy_in_mask``, ``uncertain_fraction``, ``uncertain_fraction_in_mask``,
        ``uncertain_voxels``, ``threshold``, ``per_label`` ({name: {"mean_entropy", "uncertain_fraction"}}),
        and ``mc_dropout_mean_variance`` (+ in mask) when ``variance`` is given.
    """
    e = np.asarray(entropy_norm, np.float64)
    lab = np.asarray(labels)
    mask = lab > 0
    unc = e > threshold

    def inside(values: np.ndarray, m: np.ndarray) -> float | None:
        return float(values[m].mean()) if m.any() else None

    out: dict[str, Any] = {
        "threshold": float(threshold),
        "mean_entropy": float(e.mean()),
        "mean_entropy_in_mask": inside(e, mask),
        "uncertain_fraction": float(unc.mean()),
        "uncertain_fraction_in_mask": inside(unc.astype(np.float64), mask),
        "uncertain_voxels": int(unc.sum()),
        "per_label": {
            name: {"mean_entropy": inside(e, lab == value), "uncertain_fraction": inside(unc.astype(np.float64), lab == value)}
            for value, name in sorted(label_names.items()) if value != 0
        },
    }
    if variance is not None:
        v = np.asarray(variance, np.float64)
        out["mc_dropout_mean_variance"] = float(v.mean())
        out["mc_dropout_mean_variance_in_mask"] = inside(v, mask)
    return out
