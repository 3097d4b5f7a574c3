"""One instance per model, loaded on first use, even when the first calls are concurrent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

_models: dict[Hashable, object] = {}
_locks: dict[Hashable, threading.Lock] = {}
_guard = threading.Lock()


def load(key: Hashable, factory: Callable[[], T]) -> T:
    """Return the model cached under `key`, calling `factory()` once to build it if needed.

    Concurrent first callers of one key wait for a single load; different keys load in parallel.
    A failed load is not cached, so the next call tries again.
    """
    try:
        return _models[key]  # type: ignore[return-value]
    except KeyError:
        pass
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _models:
            _models[key] = factory()
        return _models[key]  # type: ignore[return-value]


def loaded() -> list[Hashable]:
    return list(_models)


def unload(key: Hashable | None = None) -> None:
    """Forget one model (or all): its memory is freed once no caller holds it."""
    with _guard:
        if key is None:
            _models.clear()
        else:
            _models.pop(key, None)
