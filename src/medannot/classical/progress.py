"""Progress of a classical method's long steps, shown on a terminal and nowhere else.

A 3D volume can keep a watershed or a region growing busy for minutes; :class:`Progress` shows one status line
on stderr (``watershed: flooding from 812 markers [00:41]``) that changes as the method moves from step to step.
It shows only when the stream is a terminal, so logs, pipes and tests get nothing.
"""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["Progress"]


class Progress:
    """One status line for one run of a classical method.

    Args:
        method: The method's name (the line starts with it).
        show: False: never show (``--quiet``); True: show when ``stream`` is a terminal.
        stream: Where the line goes (default stderr).

    Example:
        >>> with Progress("otsu", show=True) as progress:  # doctest: +SKIP
        ...     progress.step("smoothing")
    """

    def __init__(self, method: str, show: bool = True, stream: IO[str] | None = None) -> None:
        self.method = method
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(show and callable(isatty) and isatty())
        self.steps: list[str] = []
        self._bar: Any = None

    def step(self, what: str) -> None:
        """Start the step ``what`` (words for a person: "smoothing", "iteration 2 of 4")."""
        self.steps.append(what)
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=None, desc=self.method, file=self.stream, leave=False, dynamic_ncols=True,
                             bar_format="{desc} [{elapsed}]")
        self._bar.update(1)
        self._bar.set_description_str(f"{self.method}: {what}", refresh=True)  # at once, whatever tqdm's refresh interval

    def close(self) -> None:
        """Clear the line (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def step_of(progress: Progress | None) -> Any:
    """``progress.step``, or a function that does nothing when there is no progress to show."""
    return progress.step if progress is not None else (lambda what: None)
