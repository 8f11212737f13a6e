"""Training callbacks: early stopping on a validation score, TensorBoard scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["EarlyStopping", "TensorBoardLogger"]


class EarlyStopping:
    """Track the best validation score (higher is better) and say when to stop.

    Args:
        patience: Validations without improvement before stopping; None never stops.
        min_delta: Improvement smaller than this does not count.
    """

    def __init__(self, patience: int | None, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best: float = float("-inf")
        self.best_epoch: int = -1
        self.bad: int = 0

    def update(self, score: float, epoch: int) -> bool:
        """Record ``score`` of ``epoch``; True if it is the best so far."""
        if score > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad = float(score), int(epoch), 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` validations in a row did not improve."""
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad = float(state["best"]), int(state["best_epoch"]), int(state["bad"])


class TensorBoardLogger:
    """Scalars to TensorBoard (``torch.utils.tensorboard``); a no-op when ``log_dir`` is None."""

    def __init__(self, log_dir: Path | None) -> None:
        self._writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(log_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
