"""Temperature scaling (Guo et al. 2017): one scalar ``T`` so that ``softmax(logits / T)`` is calibrated.

``T`` minimises the negative log-likelihood of held-out labels (SciPy bounded scalar search over
``log T`` in [-3, 3], i.e. ``T`` in [0.05, 20]). It never changes the arg-max, only the confidence.
The calibration error is the top-label ECE of :func:`medannot.evaluation.classification.reliability_diagram`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from medannot.errors import InputError

__all__ = ["fit_temperature", "nll", "temperature_probabilities", "cross_fitted_probabilities", "ece"]


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of integer labels ``y`` under ``softmax(logits / temperature)``."""
    lp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-lp[np.arange(len(y)), np.asarray(y, int)].mean())


def temperature_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)`` (float64, rows sum to 1)."""
    return softmax(np.asarray(logits, np.float64) / float(temperature), axis=1)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the NLL of ``y`` (integer class indices) given ``logits`` (N, K).

    Raises:
        InputError: No samples, or logits and labels of different lengths.
    """
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y, int)
    if logits.ndim != 2 or len(logits) == 0 or len(logits) != len(y):
        raise InputError(f"temperature scaling needs (N, K) logits and N labels, got {logits.shape} and {y.shape}")
    res = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))), bounds=(-3.0, 3.0), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def cross_fitted_probabilities(logits: np.ndarray, y: np.ndarray, groups: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """Probabilities where each group's temperature was fitted on the *other* groups only (leave-one-group-out).

    An honest estimate of calibrated confidence on unseen sources (fitting and scoring on the same samples
    flatters the result). With a single group, its own fit is used.

    Returns:
        ``(probabilities (N, K), {group: temperature})``.
    """
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y, int)
    g = np.asarray(groups)
    out = np.zeros_like(logits)
    temps: dict[str, float] = {}
    for name in sorted(set(groups)):
        inside = g == name
        fit_on = ~inside if (~inside).any() else inside
        temps[name] = fit_temperature(logits[fit_on], y[fit_on])
        out[inside] = temperature_probabilities(logits[inside], temps[name])
    return out, temps


def ece(y: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> float:
    """Top-label expected calibration error (equal-width bins), via :mod:`medannot.evaluation.classification`."""
    from medannot.evaluation.classification import reliability_diagram

    k = prob.shape[1]
    return float(reliability_diagram(np.asarray(y, int), prob, n_bins=n_bins, labels=list(range(k)))["ece"])


def calibration_summary(logits: np.ndarray, y: np.ndarray, groups: list[str], n_bins: int = 10) -> dict[str, Any]:
    """Temperature fitted on all of ``logits``, and the ECE and NLL before, after (same data) and cross-fitted."""
    t = fit_temperature(logits, y)
    before = temperature_probabilities(logits, 1.0)
    after = temperature_probabilities(logits, t)
    crossed, temps = cross_fitted_probabilities(logits, y, groups)
    return {
        "temperature": t,
        "ece_before": ece(y, before, n_bins),
        "ece_after": ece(y, after, n_bins),
        "ece_cross_fitted": ece(y, crossed, n_bins),
        "nll_before": nll(logits, y, 1.0),
        "nll_after": nll(logits, y, t),
        "cross_fit_temperatures": temps,
        "n_bins": n_bins,
    }
