"""Where local models run: CUDA with half precision when present, else CPU with float32."""

from __future__ import annotations

import os
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
