"""Input checks shared by every provider: each raises `BadInput` naming what is wrong and what
to do, so that no provider has to validate (or forget to)."""

from __future__ import annotations

import base64
import io
import math
import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from adapters.errors import BadInput, ProviderError
from adapters.types import CompletionParams, EditMode, ImageParams, Message

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # a 8000 x 5000 photo; decompression bombs are far larger
MAX_IMAGE_SIDE = 2048  # larger images are scaled down: every model here works at or below it
LARGE_IMAGE_PIXELS = 8_000_000  # decoding one takes ~100-400 MB: only a few at once, whoever sends them
_large_decodes = threading.BoundedSemaphore(2)
MAX_CONVERSATION_CHARS = 200_000
MAX_PROMPT_CHARS = 10_000
MAX_LABELS = 100
MAX_LABEL_CHARS = 200
MAX_TEXTS = 50_000
MAX_TEXT_CHARS = 100_000
ROLES = ("system", "user", "assistant")


def load_image(image: Any) -> Image:
    """An RGB PIL image from a PIL image, an array or a file path; never decodes a bomb."""
    from PIL import Image as PILImage

    img = _decode(image)
    if img.mode != "RGB":
        img = _to_rgb(img, PILImage)
    return _within_max_side(img)


def _decode(image: Any) -> Image:
    """A PIL image, upright and within the pixel limit, in its own mode, from what `load_image` takes."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    if image is None or (isinstance(image, str) and not image.strip()):
        raise BadInput("No image was given: upload an image (PNG, JPEG, WebP or GIF) first.")
    if isinstance(image, PILImage.Image):
        img = image
    elif hasattr(image, "__array_interface__"):
        img = _from_array(image, PILImage)
    elif isinstance(image, (str, os.PathLike)):
        img = _open_image_file(os.fspath(image), PILImage, UnidentifiedImageError)
    else:
        raise BadInput(f"Expected an image, got {type(image).__name__}: upload a PNG, JPEG, WebP or GIF file.")
    _check_pixels(img.size)
    return ImageOps.exif_transpose(img) or img


def _within_max_side(img: Image) -> Image:
    if max(img.size) > MAX_IMAGE_SIDE:
        img = img.copy()
        img.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return img


def _from_array(array: Any, PILImage) -> Image:
    shape: tuple[int, ...] = tuple(getattr(array, "shape", ()))
    if len(shape) >= 2:
        _check_pixels((int(shape[1]), int(shape[0])))
    try:
        return PILImage.fromarray(array)
    except (TypeError, ValueError):
        raise BadInput(
            f"An image array of shape {tuple(shape)} and type {getattr(array, 'dtype', '?')} cannot be read: "
            "send height x width x 3 values of type uint8."
        ) from None


def _open_image_file(path: str, PILImage, UnidentifiedImageError) -> Image:
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
    except OSError:
        raise BadInput(f"The image file '{name}' could not be read: upload it again.") from None
    if size > MAX_IMAGE_BYTES:
        raise BadInput(
            f"The image file '{name}' is {size / 2**20:.1f} MB; the limit is {MAX_IMAGE_BYTES // 2**20} MB. "
            "Upload a smaller image."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img = PILImage.open(path)
            try:
                _check_pixels(img.size)  # before any pixel is decoded
                if img.size[0] * img.size[1] > LARGE_IMAGE_PIXELS:
                    with _large_decodes:  # decoded and scaled down at once, in its own mode (before RGB)
                        img.load()
                        img.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
                else:
                    img.load()
            except BaseException:
                img.close()  # a refused or broken image keeps no file open
                raise
    except BadInput:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise BadInput(
            f"'{name}' has more pixels than the {MAX_IMAGE_PIXELS // 1_000_000} megapixel limit: "
            "upload a smaller image."
        ) from None
    except UnidentifiedImageError:
        raise BadInput(f"'{name}' is not an image this app can read: upload a PNG, JPEG, WebP or GIF file.") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise BadInput(
            f"The image file '{name}' is corrupt or truncated: upload it again or try another image."
        ) from None
    return img


def _check_pixels(size: tuple[int, int]) -> None:
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise BadInput(
            f"The image is {w} x {h} pixels, more than the {MAX_IMAGE_PIXELS // 1_000_000} megapixel limit: "
            "upload a smaller image."
        )
    if w < 1 or h < 1:
        raise BadInput("The image is empty (0 pixels): upload another image.")


def _to_rgb(img: Image, PILImage) -> Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def check_labels(labels: Sequence[str] | str | None, minimum: int = 2) -> list[str]:
    """Candidate labels from a list or a comma/newline separated string: `minimum` or more, distinct
    (2 to choose between; 1 where texts are only embedded)."""
    if labels is None:
        labels = []
    if isinstance(labels, str):
        labels = re.split(r"[,\n]", labels)
    if not all(isinstance(label, str) for label in labels):
        raise BadInput("Labels must be text: give candidate labels separated by commas, e.g. 'cat, dog'.")
    seen: dict[str, str] = {}
    for label in labels:
        label = " ".join(label.split())
        if label and label.casefold() not in seen:
            seen[label.casefold()] = label
    out = list(seen.values())
    if len(out) < minimum:
        if minimum == 1:
            raise BadInput("No text was given to embed: type at least one.")
        raise BadInput(
            f"Zero-shot classification needs at least two distinct candidate labels (got {len(out)}): "
            "separate them with commas, e.g. 'a cat, a dog, a car'."
        )
    if len(out) > MAX_LABELS:
        raise BadInput(f"Too many labels ({len(out)}); the limit is {MAX_LABELS}.")
    long = [label for label in out if len(label) > MAX_LABEL_CHARS]
    if long:
        raise BadInput(f"The label '{long[0][:40]}...' is longer than {MAX_LABEL_CHARS} characters: shorten it.")
    return out


def normalise_scores(labels: list[str], raw: Any) -> tuple[tuple[str, float], ...]:
    """(label, score) pairs summing to 1, best first, from one score per label (list or dict)."""
    if isinstance(raw, dict):
        raw = [raw.get(label, 0.0) for label in labels]
    scores = [float(s) for s in raw]
    if len(scores) != len(labels) or not all(math.isfinite(s) and s >= 0 for s in scores):
        raise ProviderError(f"The model returned unusable scores ({len(scores)} for {len(labels)} labels).")
    total = sum(scores)
    if total <= 0:
        scores, total = [1.0] * len(labels), float(len(labels))
    pairs = [(label, s / total) for label, s in zip(labels, scores, strict=False)]
    return tuple(sorted(pairs, key=lambda p: -p[1]))


def check_messages(messages: Sequence[Message] | None) -> list[Message]:
    if not messages:
        raise BadInput("The prompt is empty: type a message first.")
    out: list[Message] = []
    total = 0
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise BadInput("Each message needs a role (system, user or assistant) and text content.")
        total += len(m["content"])
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "user" or not out[-1]["content"].strip():
        raise BadInput("The prompt is empty: type a message first.")
    if total > MAX_CONVERSATION_CHARS:
        raise BadInput(
            f"The conversation is {total:,} characters long; the limit is {MAX_CONVERSATION_CHARS:,}. "
            "Clear the chat or shorten the prompt."
        )
    return out


def check_completion_params(params: CompletionParams) -> CompletionParams:
    _check_range("max_tokens", params.max_tokens, 1, 32_768, integer=True)
    _check_range("temperature", params.temperature, 0.0, 2.0)
    _check_range("top_p", params.top_p, 0.0, 1.0)
    if params.top_p == 0:
        raise BadInput("top_p must be above 0 (got 0): use 1.0 to disable nucleus sampling.")
    if params.seed is not None:
        _check_range("seed", params.seed, 0, 2**32 - 1, integer=True)
    return replace(params, max_tokens=int(params.max_tokens), seed=None if params.seed is None else int(params.seed))


def check_prompt(prompt: str | None) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("The prompt is empty: describe what you want first.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadInput(f"The prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}.")
    return prompt.strip()


def check_optional_prompt(prompt: str | None) -> str | None:
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        return None
    return check_prompt(prompt)


def check_image_params(params: ImageParams) -> ImageParams:
    _check_range("steps", params.steps, 1, 100, integer=True)
    for name in ("width", "height"):
        value = getattr(params, name)
        _check_range(name, value, 64, 2048, integer=True)
        if int(value) % 8:
            raise BadInput(f"{name} must be a multiple of 8 (got {value}): try {int(value) // 8 * 8}.")
    _check_range("guidance", params.guidance, 0.0, 30.0)
    if not isinstance(params.negative_prompt or "", str) or len(params.negative_prompt or "") > MAX_PROMPT_CHARS:
        raise BadInput(f"The negative prompt must be text of at most {MAX_PROMPT_CHARS:,} characters.")
    if params.seed is not None:
        _check_range("seed", params.seed, 0, 2**32 - 1, integer=True)
    return replace(
        params,
        steps=int(params.steps),
        width=int(params.width),
        height=int(params.height),
        negative_prompt=(params.negative_prompt or "").strip(),
        seed=None if params.seed is None else int(params.seed),
    )


def check_texts(texts: Sequence[str] | str | None) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise BadInput("There is no text to embed: give at least one passage.")
    out = list(texts)
    if len(out) > MAX_TEXTS:
        raise BadInput(f"Too many texts to embed at once ({len(out):,}); the limit is {MAX_TEXTS:,}.")
    for i, text in enumerate(out):
        if not isinstance(text, str) or not text.strip():
            raise BadInput(f"Text {i + 1} is empty: every passage to embed needs some text.")
        if len(text) > MAX_TEXT_CHARS:
            raise BadInput(f"Text {i + 1} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}: split it.")
    return out


def check_embed_kind(kind: str) -> str:
    if kind not in ("document", "query"):
        raise BadInput(f"kind must be 'document' or 'query' (got {kind!r}).")
    return kind


def normalise_rows(chunks: list[Any], expected_rows: int) -> np.ndarray:
    """Stack per-batch vectors into one float32 matrix with L2-normalised rows."""
    import numpy as np

    try:
        matrix = np.vstack([np.asarray(c, dtype=np.float32).reshape(len(c), -1) for c in chunks])
    except (ValueError, TypeError):
        raise ProviderError("The model returned embeddings of inconsistent shape.") from None
    if matrix.shape[0] != expected_rows or not np.isfinite(matrix).all():
        raise ProviderError(f"The model returned {matrix.shape[0]} usable embeddings for {expected_rows} texts.")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def _check_range(name: str, value: Any, low: float, high: float, integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, float) and integer and value.is_integer():
        ok_type = True
    if isinstance(value, bool) or not ok_type:
        kind = "a whole number" if integer else "a number"
        raise BadInput(f"{name} must be {kind} between {low} and {high} (got {value!r}).")
    if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
        raise BadInput(f"{name} must be between {low} and {high} (got {value}).")


# --- image editing (`ImageGenerator.edit`) ------------------------------------------------------

EDIT_MULTIPLE = 8  # every side of an edited image is a multiple of this (latent diffusion works in 8x8 blocks)
MIN_EDIT_SIDE = 64  # as for generation (`check_image_params`)
MIN_UPSCALE_SIDE = 16  # upscaling small images is the point
MAX_EDIT_SIDE = 2048  # of the result, after upscaling or outpainting, as for generation
EDIT_SCALES = (2, 4)
MAX_OUTPAINT_PAD = 1024  # pixels added on one side
MASK_ASPECT_TOLERANCE = 0.01  # a mask this close to the image's shape is scaled to it


def check_edit_mode(mode: Any) -> EditMode:
    try:
        return EditMode(getattr(mode, "value", mode))
    except ValueError:
        choices = ", ".join(m.value for m in EditMode)
        raise BadInput(f"Unknown edit mode {str(mode)[:40]!r}: choose one of {choices}.") from None


def check_strength(strength: Any) -> float:
    """How much of the image is repainted: above 0 (0 would change nothing) and at most 1 (all of it)."""
    _check_range("strength", strength, 0.0, 1.0)
    if strength <= 0:
        raise BadInput("strength must be above 0 (got 0, which changes nothing): try 0.3 for a light touch.")
    return float(strength)


def check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale not in EDIT_SCALES:
        raise BadInput(f"scale must be {' or '.join(map(str, EDIT_SCALES))} (got {scale!r}).")
    return int(scale)


def check_pad(pad: Any) -> tuple[int, int, int, int]:
    """Outpainting's border as (left, top, right, bottom) pixels, from one number for every side or four;
    each is rounded up to a multiple of 8 so that the canvas stays one."""
    sides = (pad,) * 4 if isinstance(pad, (int, float)) and not isinstance(pad, bool) else pad
    if not isinstance(sides, (list, tuple)) or len(sides) != 4:
        raise BadInput("pad must be a number of pixels, or four: (left, top, right, bottom).")
    for value in sides:
        _check_range("pad", value, 0, MAX_OUTPAINT_PAD, integer=True)
    rounded = tuple(-(-int(v) // EDIT_MULTIPLE) * EDIT_MULTIPLE for v in sides)
    if not any(rounded):
        raise BadInput("Outpainting needs a border: set pad to the pixels to add on at least one side.")
    return rounded[0], rounded[1], rounded[2], rounded[3]


def edit_canvas(image: Image, mask: Image | None = None, min_side: int = MIN_EDIT_SIDE) -> tuple[Image, Image | None]:
    """The image (and mask) an edit works on: sides cut down to multiples of 8 (at most 7 pixel columns or rows
    go, at the right and bottom, so every other pixel keeps its place) and at least `min_side` long."""
    w, h = (side // EDIT_MULTIPLE * EDIT_MULTIPLE for side in image.size)
    if min(w, h) < min_side:
        raise BadInput(
            f"The image is {image.width} x {image.height} pixels; this edit needs at least {min_side} on each side: "
            "upload a larger image."
        )
    if (w, h) == image.size:
        return image, mask
    if mask is not None:
        mask = mask.crop((0, 0, w, h))
        if mask.getbbox() is None:
            raise BadInput("The mask's white area is only in the last pixels, which are cut off: paint it wider.")
    return image.crop((0, 0, w, h)), mask


def load_mask(mask: Any, size: tuple[int, int]) -> Image:
    """The inpainting mask as a black-and-white ("L") image of `size`: white (at least mid grey) is repainted,
    black is kept. A transparent pixel counts as black, so white strokes on a transparent layer are a mask.

    A mask of another size is scaled to the image (nearest pixel) when its shape matches within 1%;
    otherwise it was not drawn on this image and is refused.
    """
    from PIL import Image as PILImage
    from PIL import ImageChops

    if mask is None or (isinstance(mask, str) and not mask.strip()):
        raise BadInput("Inpainting needs a mask: paint the area to repaint in white (the rest black).")
    try:
        img = _decode(mask)
    except BadInput as err:
        raise BadInput(f"The mask cannot be used: {err}") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        grey = ImageChops.multiply(rgba.convert("L"), rgba.getchannel("A"))  # over black
    else:
        grey = img.convert("L")
    if grey.size != size:
        (mw, mh), (w, h) = grey.size, size
        if abs((mw / mh) / (w / h) - 1) > MASK_ASPECT_TOLERANCE:
            raise BadInput(
                f"The mask is {mw} x {mh} pixels and the image {w} x {h}: draw the mask on this image "
                "(a mask is scaled to the image only when their shapes match)."
            )
        grey = grey.resize(size, PILImage.Resampling.NEAREST)
    binary = grey.point(lambda v: 255 if v >= 128 else 0)
    if binary.getbbox() is None:
        raise BadInput("The mask is all black, so nothing would change: paint the area to repaint in white.")
    return binary


def png_bytes(image: Image) -> bytes:
    """The image as PNG bytes: lossless, for edits (pixels outside a mask must come back as they went) and masks."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


JPEG_QUALITY = 90  # far smaller than PNG for photos, and every vendor's image input reads it


def jpeg_bytes(image: Image) -> bytes:
    """The image as JPEG bytes, the one encoding every vendor adapter sends."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def jpeg_data_uri(image: Image) -> str:
    """The image as a JPEG `data:` URI, for APIs that take images inside JSON."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(image)).decode("ascii")
