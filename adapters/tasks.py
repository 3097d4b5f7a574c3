"""One interface per task.

Each public method validates its input once, times the call and builds the frozen result; a
provider implements only the protected `_method` that talks to its backend. A provider module
therefore stays short and cannot forget validation, timing or normalisation.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from adapters import inputs
from adapters.errors import BadInput, FMError, ProviderUnavailable
from adapters.prices import estimate_cost
from adapters.types import (
    Caption,
    Classification,
    Completion,
    CompletionParams,
    EditMode,
    Embeddings,
    Finish,
    GeneratedImages,
    ImageParams,
    Message,
    Task,
    Usage,
    total_usage,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

StepCallback = Callable[[int, int], None]  # (step done, total steps)


@dataclass(frozen=True)
class Raw:
    """What a provider's `_method` may return instead of a bare value, to add metadata."""

    value: object
    usage: Usage | None = None
    served_by: str | None = None


StreamEvent = str | Usage | Finish | Raw  # text delta, token usage, finish reason, or Raw(None, usage, served_by)


class Adapter:
    """A model of one provider serving one task."""

    task: ClassVar[Task]
    api_key: str | None = None  # a key given for this session only; vendors fall back to the env

    def __init__(self, provider: str, model: str):
        self.provider = provider
        self.model = model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r})"

    def _prepare(self) -> None:
        """Make what every call needs (import the SDK, build the client) before the call's clock
        and deadline start: a call's latency is the provider's, never this process's start-up.
        Runs before each call, so it must be cheap once done; `registry.warm_up` runs it early."""

    def _meta(self, raw: object, started: float, usage: Usage | None = None) -> tuple[object, dict]:
        """Split a provider's return value into (value, common result fields)."""
        served_by = None
        if isinstance(raw, Raw):
            wrapped = raw
            raw, usage, served_by = wrapped.value, wrapped.usage or usage, wrapped.served_by
        return raw, {
            "provider": self.provider,
            "model": self.model,
            "latency_s": time.perf_counter() - started,
            "usage": usage,
            "cost_usd": estimate_cost(self.provider, self.model, usage),
            "served_by": served_by,
        }


class Completer(Adapter):
    task = Task.COMPLETION

    def stream(self, messages: Sequence[Message], params: CompletionParams | None = None) -> CompletionStream:
        messages = inputs.check_messages(messages)
        params = inputs.check_completion_params(params or CompletionParams())
        return CompletionStream(self, self._stream(messages, params))

    def complete(self, messages: Sequence[Message], params: CompletionParams | None = None) -> Completion:
        stream = self.stream(messages, params)
        for _ in stream:
            pass
        assert stream.result is not None  # set once the stream is read to its end
        return stream.result

    def _stream(self, messages: list[Message], params: CompletionParams) -> Iterator[StreamEvent]:
        raise NotImplementedError


class CompletionStream:
    """Iterate for text deltas; once iteration ends, `.result` is the whole `Completion`.

    A stream that breaks after some text arrived ends quietly: `.result.text` keeps what was
    received and `.result.cut` says why it stopped. A failure before any text is raised.
    """

    def __init__(self, adapter: Adapter, events: Iterable[StreamEvent]):
        self._adapter = adapter
        self._events = events
        self._started = time.perf_counter()
        self.result: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        ttft = usage = finish = cut = served_by = None
        try:
            self._adapter._prepare()
            self._started = time.perf_counter()  # the stream's clock starts once its client exists
            for event in self._events:
                if isinstance(event, str):
                    if not event:
                        continue
                    if ttft is None:
                        ttft = time.perf_counter() - self._started
                    parts.append(event)
                    yield event
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, Finish):
                    finish = event.reason
                elif isinstance(event, Raw):  # metadata, e.g. which backend is serving the stream
                    usage = event.usage or usage
                    served_by = event.served_by or served_by
        except FMError as err:
            if not parts:
                raise
            cut = str(err)
        finally:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        _, meta = self._adapter._meta(Raw(None, usage, served_by), self._started)
        self.result = Completion(text="".join(parts), ttft_s=ttft, finish_reason=finish, cut=cut, **meta)


MAX_EMBED_IMAGES = 256  # images per `embed_images` call: a larger set is sent in slices
EMBEDDING_CLASSIFIERS = "local CLIP or Cohere (embed-v4 / v3)"  # the zero-shot providers with `embeds`


class ZeroShotClassifier(Adapter):
    """Scores candidate labels for an image. Providers that work by embeddings (`embeds`) also give
    the image and label vectors they compare, so that a linear probe can run on the same model."""

    task = Task.ZERO_SHOT
    calibrated: ClassVar[bool] = True  # False where scores are not probabilities
    embeds: ClassVar[bool] = False  # True where `embed_images` / `embed_labels` work

    def classify(self, image: Image | str, labels: Sequence[str] | str) -> Classification:
        image = inputs.load_image(image)
        labels = inputs.check_labels(labels)
        self._prepare()
        started = time.perf_counter()
        raw, meta = self._meta(self._classify(image, labels), started)
        return Classification(scores=inputs.normalise_scores(labels, raw), calibrated=self.calibrated, **meta)

    def embed_images(self, images: Sequence[Image | str]) -> Embeddings:
        """One unit vector per image, in order: the features zero-shot compares with `embed_labels`,
        for a linear probe. At most `MAX_EMBED_IMAGES` images a call."""
        self._check_embeds()
        loaded = _load_images(images)
        self._prepare()
        started = time.perf_counter()
        raw, meta = self._meta(self._embed_images(loaded), started)
        return Embeddings(vectors=inputs.normalise_rows([raw], expected_rows=len(loaded)), **meta)

    def embed_labels(self, labels: Sequence[str]) -> Embeddings:
        """One unit vector per label, in order, with the prompt `classify` uses: zero-shot is the
        argmax of `embed_images(...).vectors @ embed_labels(...).vectors.T`."""
        self._check_embeds()
        checked = inputs.check_labels(labels, minimum=1)
        if not isinstance(labels, str) and len(checked) != len(labels):
            raise BadInput("Each label must be given once and not be empty: row i of the result embeds label i.")
        self._prepare()
        started = time.perf_counter()
        raw, meta = self._meta(self._embed_labels(checked), started)
        return Embeddings(vectors=inputs.normalise_rows([raw], expected_rows=len(checked)), **meta)

    def _check_embeds(self) -> None:
        if not self.embeds:
            raise ProviderUnavailable(
                f"The provider '{self.provider}' classifies without image embeddings, so it cannot give them: "
                f"pick {EMBEDDING_CLASSIFIERS} for image embeddings and the linear probe."
            )

    def _classify(self, image: Image, labels: list[str]) -> Sequence[float] | Raw:
        """Return one non-negative score per label, in the labels' order."""
        raise NotImplementedError

    def _embed_images(self, images: list[Image]) -> np.ndarray | Sequence[Sequence[float]] | Raw:
        """Return one vector per image, in order (any length: the caller normalises them)."""
        raise NotImplementedError

    def _embed_labels(self, labels: list[str]) -> np.ndarray | Sequence[Sequence[float]] | Raw:
        """Return one vector per label, in order, each embedded with the provider's zero-shot prompt."""
        raise NotImplementedError


def _load_images(images: Sequence[Image | str]) -> list[Image]:
    """Every image checked and decoded (`inputs.load_image`); a failure names the image's place."""
    if isinstance(images, (str, bytes)) or not isinstance(images, (list, tuple)):
        raise BadInput("Give the images to embed as a list (of images or file paths).")
    if not images:
        raise BadInput("There are no images to embed: give at least one.")
    if len(images) > MAX_EMBED_IMAGES:
        raise BadInput(f"Too many images to embed at once ({len(images):,}); the limit is {MAX_EMBED_IMAGES}.")
    loaded = []
    for i, image in enumerate(images):
        try:
            loaded.append(inputs.load_image(image))
        except BadInput as err:
            raise BadInput(f"Image {i + 1} of {len(images)}: {err}") from None
    return loaded


class Captioner(Adapter):
    task = Task.CAPTIONING

    def caption(self, image: Image | str, prompt: str | None = None) -> Caption:
        image = inputs.load_image(image)
        prompt = inputs.check_optional_prompt(prompt)
        self._prepare()
        started = time.perf_counter()
        raw, meta = self._meta(self._caption(image, prompt), started)
        return Caption(text=str(raw).strip(), **meta)

    def _caption(self, image: Image, prompt: str | None) -> str | Raw:
        raise NotImplementedError


EDIT_STRENGTH = 0.6  # image-to-image and inpainting: repaint a good part, keep the composition
OUTPAINT_PAD = 128  # pixels added on every side when outpainting is asked for without a border
OUTPAINT_OVERLAP = 8  # outpainting also repaints this many pixels of the image along each new border: no seam


class ImageGenerator(Adapter):
    """Makes images from a prompt (`generate`) and, where the provider can, changes given ones (`edit`)."""

    task = Task.IMAGE_GENERATION
    takes_seed: ClassVar[bool] = True  # False where the backend has no seed: the result says None
    # What `edit` can do here. Outpainting is the interface's own (pad, then inpaint): list it with INPAINT.
    edit_modes: ClassVar[frozenset[EditMode]] = frozenset()
    edit_takes_seed: ClassVar[bool | None] = None  # None: as `takes_seed`; False where the edit call has no seed

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if EditMode.OUTPAINT in cls.edit_modes and EditMode.INPAINT not in cls.edit_modes:
            raise TypeError(f"{cls.__name__} lists outpainting without inpainting, which outpainting runs on.")

    def generate(
        self, prompt: str, params: ImageParams | None = None, on_step: StepCallback | None = None
    ) -> GeneratedImages:
        prompt = inputs.check_prompt(prompt)
        params = inputs.check_image_params(params or ImageParams())
        if params.seed is None:
            params = _replace_seed(params, random.randrange(2**31))
        self._prepare()
        started = time.perf_counter()
        raw, meta = self._meta(self._generate(prompt, params, on_step or _no_progress), started)
        images = tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
        return GeneratedImages(images=images, seed=params.seed if self.takes_seed else None, **meta)

    def edit(
        self,
        prompt: str | None,
        image: Image | str,
        mode: EditMode | str,
        params: ImageParams | None = None,
        mask: Image | str | None = None,
        strength: float = EDIT_STRENGTH,
        scale: int = 2,
        on_step: StepCallback | None = None,
        *,
        pad: int | Sequence[int] = OUTPAINT_PAD,
    ) -> GeneratedImages:
        """Change `image` as `mode` says (an `EditMode` or its value):

        - "image-to-image": repaint it after `prompt`; `strength` (0-1] is how much (1: all of it);
        - "inpaint": repaint only the white area of `mask` (black is kept; see `inputs.load_mask`);
        - "outpaint": add `pad` pixels (one number, or left, top, right, bottom) around it and paint them
          (from noise: `strength` is not used), by inpainting the grown image (`outpaint_canvas`);
        - "upscale": `scale` (2 or 4) times the pixels on each side; the prompt may be empty.

        The result has the image's size (its sides cut to multiples of 8, `inputs.edit_canvas`), grown by the
        border or the scale; `params` gives steps, guidance, negative prompt and seed, and its width and height
        are not used. For image-to-image and inpainting `params.steps` is the denoising steps that run (and
        `on_step` counts), however many of them `strength` skips. Where the provider returns the image at its
        own size, inpainting and outpainting keep every pixel outside the mask exactly as it was.
        """
        mode = inputs.check_edit_mode(mode)
        strength = inputs.check_strength(strength)
        scale = inputs.check_scale(scale)
        border = inputs.check_pad(pad) if mode is EditMode.OUTPAINT else (0, 0, 0, 0)
        problem = self.edit_problem(mode, scale)
        if problem is not None:
            raise problem
        prompt = (
            (inputs.check_optional_prompt(prompt) or "") if mode is EditMode.UPSCALE else inputs.check_prompt(prompt)
        )
        params = inputs.check_image_params(params or ImageParams())
        if params.seed is None:
            params = _replace_seed(params, random.randrange(2**31))
        if mask is not None and mode is not EditMode.INPAINT:
            raise BadInput(
                f"A mask is used only for inpainting ({mode.title.lower()} was asked for): clear it or pick inpainting."
            )
        loaded = inputs.load_image(image)
        loaded_mask = inputs.load_mask(mask, loaded.size) if mode is EditMode.INPAINT else None
        smallest = inputs.MIN_UPSCALE_SIDE if mode is EditMode.UPSCALE else inputs.MIN_EDIT_SIDE
        canvas, canvas_mask = inputs.edit_canvas(loaded, loaded_mask, smallest)
        _check_edit_size(mode, canvas, scale, border)
        if mode is EditMode.OUTPAINT:
            canvas, canvas_mask = outpaint_canvas(canvas, border)
            strength = 1.0  # the new border has nothing to keep: it is painted from noise
        backend_mode = EditMode.INPAINT if mode is EditMode.OUTPAINT else mode
        self._prepare()
        started = time.perf_counter()
        step = on_step or _no_progress
        raw, meta = self._meta(
            self._edit(prompt, canvas, backend_mode, params, canvas_mask, strength, scale, step), started
        )
        images = tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
        if canvas_mask is not None:
            images = tuple(_keep_unmasked(out, canvas, canvas_mask) for out in images)
        takes_seed = self.takes_seed if self.edit_takes_seed is None else self.edit_takes_seed
        return GeneratedImages(images=images, seed=params.seed if takes_seed else None, **meta)

    def edit_problem(self, mode: EditMode | str, scale: int = 2) -> FMError | None:
        """Why this adapter cannot edit in `mode` now (a `ProviderUnavailable` naming who can), or None.
        A provider whose mode needs more than its class (the local upscaler's weights) says so here."""
        mode = inputs.check_edit_mode(mode)
        inputs.check_scale(scale)
        if mode in self.edit_modes:
            return None
        from adapters import registry  # (it imports this module)

        here = registry.providers().get(self.provider)
        label = here.label if here is not None else self.provider
        others = [p.label for p in registry.editors(mode) if p.name != self.provider]
        instead = f"pick {', '.join(others)}" if others else "no provider here can"
        return ProviderUnavailable(f"{label} cannot do {mode.title.lower()}: {instead}.")

    def _generate(self, prompt: str, params: ImageParams, on_step: StepCallback) -> Sequence[Image] | Raw:
        raise NotImplementedError

    def _edit(
        self,
        prompt: str,
        image: Image,
        mode: EditMode,
        params: ImageParams,
        mask: Image | None,
        strength: float,
        scale: int,
        on_step: StepCallback,
    ) -> Sequence[Image] | Raw:
        """Run one checked edit: `mode` is one of `edit_modes` but never OUTPAINT (it arrives as an INPAINT of
        the padded image); `mask` ("L", white = repaint, the image's size) is given for INPAINT only; `prompt`
        may be "" for UPSCALE only; `params.seed` is set."""
        raise NotImplementedError


def _check_edit_size(mode: EditMode, image: Image, scale: int, border: tuple[int, int, int, int]) -> None:
    """The result of an upscale or an outpaint stays within `inputs.MAX_EDIT_SIDE` on each side."""
    left, top, right, bottom = border
    if mode is EditMode.UPSCALE:
        w, h = image.width * scale, image.height * scale
        fits = max(image.size) * 2 <= inputs.MAX_EDIT_SIDE
        hint = "upscale 2x or use a smaller image" if scale == 4 and fits else "use a smaller image"
    else:
        w, h = image.width + left + right, image.height + top + bottom
        hint = "add a narrower border or use a smaller image"
    if max(w, h) > inputs.MAX_EDIT_SIDE:
        raise BadInput(
            f"The {mode.title.lower()} result would be {w} x {h} pixels; the limit is {inputs.MAX_EDIT_SIDE} "
            f"on each side: {hint}."
        )


def outpaint_canvas(image: Image, border: tuple[int, int, int, int]) -> tuple[Image, Image]:
    """The image on a canvas grown by `border` (left, top, right, bottom), with the mask to inpaint it by.

    The border starts as the image's edge pixels drawn outwards (a better start for the painter than a flat
    colour); the mask is white there and `OUTPAINT_OVERLAP` pixels into the image along each grown side.
    """
    import numpy as np
    from PIL import Image as PILImage

    left, top, right, bottom = border
    pixels = np.pad(np.asarray(image.convert("RGB")), ((top, bottom), (left, right), (0, 0)), mode="edge")
    canvas = PILImage.fromarray(pixels)
    mask = PILImage.new("L", canvas.size, 255)
    keep = (
        left + (OUTPAINT_OVERLAP if left else 0),
        top + (OUTPAINT_OVERLAP if top else 0),
        left + image.width - (OUTPAINT_OVERLAP if right else 0),
        top + image.height - (OUTPAINT_OVERLAP if bottom else 0),
    )
    mask.paste(0, keep)
    return canvas, mask


def _keep_unmasked(result: Image, original: Image, mask: Image) -> Image:
    """`result` with the original's pixels wherever the mask is black, when it came back at the same size."""
    from PIL import Image as PILImage

    if result.size != original.size:
        return result
    return PILImage.composite(result.convert("RGB"), original.convert("RGB"), mask)


class Embedder(Adapter):
    task = Task.EMBEDDINGS
    max_batch: ClassVar[int] = 64  # texts per backend call; larger inputs are split

    def embed(self, texts: Sequence[str] | str, kind: str = "document") -> Embeddings:
        texts = inputs.check_texts(texts)
        kind = inputs.check_embed_kind(kind)
        self._prepare()
        started = time.perf_counter()
        chunks, usage, served = [], None, set()
        for i in range(0, len(texts), self.max_batch):
            raw, meta = self._meta(self._embed(texts[i : i + self.max_batch], kind), started)
            chunks.append(raw)
            usage = total_usage(usage, meta["usage"])
            served.add(meta["served_by"])
        _, meta = self._meta(None, started, usage)
        meta["served_by"] = served.pop() if len(served) == 1 else None  # only when every batch agrees
        return Embeddings(vectors=inputs.normalise_rows(chunks, expected_rows=len(texts)), **meta)

    def _embed(self, texts: list[str], kind: str) -> np.ndarray | Sequence[Sequence[float]] | Raw:
        raise NotImplementedError


def _no_progress(step: int, total: int) -> None:
    pass


def _replace_seed(params: ImageParams, seed: int) -> ImageParams:
    return replace(params, seed=seed)
