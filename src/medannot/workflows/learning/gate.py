"""The evaluation gate: does a candidate model replace the active one?

Both are measured on the same validation cases (the project's fixed validation split, at the time the candidate
trained). The candidate passes when its mean Dice is at least the active one's plus ``min_gain`` and no label's
Dice falls by more than ``max_label_drop`` (:class:`~medannot.workflows.learning.settings.GateRule`). Without an
active model (a project that started from nothing) the first candidate passes, the decision saying why.

Scores come from :func:`score_masks`: Dice per label value over the cases (medannot's empty rule: a label absent
from both the prediction and the truth of a case counts as Dice 1 for that case, one absent from only one as 0),
so a model that misses a label entirely is never rewarded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medannot.evaluation.metrics import dice
from medannot.workflows.learning.settings import GateRule

__all__ = ["GateDecision", "Scores", "decide", "score_masks"]


@dataclass
class Scores:
    """Dice of one model on a set of cases.

    Attributes:
        mean_dice: Mean of ``per_label`` (0.0 with no case).
        per_label: Label value (as a string) -> mean Dice over the cases.
        per_case: Case name -> {label value: Dice}.
    """

    mean_dice: float
    per_label: dict[str, float]
    per_case: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        """Inverse of :meth:`to_dict`."""
        return cls(float(data.get("mean_dice", 0.0)), {str(k): float(v) for k, v in (data.get("per_label") or {}).items()},
                   {str(k): dict(v) for k, v in (data.get("per_case") or {}).items()})


def score_masks(pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], label_values: Sequence[int]) -> Scores:
    """Dice per label value over ``(case, prediction, truth)`` label arrays (see the module docstring).

    An empty ``pairs`` gives mean Dice 0.0 and no labels.
    """
    per_case: dict[str, dict[str, float]] = {}
    for name, pred, truth in pairs:
        p, t = np.asarray(pred), np.asarray(truth)
        per_case[name] = {str(v): float(dice(p == v, t == v)) for v in label_values}
    per_label = {str(v): float(np.mean([c[str(v)] for c in per_case.values()])) for v in label_values} if per_case else {}
    mean = float(np.mean(list(per_label.values()))) if per_label else 0.0
    return Scores(mean, per_label, per_case)


@dataclass
class GateDecision:
    """Whether a candidate passed the gate, with the numbers and the reason.

    Attributes:
        passed: True when the candidate may become active.
        reason: One line saying why.
        candidate: The candidate's scores.
        active: The active model's scores on the same cases (None without an active model).
        rule: The rule applied.
    """

    passed: bool
    reason: str
    candidate: Scores
    active: Scores | None
    rule: GateRule

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the candidate version)."""
        return {"passed": self.passed, "reason": self.reason, "candidate": self.candidate.to_dict(),
                "active": None if self.active is None else self.active.to_dict(), "rule": self.rule.model_dump()}


def decide(candidate: Scores, active: Scores | None, rule: GateRule) -> GateDecision:
    """Apply ``rule`` to a candidate's and the active model's scores on the same validation cases."""
    if active is None:
        return GateDecision(True, f"no active model to compare with; candidate mean Dice {candidate.mean_dice:.4f}",
                            candidate, None, rule)
    needed = active.mean_dice + rule.min_gain
    if candidate.mean_dice < needed - 1e-12:
        return GateDecision(False, f"mean Dice {candidate.mean_dice:.4f} is below the active model's {active.mean_dice:.4f}"
                            + (f" + {rule.min_gain:g}" if rule.min_gain else ""), candidate, active, rule)
    for label, before in sorted(active.per_label.items()):
        after = candidate.per_label.get(label, 0.0)
        if after < before - rule.max_label_drop - 1e-12:
            return GateDecision(False, f"label {label}: Dice {after:.4f} falls by {before - after:.4f} from {before:.4f} "
                                f"(at most {rule.max_label_drop:g} allowed)", candidate, active, rule)
    return GateDecision(True, f"mean Dice {candidate.mean_dice:.4f} vs active {active.mean_dice:.4f}; no label falls by more "
                        f"than {rule.max_label_drop:g}", candidate, active, rule)
