"""Heavy work in public mode: building image sets and collections, running evaluations.

Such a request can hold a core for seconds or minutes, so a public Space runs at most one per
visitor and `heavy_jobs` in all (per process); another is refused at once with one sentence,
before anything is read or decoded. Private mode runs whatever the owner asks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from services import public
from services.quotas import LimitReached
from services.visitors import Visitor

_lock = threading.Lock()
_running: dict[str, str] = {}  # the visitor's quota key -> what they are running


@contextmanager
def slot(visitor: Visitor, what: str) -> Iterator[None]:
    """Hold one of the heavy slots for `what` (e.g. "image evaluation"), or raise LimitReached."""
    if not public.enabled():
        yield
        return
    limit = max(1, public.limits().heavy_jobs)
    with _lock:
        if visitor.quota_key in _running:
            raise LimitReached(
                f"Your {_running[visitor.quota_key]} is still running, and this public Space runs one such job "
                "at a time per visitor: wait for it to finish."
            )
        if len(_running) >= limit:
            raise LimitReached(
                f"This public Space is running {limit} image sets, collections or evaluations already: "
                "try again in a minute."
            )
        _running[visitor.quota_key] = what
    try:
        yield
    finally:
        with _lock:
            _running.pop(visitor.quota_key, None)
