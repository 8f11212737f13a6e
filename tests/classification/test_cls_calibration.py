"""Temperature scaling: fitted on one half of over-confident logits, it lowers the NLL on the other half, keeps the arg-max."""

import numpy as np
import pytest

from medannot.errors import InputError
from medannot.training.calibration import calibration_summary, cross_fitted_probabilities, ece, fit_temperature, nll, temperature_probabilities


def _overconfident(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a 70 %-accurate model that is far too sure (scaled by 6)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k))
    right = rng.random(n) < 0.7
    z[np.arange(n), np.where(right, y, (y + 1) % k)] += 2.0
    return 6.0 * z, y


def test_temperature_lowers_held_out_nll_and_keeps_argmax():
    fit_logits, fit_y = _overconfident(400, 4, seed=0)
    test_logits, test_y = _overconfident(400, 4, seed=1)
    t = fit_temperature(fit_logits, fit_y)
    assert t > 2.0  # over-confident logits get softened
    assert nll(test_logits, test_y, t) < 0.7 * nll(test_logits, test_y, 1.0)
    p1, pt = temperature_probabilities(test_logits, 1.0), temperature_probabilities(test_logits, t)
    np.testing.assert_array_equal(p1.argmax(1), pt.argmax(1))
    np.testing.assert_allclose(pt.sum(1), 1.0)
    assert ece(test_y, pt) < ece(test_y, p1)


def test_fitted_temperature_is_the_nll_minimum():
    logits, y = _overconfident(300, 3, seed=2)
    t = fit_temperature(logits, y)
    grid = np.exp(np.linspace(-3, 3, 601))
    best = grid[np.argmin([nll(logits, y, g) for g in grid])]
    assert t == pytest.approx(best, rel=0.02)


def test_cross_fitted_uses_the_other_groups_only():
    logits, y = _overconfident(200, 3, seed=3)
    groups = ["a"] * 100 + ["b"] * 100
    probs, temps = cross_fitted_probabilities(logits, y, groups)
    assert temps["a"] == pytest.approx(fit_temperature(logits[100:], y[100:]))
    np.testing.assert_allclose(probs[:100], temperature_probabilities(logits[:100], temps["a"]))
    s = calibration_summary(logits, y, groups)
    assert s["nll_after"] <= s["nll_before"] and s["ece_after"] <= s["ece_before"]


def test_empty_or_mismatched_input_is_refused():
    with pytest.raises(InputError, match="temperature scaling needs"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(InputError):
        fit_temperature(np.zeros((4, 3)), np.zeros(3))
