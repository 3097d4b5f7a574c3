"""Image captioning with BLIP or a vision-encoder-decoder model (e.g. ViT-GPT2).

The two families differ only in how they are loaded, prompted and decoded, so each is a small
class with the same three methods (`load`, `inputs`, `decode`); `ImageCaptioner` picks one from
the saved config's `model_type` and runs the generation, which is the same for both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL.Image import Image
from transformers import AutoConfig

from local_models import recipe
from local_models.device import Placement, placement


@dataclass
class _Blip:
    """BLIP: an optional prompt is a text prefix that the caption continues (and repeats)."""

    model: Any
    processor: Any

    @classmethod
    def load(cls, path: Path, where: Placement) -> _Blip:
        model_class, processor_class = recipe.CAPTION_FAMILIES["blip"].load()
        model = model_class.from_pretrained(path, dtype=where.dtype)
        return cls(model.to(where.device).eval(), processor_class.from_pretrained(path))

    def inputs(self, image: Image, prompt: str | None) -> dict[str, Any]:
        return dict(self.processor(images=image, text=prompt, return_tensors="pt"))

    def decode(self, ids: torch.Tensor) -> str:
        return self.processor.decode(ids, skip_special_tokens=True)


@dataclass
class _VisionEncoderDecoder:
    """ViT-GPT2 and the like: caption only, no text prompt."""

    model: Any
    image_processor: Any
    tokenizer: Any

    @classmethod
    def load(cls, path: Path, where: Placement) -> _VisionEncoderDecoder:
        model_class, image_processor_class, tokenizer_class = recipe.CAPTION_FAMILIES["vision-encoder-decoder"].load()
        model = model_class.from_pretrained(path, dtype=where.dtype)
        model = model.to(where.device).eval()
        return cls(model, image_processor_class.from_pretrained(path), tokenizer_class.from_pretrained(path))

    def inputs(self, image: Image, prompt: str | None) -> dict[str, Any]:
        return {"pixel_values": self.image_processor(images=image, return_tensors="pt")["pixel_values"]}

    def decode(self, ids: torch.Tensor) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


FAMILIES: dict[str, type[_Blip] | type[_VisionEncoderDecoder]] = {
    "blip": _Blip,
    "vision-encoder-decoder": _VisionEncoderDecoder,
}


class ImageCaptioner:
    def __init__(self, family: _Blip | _VisionEncoderDecoder, where: Placement):
        self.family = family
        self.placement = where
        self._lock = threading.Lock()  # a fast tokenizer must not be used by two threads at once

    @classmethod
    def from_pretrained(cls, path: Path) -> ImageCaptioner:
        model_type = AutoConfig.from_pretrained(path).model_type
        if model_type not in FAMILIES:
            raise ValueError(f"{path} holds a {model_type!r} model; captioning runs {' or '.join(FAMILIES)} models.")
        where = placement()
        return cls(FAMILIES[model_type].load(path, where), where)

    def caption(self, image: Image, prompt: str | None = None) -> str:
        """A caption; with BLIP and a prompt, the prompt followed by its continuation."""
        with self._lock, torch.inference_mode():
            inputs = {name: self._place(value) for name, value in self.family.inputs(image, prompt).items()}
            ids = self.family.model.generate(**inputs, **recipe.CAPTION_GENERATION)
            return self.family.decode(ids[0]).strip()

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        """Onto the model's device; pixels also to its dtype (token ids stay integers)."""
        if tensor.is_floating_point():
            return tensor.to(self.placement.device, self.placement.dtype)
        return tensor.to(self.placement.device)
