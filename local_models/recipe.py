"""How the local runners load and call their models, stated once and importable without torch.

The runners read these (the classes they load a saved model with, their generation settings,
CLIP's label prompt), and the local provider (adapters/local.py) hands this module to its
Reproduce templates, so that a program loads the same classes with the same settings as the app
without a copy of either. Nothing here imports torch, transformers, diffusers or a runner.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Classes:
    """The classes a runner loads a saved model with: the model's first, then its processors."""

    library: str  # the importable module that holds them
    model: str
    processors: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.model, *self.processors)

    def load(self) -> list[Any]:
        """The classes themselves, in `names` order (this imports the library)."""
        module = importlib.import_module(self.library)
        return [getattr(module, name) for name in self.names]


CHAT = Classes("transformers", "AutoModelForCausalLM", ("AutoTokenizer",))
CLIP = Classes("transformers", "AutoModel", ("AutoProcessor",))
CAPTION_FAMILIES = {  # a saved captioning model's `model_type` -> its classes
    "blip": Classes("transformers", "BlipForConditionalGeneration", ("BlipProcessor",)),
    "vision-encoder-decoder": Classes(
        "transformers", "VisionEncoderDecoderModel", ("AutoImageProcessor", "AutoTokenizer")
    ),
}
DEFAULT_CAPTION_FAMILY = "blip"
TEXT_TO_IMAGE = Classes("diffusers", "AutoPipelineForText2Image")
# Edits reuse the loaded text-to-image pipeline's components (`from_pipe`: no second copy of the weights).
IMAGE_TO_IMAGE = Classes("diffusers", "AutoPipelineForImage2Image")
INPAINTING = Classes("diffusers", "AutoPipelineForInpainting")
UPSCALERS = {  # scale -> the pipeline of the separately configured upscaling model
    4: Classes("diffusers", "StableDiffusionUpscalePipeline"),
    2: Classes("diffusers", "StableDiffusionLatentUpscalePipeline"),
}
UPSCALE_MULTIPLE = 64  # upscaler inputs are padded to multiples of this (their UNets halve the size 3 times)
SENTENCE_EMBEDDINGS = Classes("sentence_transformers", "SentenceTransformer")

GGUF_N_CTX = 4096  # prompt + reply, in tokens; a larger context costs KV-cache memory for little use here
# Deterministic; a little beam search avoids greedy's "a dog with a dog with" loops.
CAPTION_GENERATION = {"max_new_tokens": 30, "num_beams": 3, "do_sample": False}


def clip_prompt(label: str) -> str:
    """CLIP was trained on captions: "a photo of {label}." scores better than a bare word.

    A label that already reads like a caption (ends with a full stop, or has four words or more)
    is used as written.
    """
    if label.rstrip().endswith((".", "!", "?")) or len(label.split()) >= 4:
        return label
    return f"a photo of {label}."


def schedule_steps(steps: int, strength: float) -> int:
    """The `num_inference_steps` to give an image-to-image or inpainting pipeline so that `steps` denoising
    steps run: diffusers runs only the last int(num_inference_steps * strength) of its schedule."""
    total = max(steps, math.ceil(steps / strength - 1e-9))
    while int(total * strength) < steps:  # float rounding
        total += 1
    return total


@functools.cache
def diffusers_dtype_arg() -> str:
    """diffusers 0.42 renamed `torch_dtype` to `dtype` (and warns about the old name on every load)."""
    from packaging.version import Version

    try:
        version = Version(importlib.metadata.version("diffusers"))
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return "torch_dtype"
    return "dtype" if version >= Version("0.42") else "torch_dtype"


def caption_family(ref: str) -> str:
    """The family (`CAPTION_FAMILIES` key) of the saved captioning model `ref` names, as its
    `config.json` says; the default family when its weights are not on this machine."""
    from local_models import weights

    try:
        path = weights.resolve(ref)
        return str(json.loads((path / "config.json").read_text()).get("model_type", DEFAULT_CAPTION_FAMILY))
    except Exception:  # noqa: BLE001 - weights not here or unreadable: the default family
        return DEFAULT_CAPTION_FAMILY


def gguf_extra_buffers_safe(ref: str) -> bool:
    """Does (or would) the app open this GGUF with llama.cpp's extra buffer types (`llama_open`)?"""
    from adapters.errors import FMError
    from local_models import llama_open, weights

    try:
        path = weights.resolve(ref)
    except FMError:
        return True  # no file to check: the plain program
    return llama_open.extra_buffers_are_safe(path)


def names_a_path(ref: str) -> bool:
    """Whether `ref` is a file or folder rather than a repo id or a packaged model (`weights`' rule)."""
    from local_models import weights

    return weights.names_a_path(ref)
