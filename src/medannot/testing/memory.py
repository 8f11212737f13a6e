"""Peak resident memory of a block of code, for the benchmarks (psutil, sampled in a thread).

``with PeakRSS() as m: work()`` then ``m.extra`` (bytes above the level at entry), ``m.extra_mib`` or ``m.peak``
(the process's peak resident size, bytes). :func:`measure` wraps one call and its wall time. Sampling every 5 ms
misses allocations that live shorter than that; the last sample is taken at exit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psutil

__all__ = ["PeakRSS", "measure"]

T = TypeVar("T")


class PeakRSS:
    """Peak resident memory (bytes) while the ``with`` block runs, sampled every ``interval`` seconds.

    Attributes:
        start: Resident size at entry (bytes).
        peak: Largest resident size seen (bytes), at least ``start``.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.proc = psutil.Process(os.getpid())
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def extra(self) -> int:
        """Peak above the resident size at entry (bytes)."""
        return self.peak - self.start

    @property
    def extra_mib(self) -> float:
        """:attr:`extra` in MiB."""
        return self.extra / 2**20


def measure(fn: Callable[[], T], interval: float = 0.005) -> tuple[T, float, PeakRSS]:
    """Run ``fn``; return its result, its wall time (s) and the :class:`PeakRSS` of the call."""
    with PeakRSS(interval) as mem:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    return out, dt, mem
