"""The fixed per-project validation split.

A case's side is decided once, when it is first accepted, and never changes: it validates when the project has
fewer validation cases than ``ceil(val_fraction * accepted)`` (counting it), else it trains. The first accepted
case therefore validates, and the share of validation cases stays at ``val_fraction`` (rounded up) as cases come
in. Validation cases never train, so every version of a project is measured on cases none of them saw.
"""

from __future__ import annotations

import enum
import math

__all__ = ["Side", "assign_side"]


class Side(enum.StrEnum):
    """Which side of the split a case is on."""

    TRAIN = "train"
    VAL = "val"


def assign_side(accepted_before: int, val_before: int, val_fraction: float) -> Side:
    """The side of a newly accepted case.

    Args:
        accepted_before: Cases of the project that already have a side.
        val_before: How many of them validate.
        val_fraction: The project's share of validation cases (0..1, exclusive).

    Returns:
        :attr:`Side.VAL` when ``val_before < ceil(val_fraction * (accepted_before + 1))``, else :attr:`Side.TRAIN`.
    """
    wanted = math.ceil(val_fraction * (accepted_before + 1) - 1e-9)
    return Side.VAL if val_before < wanted else Side.TRAIN
