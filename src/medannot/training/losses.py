"""Segmentation losses by name (MONAI implementations).

Every loss takes logits ``(N, K, *spatial)`` and integer targets ``(N, 1, *spatial)``
with values 0..K-1; softmax and one-hot encoding are done inside.
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss

from medannot.errors import ConfigError
from medannot.training.config import LossName

__all__ = ["LossName", "build_loss"]


class _CrossEntropy(torch.nn.Module):
    """Cross-entropy on ``(N, 1, *spatial)`` integer targets."""

    def __init__(self) -> None:
        super().__init__()
        self.ce = torch.nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target[:, 0].long())


def build_loss(name: LossName | str) -> torch.nn.Module:
    """Create the loss ``name`` (``dice``, ``ce``, ``dice_ce``, ``focal``, ``dice_focal``).

    Raises:
        ConfigError: On an unknown name; the valid names are listed.
    """
    try:
        key = LossName(name)
    except ValueError:
        raise ConfigError(f"unknown loss {name!r}; expected one of: {', '.join(v.value for v in LossName)}") from None
    if key is LossName.DICE:
        return DiceLoss(to_onehot_y=True, softmax=True)
    if key is LossName.CE:
        return _CrossEntropy()
    if key is LossName.DICE_CE:
        return DiceCELoss(to_onehot_y=True, softmax=True)
    if key is LossName.FOCAL:
        return FocalLoss(to_onehot_y=True, use_softmax=True)
    return DiceFocalLoss(to_onehot_y=True, softmax=True)
