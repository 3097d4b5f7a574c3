"""Where local models run: CUDA with half precision when present, else CPU with float32."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda" or "cpu"
    dtype: Any  # a torch dtype

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def placement() -> Placement:
    """`FMG_DEVICE=cpu` forces the CPU; otherwise CUDA (float16) whenever it is available."""
    import torch

    from local_models import threads

    threads.apply_to_torch()  # every torch runner places its model here first
    wanted = os.environ.get("FMG_DEVICE", "").strip().lower()
    if wanted != "cpu" and torch.cuda.is_available():
        return Placement("cuda", torch.float16)
    return Placement("cpu", torch.float32)


class Slot:
    """`capacity` turns on the device, given to interactive callers before background ones.

    A background call (an evaluation's) waits while any interactive call waits, so a chat or a
    search that arrives during a long evaluation runs next, not after every queued evaluation
    call; callers of one kind get turns in no set order, as with a semaphore.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._free = capacity
        self._waiting = {False: 0, True: 0}  # background? -> callers waiting
        self._changed = threading.Condition()

    @property
    def held(self) -> int:
        """Turns held now."""
        with self._changed:
            return self.capacity - self._free

    @contextmanager
    def turn(self, background: bool = False) -> Iterator[None]:
        with self._changed:
            self._waiting[background] += 1
            try:
                while self._free == 0 or (background and self._waiting[False]):
                    self._changed.wait()
                self._free -= 1
            finally:
                self._waiting[background] -= 1
                self._changed.notify_all()  # an interactive caller stopped waiting: background ones may go
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify_all()


_slots: Slot | None = None
_slots_lock = threading.Lock()


def _device_slot() -> Slot:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = Slot(max(1, int(os.environ.get("FMG_LOCAL_CONCURRENCY", "1"))))
        return _slots


def turns_held() -> int:
    """Local model calls on the device now (0 once every call has given its turn back)."""
    return _device_slot().held


def slot(background: bool = False) -> AbstractContextManager[None]:
    """A turn on the device: local model calls take turns (`FMG_LOCAL_CONCURRENCY`, default 1), so a
    GPU is not oversubscribed whichever tab they come from, and interactive calls go before
    `background` ones (an evaluation's). Use as `with slot(background): ...`."""
    return _device_slot().turn(background)
