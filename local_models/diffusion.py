"""Text-to-image with a diffusers pipeline (the SD-Turbo class by default)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL.Image import Image

from adapters.types import ImageParams
from local_models import recipe
from local_models.device import Placement, placement


class TextToImage:
    def __init__(self, pipe: Any, where: Placement):
        self.pipe = pipe
        self.placement = where
        # A pipeline keeps per-call state (its scheduler's timesteps): one generation at a time.
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: Path) -> TextToImage:
        where = placement()
        (pipeline_class,) = recipe.TEXT_TO_IMAGE.load()
        pipe = pipeline_class.from_pretrained(path, **{recipe.diffusers_dtype_arg(): where.dtype}).to(where.device)
        pipe.set_progress_bar_config(disable=True)  # progress goes to on_step, not to the server log
        return cls(pipe, where)

    def generate(self, prompt: str, params: ImageParams, on_step: Callable[[int, int], None]) -> list[Image]:
        """Images for `prompt`; the same seed and parameters give the same pixels.

        The noise comes from a CPU generator, so a seed also reproduces across CPU and GPU.
        """
        if params.seed is None:
            raise ValueError("seed must be set: the caller picks one so that it can be shown and reused.")
        steps = params.steps

        def step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_step(step + 1, steps)
            return tensors

        extra: dict[str, Any] = {}
        if params.guidance > 1 and params.negative_prompt:
            extra["negative_prompt"] = params.negative_prompt  # without guidance it has no effect
        with self._lock, torch.inference_mode():
            result = self.pipe(
                prompt=prompt,
                num_inference_steps=steps,
                width=params.width,
                height=params.height,
                guidance_scale=params.guidance,
                generator=torch.Generator("cpu").manual_seed(params.seed),
                callback_on_step_end=step_end,
                **extra,
            )
        return list(result.images)
