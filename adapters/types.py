"""Small frozen value types shared by every task: tasks, parameters, results.

Results carry what the UI and the run log need: the output, which provider and model made it,
how long it took, and token usage / estimated cost when known.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and PIL are only needed by callers that hold real results
    import numpy as np
    from PIL.Image import Image


class Task(enum.StrEnum):
    COMPLETION = "completion"
    ZERO_SHOT = "zero-shot"
    CAPTIONING = "captioning"
    IMAGE_GENERATION = "image-generation"
    EMBEDDINGS = "embeddings"

    @property
    def title(self) -> str:  # type: ignore[override]  # deliberately shadows str.title with the task's display name
        return _TITLES[self]


_TITLES = {
    Task.COMPLETION: "Completion / chat",
    Task.ZERO_SHOT: "Zero-shot image classification",
    Task.CAPTIONING: "Captioning",
    Task.IMAGE_GENERATION: "Image generation",
    Task.EMBEDDINGS: "Embeddings",
}


class EditMode(enum.StrEnum):
    """How `ImageGenerator.edit` changes an image (which ones a provider serves: its `edit_modes`)."""

    IMAGE_TO_IMAGE = "image-to-image"  # repaint the whole image from it, as far as `strength` says
    INPAINT = "inpaint"  # repaint the mask's white area only
    OUTPAINT = "outpaint"  # extend the canvas and paint the new border (an inpaint of the padded image)
    UPSCALE = "upscale"  # 2x or 4x the pixels with an upscaling model

    @property
    def title(self) -> str:  # type: ignore[override]  # deliberately shadows str.title with the mode's display name
        return _EDIT_TITLES[self]


_EDIT_TITLES = {
    EditMode.IMAGE_TO_IMAGE: "Image to image",
    EditMode.INPAINT: "Inpainting",
    EditMode.OUTPAINT: "Outpainting",
    EditMode.UPSCALE: "Upscaling",
}

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class CompletionParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class ImageParams:
    steps: int = 1
    width: int = 512
    height: int = 512
    guidance: float = 0.0
    negative_prompt: str = ""
    seed: int | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    images: int | None = None


def chat_usage(usage: Any) -> Usage | None:
    """Usage from an OpenAI-style chat `usage` object (prompt_tokens, completion_tokens), or None."""
    if not usage:
        return None
    return Usage(
        input_tokens=getattr(usage, "prompt_tokens", None), output_tokens=getattr(usage, "completion_tokens", None)
    )


def total_usage(*parts: Usage | None) -> Usage | None:
    """The sum of several usages; a count no part knows stays unknown (None), as does the sum of none."""
    known = [u for u in parts if u is not None]
    if not known:
        return None

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in known if getattr(u, name) is not None]
        return sum(values) if values else None

    return Usage(input_tokens=total("input_tokens"), output_tokens=total("output_tokens"), images=total("images"))


@dataclass(frozen=True)
class Finish:
    """A completion stream event: why generation stopped ("stop", "length", ...)."""

    reason: str | None


@dataclass(frozen=True, kw_only=True)
class Result:
    provider: str
    model: str
    latency_s: float
    usage: Usage | None = None
    cost_usd: float | None = None
    served_by: str | None = None  # the backend that actually served it, where reported


@dataclass(frozen=True, kw_only=True)
class Completion(Result):
    text: str
    ttft_s: float | None = None
    finish_reason: str | None = None
    cut: str | None = None  # why the stream broke off, if it did; `text` is what arrived


@dataclass(frozen=True, kw_only=True)
class Classification(Result):
    scores: tuple[tuple[str, float], ...]  # (label, score), best first, summing to 1
    calibrated: bool = True  # False where scores are a model's stated guess, not probabilities

    @property
    def best(self) -> str:
        return self.scores[0][0]


@dataclass(frozen=True, kw_only=True)
class Caption(Result):
    text: str


@dataclass(frozen=True, kw_only=True, eq=False)
class GeneratedImages(Result):
    images: tuple[Image, ...]
    seed: int | None = None


@dataclass(frozen=True, kw_only=True, eq=False)
class Embeddings(Result):
    vectors: np.ndarray = field(repr=False)  # float32, shape (n, dim), rows L2-normalised
