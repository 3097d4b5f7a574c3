"""Where local models run: CUDA with half precision when present, else CPU with float32."""

from __future__ import annotations

import os
import threading
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

    wanted = os.environ.get("FMG_DEVICE", "").strip().lower()
    if wanted != "cpu" and torch.cuda.is_available():
        return Placement("cuda", torch.float16)
    return Placement("cpu", torch.float32)


_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def slot() -> threading.BoundedSemaphore:
    """The device slot: local model calls take turns (`FMG_LOCAL_CONCURRENCY`, default 1), so a
    GPU is not oversubscribed whichever tab they come from. Use as `with slot(): ...`."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(max(1, int(os.environ.get("FMG_LOCAL_CONCURRENCY", "1"))))
        return _slots
