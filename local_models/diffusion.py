"""Text-to-image with a diffusers pipeline (the SD-Turbo class by default), the edits made with the same
loaded weights (image-to-image, inpainting), and upscaling with a separately configured model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL.Image import Image

from adapters.errors import BadInput, ProviderUnavailable
from adapters.types import ImageParams
from local_models import recipe
from local_models.device import Placement, placement

StepCallback = Callable[[int, int], None]


class TextToImage:
    def __init__(self, pipe: Any, where: Placement):
        self.pipe = pipe
        self.placement = where
        # A pipeline keeps per-call state (its scheduler's timesteps), and the edit pipelines share the
        # scheduler with it: one call at a time, whichever pipeline makes it.
        self._lock = threading.Lock()
        self._derived: dict[str, Any] = {}  # recipe class name -> a pipeline sharing self.pipe's components

    @classmethod
    def from_pretrained(cls, path: Path) -> TextToImage:
        where = placement()
        (pipeline_class,) = recipe.TEXT_TO_IMAGE.load()
        pipe = pipeline_class.from_pretrained(path, **{recipe.diffusers_dtype_arg(): where.dtype}).to(where.device)
        pipe.set_progress_bar_config(disable=True)  # progress goes to on_step, not to the server log
        return cls(pipe, where)

    def generate(self, prompt: str, params: ImageParams, on_step: StepCallback) -> list[Image]:
        """Images for `prompt`; the same seed and parameters give the same pixels.

        The noise comes from a CPU generator, so a seed also reproduces across CPU and GPU.
        """
        with self._lock:
            return self._run(
                self.pipe,
                prompt,
                params,
                on_step,
                num_inference_steps=params.steps,
                width=params.width,
                height=params.height,
            )

    def image_to_image(
        self, prompt: str, image: Image, params: ImageParams, strength: float, on_step: StepCallback
    ) -> list[Image]:
        """`image` repainted after `prompt`, `strength` of the way from it (1: from pure noise); same size."""
        return self._edit(recipe.IMAGE_TO_IMAGE, prompt, params, strength, on_step, image=image)

    def inpaint(
        self, prompt: str, image: Image, mask: Image, params: ImageParams, strength: float, on_step: StepCallback
    ) -> list[Image]:
        """`image` with the white area of `mask` repainted after `prompt`; same size. Pixels outside the mask
        pass through the autoencoder, so they come back close to, not exactly, the originals."""
        size = {"width": image.width, "height": image.height}  # else the pipeline's default size
        return self._edit(recipe.INPAINTING, prompt, params, strength, on_step, image=image, mask_image=mask, **size)

    def _edit(
        self,
        classes: recipe.Classes,
        prompt: str,
        params: ImageParams,
        strength: float,
        on_step: StepCallback,
        **inputs: Any,
    ) -> list[Image]:
        """Run an edit pipeline so that `params.steps` denoising steps run (`recipe.schedule_steps`)."""
        schedule = recipe.schedule_steps(params.steps, strength)
        limit = getattr(self.pipe.scheduler.config, "num_train_timesteps", None)
        if limit is not None and schedule > limit:
            raise BadInput(
                f"strength {strength:g} is too low for {params.steps} steps (the model's schedule has {limit}): "
                "raise the strength or lower the steps."
            )
        with self._lock:
            pipe = self._pipeline(classes)
            return self._run(pipe, prompt, params, on_step, num_inference_steps=schedule, strength=strength, **inputs)

    def _pipeline(self, classes: recipe.Classes) -> Any:
        """The edit pipeline of `classes` over the loaded weights, made once (the caller holds the lock)."""
        if classes.model not in self._derived:
            (auto,) = classes.load()
            try:
                pipe = auto.from_pipe(self.pipe)
            except ValueError as err:  # diffusers has no such pipeline for this model family
                raise ProviderUnavailable(
                    f"diffusers has no {classes.model.removeprefix('AutoPipelineFor')} pipeline for "
                    f"{type(self.pipe).__name__}: configure a Stable Diffusion model for image editing."
                ) from err
            pipe.set_progress_bar_config(disable=True)
            self._derived[classes.model] = pipe
        return self._derived[classes.model]

    def _run(self, pipe: Any, prompt: str, params: ImageParams, on_step: StepCallback, **inputs: Any) -> list[Image]:
        if params.seed is None:
            raise ValueError("seed must be set: the caller picks one so that it can be shown and reused.")
        steps = params.steps

        def step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_step(step + 1, steps)
            return tensors

        with torch.inference_mode():
            result = pipe(
                prompt=prompt,
                guidance_scale=params.guidance,
                generator=torch.Generator("cpu").manual_seed(params.seed),
                callback_on_step_end=step_end,
                **_negative(params),
                **inputs,
            )
        return list(result.images)


class Upscaler:
    """2x or 4x upscaling with a diffusers upscaling pipeline (`recipe.UPSCALERS`), guided by a prompt."""

    def __init__(self, pipe: Any, where: Placement, factor: int):
        self.pipe = pipe
        self.placement = where
        self.factor = factor
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: Path, factor: int = 4) -> Upscaler:
        where = placement()
        (pipeline_class,) = recipe.UPSCALERS[factor].load()
        pipe = pipeline_class.from_pretrained(path, **{recipe.diffusers_dtype_arg(): where.dtype}).to(where.device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, where, factor)

    def upscale(self, prompt: str, image: Image, params: ImageParams, on_step: StepCallback) -> list[Image]:
        """`image` with `factor` times the pixels on each side. It is padded (edge pixels drawn outwards) to
        multiples of `recipe.UPSCALE_MULTIPLE` for the model, and the result cut back to the image."""
        if params.seed is None:
            raise ValueError("seed must be set: the caller picks one so that it can be shown and reused.")
        steps = params.steps

        def step_end(step: int, timestep: Any, latents: Any) -> None:  # these pipelines' older callback
            on_step(step + 1, steps)

        padded = _pad_to_multiple(image, recipe.UPSCALE_MULTIPLE)
        with self._lock, torch.inference_mode():
            result = self.pipe(
                prompt=prompt,
                image=padded,
                num_inference_steps=steps,
                guidance_scale=params.guidance,
                generator=torch.Generator("cpu").manual_seed(params.seed),
                callback=step_end,
                callback_steps=1,
                **_negative(params),
            )
        size = (image.width * self.factor, image.height * self.factor)
        return [out if out.size == size else out.crop((0, 0, *size)) for out in result.images]


def _negative(params: ImageParams) -> dict[str, Any]:
    if params.guidance > 1 and params.negative_prompt:
        return {"negative_prompt": params.negative_prompt}  # without guidance it has no effect
    return {}


def _pad_to_multiple(image: Image, multiple: int) -> Image:
    import numpy as np
    from PIL import Image as PILImage

    right, bottom = (-side % multiple for side in image.size)
    if not right and not bottom:
        return image
    pixels = np.pad(np.asarray(image.convert("RGB")), ((0, bottom), (0, right), (0, 0)), mode="edge")
    return PILImage.fromarray(pixels)
