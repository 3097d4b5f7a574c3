"""How often a streaming chat sends its growing reply to the page.

Every update costs the one server process about a millisecond of Gradio's work (postprocess,
diff, the SSE message) on its one event loop, however little text it adds. One stream at 10
updates a second is smooth and cheap; 50 streams at 10 a second kept that loop half busy, and
every new chat's first token queued behind those updates. So the open streams share a budget of
updates per second: each gets an equal share, never more than `fastest_s` nor less than
`slowest_s` apart. The first token of a reply always goes at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class FramePacer:
    """Shares `per_second` page updates among the streams open now (see the module docstring)."""

    def __init__(self, per_second: float = 200.0, fastest_s: float = 0.1, slowest_s: float = 0.5):
        if not 0 <= fastest_s <= slowest_s or per_second <= 0:
            raise ValueError("need per_second > 0 and 0 <= fastest_s <= slowest_s")
        self.per_second, self.fastest_s, self.slowest_s = per_second, fastest_s, slowest_s
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open_streams(self) -> int:
        return self._open

    def interval(self) -> float:
        """Seconds between one stream's updates, with the streams open now."""
        return min(max(self._open / self.per_second, self.fastest_s), self.slowest_s)

    @contextmanager
    def stream(self) -> Iterator[Clock]:
        """One stream, counted while the block runs (however it ends)."""
        with self._lock:
            self._open += 1
        try:
            yield Clock(self)
        finally:
            with self._lock:
                self._open -= 1


class Clock:
    """One stream's side of the pacer: `due()` says whether to send an update now."""

    def __init__(self, pacer: FramePacer):
        self._pacer = pacer
        self._sent: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._sent is None or now - self._sent >= self._pacer.interval():
            self._sent = now
            return True
        return False
