"""One wall-clock budget for the scorer's own work: every regex search and JSON-schema check of a
cell draws on the cell's budget, and every cell's on its evaluation's.

Each regex search already stops after `REGEX_TIMEOUT_S`, but a schema may hold many patterns and
an evaluation many cells: a 501-character schema repeating one slow pattern 20 times cost 27 s of
CPU for one cell, and again when the cell was answered from the cache. Here the time a scorer step
takes is charged to a `Meter` held in a context variable (each cell runs on one thread); a step
that finds its meter, or its evaluation's, spent does not start, and its verdict says it took too
long. Vendor calls (a judge's, an embedder's) are not scorer time and are not charged.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

CELL_S = 2.0  # scorer time for one cell (every sample, verifier, pattern and schema step of it)
MIN_STEP_S = 0.01  # a step with less than this left does not start: the budget is spent


class Meter:
    """Seconds left, shared by the threads that charge it; a child also charges its parent."""

    def __init__(self, seconds: float, parent: Meter | None = None) -> None:
        self._left = float(seconds)
        self._parent = parent
        self._lock = threading.Lock()
        self.spent = 0.0  # seconds charged so far

    def left(self) -> float:
        own = self._left
        return own if self._parent is None else min(own, self._parent.left())

    def charge(self, seconds: float) -> None:
        with self._lock:
            self._left -= seconds
            self.spent += seconds
        if self._parent is not None:
            self._parent.charge(seconds)


_meter: ContextVar[Meter | None] = ContextVar("fmg_scoring_meter", default=None)


@contextmanager
def metered(seconds: float, parent: Meter | None = None) -> Iterator[Meter]:
    """Scorer steps inside the block draw on a new meter of `seconds` (and on `parent`)."""
    meter = Meter(seconds, parent)
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


def left() -> float:
    """Seconds the current scorer step may take (infinite outside any meter), less what the
    charged step it runs inside has taken so far."""
    meter = _meter.get()
    if meter is None:
        return math.inf
    started = _charging.get()
    return meter.left() - (time.perf_counter() - started if started is not None else 0.0)


_charging: ContextVar[float | None] = ContextVar("fmg_scoring_charging", default=None)  # the outer step's start


def spent() -> bool:
    """Whether the current meter (or its evaluation's) has too little left for another step."""
    return left() < MIN_STEP_S


@contextmanager
def charged() -> Iterator[None]:
    """Charge the block's wall time to the current meter (once: a step inside a charged step,
    a schema's pattern, say, is part of the outer step's time)."""
    meter = _meter.get()
    if meter is None or _charging.get() is not None:
        yield
        return
    start = time.perf_counter()
    token = _charging.set(start)
    try:
        yield
    finally:
        _charging.reset(token)
        meter.charge(time.perf_counter() - start)
