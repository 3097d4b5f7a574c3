"""The "openai" provider, and any number of OpenAI-compatible servers side by side.

Every task goes through the official `openai` SDK (imported only when a call is made):

| task | endpoint |
|---|---|
| completion | `chat.completions.create(stream=True, stream_options={"include_usage": True})` |
| captioning | `chat.completions.create` with the image as a JPEG data URI in an `image_url` part |
| zero-shot | the same vision chat, asked for JSON scores per label (not calibrated probabilities) |
| image generation | `images.generate(n=1, size="WxH")`; edits: `images.edit` (PNG upload, mask by alpha) |
| embeddings | `embeddings.create(input=texts)` |

OpenAI-compatible servers (Ollama, vLLM, llama.cpp, LM Studio, ...) are named in the config file,
each becoming its own provider that shares these adapter classes::

    [openai_compatible.ollama]
    label = "Ollama (this machine)"
    base_url = "http://localhost:11434/v1"
    # api_key_env = "OLLAMA_API_KEY"   # optional: without it a placeholder key is sent
    [openai_compatible.ollama.models]
    completion = "llama3.2"
    captioning = "llava"

A base URL comes only from the environment (`OPENAI_BASE_URL`) or that file, never from the
browser: a key typed in the browser must not be sent to a server the browser chose.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import io
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import compat
from adapters import config, faults, inputs, keys
from adapters.clients import ClientCache
from adapters.errors import (
    BadInput,
    FMError,
    ProviderError,
    ProviderUnavailable,
)
from adapters.registry import Provider
from adapters.tasks import Adapter, Captioner, Completer, Embedder, ImageGenerator, Raw, ZeroShotClassifier
from adapters.types import CompletionParams, EditMode, Finish, ImageParams, Task, Usage, chat_usage

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger("fm_gallery.openai")
T = TypeVar("T")

NAME = "openai"
LABEL = "OpenAI"
KEY_VAR = "OPENAI_API_KEY"
BASE_URL_VAR = "OPENAI_BASE_URL"
OFFICIAL_BASE_URL = "https://api.openai.com/v1"
PACKAGE = "openai"  # the importable SDK (and the pip package of the same name)
NO_KEY = "no-key-needed"  # the SDK insists on some key; keyless servers (Ollama) ignore it
CONFIG_TABLE = "openai_compatible"
TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")
CUT_OFF_ERRORS = ("RemoteProtocolError", "ReadError")  # the HTTP library's: a reply broken off mid-way

CAPTION_PROMPT = "Describe this image in one sentence."
CAPTION_MAX_TOKENS = 300


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one OpenAI-style server; the adapters read everything from here."""

    name: str  # the provider name
    label: str  # what the UI and messages call it
    key_var: str | None  # env var holding the key; None: the server needs no key
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI's own API (read per call)
    token_param: str | None = None  # "max_tokens" / "max_completion_tokens"; None: chosen by URL
    models: Mapping[Task, str] = field(default_factory=dict)  # configured defaults per task
    problem: str | None = None  # why this configuration cannot be used, shown in the picker

    def url(self) -> str:
        return self.base_url or keys.from_env(BASE_URL_VAR) or OFFICIAL_BASE_URL

    def env_key(self) -> str | None:
        return keys.from_env(self.key_var) if self.key_var else NO_KEY

    def max_tokens_param(self) -> str:
        """OpenAI's API wants `max_completion_tokens` (reasoning models reject `max_tokens`);
        compatible servers (Ollama, llama.cpp, older vLLM) know only `max_tokens`."""
        if self.token_param:
            return self.token_param
        official = urlsplit(self.url()).hostname == urlsplit(OFFICIAL_BASE_URL).hostname
        return "max_completion_tokens" if official else "max_tokens"

    def key_hint(self) -> str:
        """What a rejected key message tells the user to check."""
        if self.key_var:
            return self.key_var
        return f"api_key_env in [{CONFIG_TABLE}.{self.name}] of the config file"


OPENAI = Endpoint(NAME, LABEL, KEY_VAR)


def check(endpoint: Endpoint, task: Task, model: str) -> FMError | None:
    """Why `endpoint` cannot serve now, or None; the SDK check comes first because a session
    key overrides only a missing key."""
    if endpoint.problem:
        return ProviderUnavailable(endpoint.problem)
    if importlib.util.find_spec(PACKAGE) is None:
        return ProviderUnavailable(f"{endpoint.label} needs the OpenAI SDK: pip install {PACKAGE}.")
    if endpoint.key_var and not keys.from_env(endpoint.key_var):
        return keys.missing(endpoint.key_var, endpoint.label)
    return None


# --------------------------------------------------------------------------- faults


def classify(exc: BaseException, endpoint: Endpoint = OPENAI) -> FMError:
    """Convert an `openai` SDK exception (or a parsing error) into the project's errors."""
    import openai

    label = endpoint.label
    if isinstance(exc, FMError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        return faults.http_error(
            label,
            exc.status_code,
            key_var=endpoint.key_hint(),
            detail=_error_detail(exc.body),
            retry_after=faults.retry_after(exc.response.headers),
        )
    if isinstance(exc, openai.APITimeoutError):
        return faults.timeout_error(label, config.settings().timeout_s)
    if isinstance(exc, openai.APIConnectionError):
        # It connected, and the server closed the connection before the whole reply arrived.
        return faults.cut_error(label) if _cut_off(exc.__cause__) else faults.connection_error(label)
    if _cut_off(exc):  # the same, raised while a stream's body was read
        return faults.cut_error(label)
    if isinstance(exc, openai.APIResponseValidationError):
        return faults.malformed_error(label)
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        retryable = isinstance(exc.body, Mapping) and exc.body.get("type") == "server_error"
        return ProviderError(faults.message_for(label, None, detail=exc.message), provider=label, retryable=retryable)
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError, IndexError)):
        log.warning("%s: unreadable response (%s)", label, type(exc).__name__, exc_info=exc)
        return faults.malformed_error(label)
    log.error("%s: unexpected %s", label, type(exc).__name__, exc_info=exc)
    return ProviderError(f"{label} failed ({type(exc).__name__}): see the server log.", provider=label)


def _cut_off(exc: BaseException | None) -> bool:
    """Whether `exc` is a reply broken off by the server (an incomplete body, a reset while reading),
    from the HTTP library the SDK uses (httpx2 in openai 3, httpx before it)."""
    raised = {(cls.__module__.partition(".")[0], cls.__name__) for cls in type(exc).__mro__}
    return any((library, name) in raised for library in ("httpx2", "httpx") for name in CUT_OFF_ERRORS)


def _error_detail(body: object) -> str:
    """The server's own short message from an error body (`{"message": ...}` or text)."""
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail") or body.get("error")
        return message if isinstance(message, str) else ""
    return body if isinstance(body, str) else ""


def _cut_error(endpoint: Endpoint, exc: BaseException, idle_s: float) -> FMError:
    """A stream that broke after text was shown: say so plainly (the text so far is kept)."""
    import openai

    label = endpoint.label
    if isinstance(exc, openai.APITimeoutError):
        return faults.stalled_error(label, idle_s)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"{label} closed the connection mid-answer: try again.", provider=label, retryable=True)
    return classify(exc, endpoint)


def _build_client(key: str, base_url: str | None) -> Any:
    import openai

    # retries are faults.call's job; the timeout is overridden per attempt
    return openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=config.settings().timeout_s)


def _close_client(client: Any) -> None:
    client.close()


class _SecretHolder:
    """Lets `keys.redact` scrub a key read from a custom env var (`api_key_env`)."""

    def __init__(self, api_key: str):
        self.api_key = api_key


# --------------------------------------------------------------------------- adapters


class OpenAIAdapter:
    """What every OpenAI-style adapter shares: the endpoint, the cached client, the fault policy."""

    # set by the task class (Completer, Captioner, ...) that this mixin is combined with
    provider: str
    model: str
    api_key: str | None

    def __init__(self, provider: str, model: str, endpoint: Endpoint = OPENAI):
        super().__init__(provider, model)  # type: ignore[call-arg]  # a mixin: the next class in the MRO is the task class
        self.endpoint = endpoint
        self._clients = ClientCache(_build_client, _close_client)
        self._secret: _SecretHolder | None = None

    @property
    def label(self) -> str:
        return self.endpoint.label

    def _key(self) -> str:
        if self.endpoint.key_var is None:
            return self.api_key or NO_KEY
        return keys.require(self.api_key, self.endpoint.key_var, self.label)

    def client(self):
        """The SDK client for the current key and base URL, built once and reused."""
        key = self._key()
        custom_env_key = self.endpoint.key_var not in (None, *keys.KEY_VARS) and key != self.api_key
        if custom_env_key and (self._secret is None or self._secret.api_key != key):
            self._secret = _SecretHolder(key)  # keys.redact must know a key read from a custom env var
            keys.remember(self._secret)
        return self._clients.get(key, self.endpoint.url())

    def _prepare(self) -> None:
        self.client()  # the SDK imported and the client built, before the call's clock starts

    def _fault(self, exc: BaseException) -> FMError:
        return faults.session_aware(lambda e: classify(e, self.endpoint), self.api_key)(exc)

    def _call(self, request: Callable[[Any, float], T]) -> T:
        """Run `request(client, seconds_left)` under the shared fault policy. The request reads
        the response too, so that an unreadable one is classified (as malformed) like any fault."""
        return faults.call(self.label, lambda seconds_left: request(self.client(), seconds_left), self._fault)

    def _vision_chat(self, content: list[dict], max_tokens: int, **extra: Any) -> Raw:
        """One non-streamed chat turn; returns the reply text with usage and the serving model."""
        params = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            self.endpoint.max_tokens_param(): max_tokens,
            **extra,
        }

        def attempt(client: Any, seconds_left: float) -> Raw:
            return _reply(client.chat.completions.create(**params, timeout=seconds_left), self.label)

        return self._call(attempt)


def _reply(response: Any, label: str) -> Raw:
    choice = response.choices[0]
    message = choice.message
    text = message.content
    if not text:
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise ProviderError(f"{label} declined: {' '.join(refusal.split())[:200]}", provider=label)
        raise ProviderError(f"{label} returned an empty answer ({choice.finish_reason}): try again.", provider=label)
    return Raw(text, usage=chat_usage(getattr(response, "usage", None)), served_by=served_by(response))


def served_by(response: Any) -> str | None:
    """Who served a reply, where the server says: routers in front of many providers (OpenRouter,
    for one) name it in a `provider` field. OpenAI names none, and its `model` field is the model
    (a dated snapshot of the one asked for), not who served it: then None."""
    provider = getattr(response, "provider", None)
    return (provider.strip() or None) if isinstance(provider, str) else None


class OpenAICompleter(OpenAIAdapter, Completer):
    def _stream(self, messages, params: CompletionParams):
        request = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
            self.endpoint.max_tokens_param(): params.max_tokens,
        }
        if params.seed is not None:
            request["seed"] = params.seed

        def open_stream(seconds_left: float):
            stream = self.client().chat.completions.create(**request, timeout=seconds_left)
            return self._events(stream, seconds_left)

        yield from faults.stream(self.label, open_stream, self._fault)

    def _events(self, stream, idle_s: float) -> Iterator[str | Usage | Finish | Raw]:
        """Chunks to text deltas, then Usage and Finish. A fault before any text is left to the
        retry policy; after text it becomes a plain 'broke off' error (the text is kept)."""
        shown = False
        finished = compat.keep_stream_connection(stream.response)
        with stream:
            try:
                for chunk in stream:
                    for event in _chunk_events(chunk):
                        shown = shown or isinstance(event, str)
                        if isinstance(event, Finish):
                            finished.set()
                        yield event
            except Exception as exc:
                if not shown:
                    raise
                raise _cut_error(self.endpoint, exc, idle_s) from None


def _chunk_events(chunk: Any) -> Iterator[str | Usage | Finish | Raw]:
    serving = served_by(chunk)
    if serving:
        yield Raw(None, served_by=serving)
    for choice in getattr(chunk, "choices", None) or []:
        if getattr(choice, "index", 0) != 0:
            continue
        delta = getattr(choice, "delta", None)
        text = getattr(delta, "content", None) or getattr(delta, "refusal", None)
        if text:
            yield text
        if getattr(choice, "finish_reason", None):
            yield Finish(choice.finish_reason)
    usage = chat_usage(getattr(chunk, "usage", None))
    if usage is not None:
        yield usage


def _image_part(image: Image) -> dict:
    return {"type": "image_url", "image_url": {"url": inputs.jpeg_data_uri(image)}}


class OpenAICaptioner(OpenAIAdapter, Captioner):
    def _caption(self, image, prompt):
        content = [{"type": "text", "text": prompt or CAPTION_PROMPT}, _image_part(image)]
        return self._vision_chat(content, CAPTION_MAX_TOKENS)


class OpenAIClassifier(OpenAIAdapter, ZeroShotClassifier):
    """A vision chat model asked to score the labels: its stated guess, not a probability."""

    calibrated = False

    def _classify(self, image, labels):
        content = [{"type": "text", "text": zero_shot_prompt(labels)}, _image_part(image)]
        max_tokens = 100 + sum(len(label) // 3 + 10 for label in labels)
        try:
            reply = self._vision_chat(content, max_tokens, temperature=0, response_format={"type": "json_object"})
        except ProviderError as err:
            if err.status != 400 or "response_format" not in str(err):
                raise
            reply = self._vision_chat(content, max_tokens, temperature=0)  # a server without JSON mode
        scores = parse_label_scores(reply.value, labels)
        if scores is None:
            said = " ".join(str(reply.value).split())[:80]
            raise ProviderError(
                f"{self.label} did not score the labels (it said: {said!r}): try again or pick another model.",
                provider=self.label,
            )
        return Raw(scores, usage=reply.usage, served_by=reply.served_by)


def zero_shot_prompt(labels: list[str]) -> str:
    return (
        "Which of these labels describe the image? Labels: "
        f"{json.dumps(labels, ensure_ascii=False)}\n"
        "Reply with only a JSON object that maps every label, spelled exactly as given, to the "
        "probability (0 to 1) that it describes the image; the probabilities sum to 1."
    )


def parse_label_scores(text: str, labels: list[str]) -> list[float] | None:
    """One score per label from a model's reply, or None if it gave none.

    Accepts a JSON object (bare, fenced or inside prose), nested under one key, or a list of
    {"label", "score"} items; keys match labels ignoring case and spacing; unknown labels are
    ignored and missing ones score 0; numbers may be strings or percentages. A reply without
    usable JSON that names exactly one label gives that label 1.
    """
    index = {_norm(label): i for i, label in enumerate(labels)}
    for candidate in _json_candidates(text):
        mapping = _label_mapping(candidate, index)
        if mapping:
            scores = [0.0] * len(labels)
            for key, value in mapping.items():
                scores[index[_norm(key)]] = _score(value)
            return scores
    named = [i for i, label in enumerate(labels) if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.I)]
    if len(named) == 1:
        return [1.0 if i == named[0] else 0.0 for i in range(len(labels))]
    return None


def _norm(label: str) -> str:
    return " ".join(str(label).split()).casefold()


def _json_candidates(text: str) -> Iterator[Any]:
    pieces = [text, *re.findall(r"```(?:json)?\s*(.*?)```", text, re.S)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        pieces.append(text[start : end + 1])
    for piece in pieces:
        try:
            yield json.loads(piece)
        except ValueError:
            continue


def _label_mapping(obj: Any, index: dict[str, int], depth: int = 0) -> dict[str, Any] | None:
    """The {label: score} part of a parsed reply, keeping only known labels."""
    if isinstance(obj, list):
        obj = {
            item.get("label"): _first(item, "score", "probability", "confidence")
            for item in obj
            if isinstance(item, dict) and isinstance(item.get("label"), str)
        }
    if not isinstance(obj, dict):
        return None
    known = {k: v for k, v in obj.items() if isinstance(k, str) and _norm(k) in index}
    if known:
        return known
    nested = [v for v in obj.values() if isinstance(v, (dict, list))]
    if len(nested) == 1 and depth < 2:
        return _label_mapping(nested[0], index, depth + 1)
    return None


def _first(item: dict, *names: str) -> Any:
    return next((item[n] for n in names if n in item), 0)


def _score(value: Any) -> float:
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        try:
            value = float(text.rstrip("%")) / (100 if percent else 1)
        except ValueError:
            return 0.0
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


# --------------------------------------------------------------------------- image generation

FIXED_SIZES: dict[str, tuple[tuple[int, int], ...]] = {  # model prefix -> the sizes it makes
    "dall-e-2": ((256, 256), (512, 512), (1024, 1024)),
    "dall-e-3": ((1024, 1024), (1792, 1024), (1024, 1792)),
    "gpt-image-1": ((1024, 1024), (1536, 1024), (1024, 1536)),
    "chatgpt-image": ((1024, 1024), (1536, 1024), (1024, 1536)),
}
FREE_SIZE_MODELS = ("gpt-image-2",)  # any WxH, sides multiples of 16, aspect within 1:3..3:1
B64_ONLY_MODELS = ("gpt-image", "chatgpt-image")  # always base64: they reject response_format


def image_size(model: str, width: int, height: int) -> str:
    """The `size` to request; a size the model cannot make is a BadInput naming the nearest."""
    if model.startswith(FREE_SIZE_MODELS):
        if width % 16 or height % 16 or max(width, height) > 3 * min(width, height):
            w, h = _round16(width), _round16(height)
            raise BadInput(
                f"{model} needs width and height that are multiples of 16, at most 3:1 (got {width}x{height}): "
                f"try {w}x{h}."
            )
        return f"{width}x{height}"
    allowed = next((sizes for prefix, sizes in FIXED_SIZES.items() if model.startswith(prefix)), None)
    if allowed is None or (width, height) in allowed:
        return f"{width}x{height}"  # unknown models (compatible servers) decide for themselves
    w, h = min(allowed, key=lambda s: abs(math.log(s[0] / width)) + abs(math.log(s[1] / height)))
    choices = ", ".join(f"{a}x{b}" for a, b in allowed)
    raise BadInput(f"{model} makes only {choices} images (got {width}x{height}): choose {w}x{h}.")


def _round16(value: int) -> int:
    return max(16, int(value / 16 + 0.5) * 16)


SQUARE_EDIT_MODELS = ("dall-e-2",)  # edit only square images
MAX_EDIT_UPLOAD = {"dall-e-2": 4 * 2**20}  # model prefix -> largest PNG it takes to edit
DEFAULT_MAX_EDIT_UPLOAD = 50 * 2**20  # the GPT image models'


def edit_size(model: str, width: int, height: int) -> str:
    """The `size` to request for editing a `width` x `height` image: its own where the model can make it, else
    the model's size nearest in shape (the edit then comes back at that size). An image the model cannot edit
    at all is a BadInput saying what to do."""
    if model.startswith(SQUARE_EDIT_MODELS) and width != height:
        raise BadInput(f"{model} edits only square images (got {width}x{height}): crop it to a square first.")
    if model.startswith(FREE_SIZE_MODELS):
        w, h = _round16(width), _round16(height)
        if max(w, h) > 3 * min(w, h):
            raise BadInput(f"{model} edits images of at most 3:1 (got {width}x{height}): crop it first.")
        return f"{w}x{h}"
    allowed = next((sizes for prefix, sizes in FIXED_SIZES.items() if model.startswith(prefix)), None)
    if allowed is None or (width, height) in allowed:
        return f"{width}x{height}"  # unknown models (compatible servers) decide for themselves

    def distance(size: tuple[int, int]) -> tuple[float, float]:  # the shape first (an edit keeps it), then the area
        return abs(math.log(size[0] / size[1] * height / width)), abs(math.log(size[0] * size[1] / (width * height)))

    w, h = min(allowed, key=distance)
    return f"{w}x{h}"


def openai_mask(mask: Image) -> bytes:
    """The app's mask (white = repaint) in OpenAI's convention, a PNG whose fully transparent pixels are the
    area to edit: black everywhere, alpha 0 where the app's mask is white and 255 where it is black."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    rgba = PILImage.new("RGBA", mask.size, (0, 0, 0, 255))
    rgba.putalpha(ImageOps.invert(mask.convert("L")))
    return inputs.png_bytes(rgba)


class OpenAIImageGenerator(OpenAIAdapter, ImageGenerator):
    """`images.generate`; one image per call. OpenAI takes no seed, steps or guidance."""

    takes_seed = False
    edit_modes = frozenset({EditMode.IMAGE_TO_IMAGE, EditMode.INPAINT, EditMode.OUTPAINT})

    def _generate(self, prompt, params: ImageParams, on_step):
        if params.negative_prompt:
            raise BadInput(f"{self.label} image models take no negative prompt: clear it or say it in the prompt.")
        request = {
            "model": self.model,
            "prompt": prompt,
            "n": 1,
            "size": image_size(self.model, params.width, params.height),
        }
        if not self.model.startswith(B64_ONLY_MODELS):
            request["response_format"] = "b64_json"
        images = self._call(lambda client, left: self._images(client.images.generate(**request, timeout=left)))
        on_step(1, 1)
        return Raw(images, usage=Usage(images=len(images)))

    def _edit(self, prompt, image, mode, params: ImageParams, mask, strength, scale, on_step):
        """`images.edit` with the image as a PNG and, to inpaint, the mask (`openai_mask`). Image-to-image is an
        edit without a mask: OpenAI repaints as the prompt says and takes no strength, so `strength` is unused."""
        if params.negative_prompt:
            raise BadInput(f"{self.label} image models take no negative prompt: clear it or say it in the prompt.")
        size = edit_size(self.model, image.width, image.height)
        upload = inputs.png_bytes(image)
        limit = next((b for prefix, b in MAX_EDIT_UPLOAD.items() if self.model.startswith(prefix)), None)
        limit = limit or DEFAULT_MAX_EDIT_UPLOAD
        if len(upload) > limit:
            raise BadInput(
                f"The image is {len(upload) / 2**20:.1f} MB as PNG; {self.model} edits at most "
                f"{limit // 2**20} MB: use a smaller image."
            )
        request: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "image": ("image.png", upload, "image/png"),
            "n": 1,
            "size": size,
        }
        if mask is not None:
            request["mask"] = ("mask.png", openai_mask(mask), "image/png")
        if not self.model.startswith(B64_ONLY_MODELS):
            request["response_format"] = "b64_json"
        images = self._call(lambda client, left: self._images(client.images.edit(**request, timeout=left)))
        on_step(1, 1)
        return Raw(images, usage=Usage(images=len(images)))

    def _images(self, response: Any) -> list[Image]:
        images = [self._decode(item) for item in (getattr(response, "data", None) or [])]
        if not images:
            raise ProviderError(f"{self.label} returned no image: try again or change the prompt.", provider=self.label)
        return images

    def _decode(self, item: Any) -> Image:
        from PIL import Image as PILImage

        data = getattr(item, "b64_json", None)
        if not data:  # a server that ignored response_format and sent a link: not fetched
            raise ProviderError(
                f"{self.label} sent an image link instead of image data: use another model.", provider=self.label
            )
        try:
            image = PILImage.open(io.BytesIO(base64.b64decode(data)))
            image.load()
        except (ValueError, OSError, SyntaxError):
            raise faults.malformed_error(self.label) from None
        return image


# --------------------------------------------------------------------------- embeddings


class OpenAIEmbedder(OpenAIAdapter, Embedder):
    """`embeddings.create`; OpenAI embeddings are symmetric, so `kind` changes nothing."""

    max_batch = 256  # well inside the API's 2048 inputs / 300k tokens per request

    def _embed(self, texts, kind):
        return self._call(
            lambda client, left: _vectors(client.embeddings.create(model=self.model, input=texts, timeout=left))
        )


def _vectors(response: Any) -> Raw:
    rows = sorted(response.data, key=lambda item: item.index)
    tokens = getattr(getattr(response, "usage", None), "prompt_tokens", None)
    return Raw([row.embedding for row in rows], usage=Usage(input_tokens=tokens) if tokens is not None else None)


# --------------------------------------------------------------------------- providers

ADAPTERS: dict[Task, type[OpenAIAdapter]] = {
    Task.COMPLETION: OpenAICompleter,
    Task.ZERO_SHOT: OpenAIClassifier,
    Task.CAPTIONING: OpenAICaptioner,
    Task.IMAGE_GENERATION: OpenAIImageGenerator,
    Task.EMBEDDINGS: OpenAIEmbedder,
}


def provider_for(endpoint: Endpoint, tasks: tuple[Task, ...] = tuple(ADAPTERS)) -> Provider:
    """A registry `Provider` whose adapters all talk to `endpoint`."""
    from adapters.snippets import openai as reproduce  # (it reads this module's constants)

    return Provider(
        name=endpoint.name,
        label=endpoint.label,
        adapters={  # each class is an OpenAIAdapter combined with its task's Adapter class
            task: cast(Callable[[str, str], Adapter], functools.partial(ADAPTERS[task], endpoint=endpoint))
            for task in tasks
        },
        check=functools.partial(check, endpoint),
        models=None if endpoint is OPENAI else functools.partial(_compatible_model, endpoint),
        reproduce=reproduce.templates(endpoint, tasks),  # the OpenAI programs, with this endpoint's URL and key
        warm=True,
    )


def _compatible_model(endpoint: Endpoint, task: Task) -> str | None:
    """FMG_MODEL_<NAME>_<TASK> or [models.<name>] first, then the endpoint's own models table."""
    return config.model_for(endpoint.name, task) or endpoint.models.get(task)


def providers() -> list[Provider]:
    compatible = [provider_for(ep, _served_tasks(ep)) for ep in compatible_endpoints()]
    return [provider_for(OPENAI), *compatible]


def _served_tasks(endpoint: Endpoint) -> tuple[Task, ...]:
    return tuple(task for task in ADAPTERS if task is Task.COMPLETION or task in endpoint.models)


RESERVED_NAMES = frozenset({NAME, "local", "cohere", "hf", *config.DEFAULT_MODELS})


def compatible_endpoints() -> list[Endpoint]:
    """One Endpoint per `[openai_compatible.<name>]` table; a bad table becomes an endpoint that
    says what to fix (shown in the picker) rather than vanishing."""
    try:
        tables = config.config_file().get(CONFIG_TABLE, {})
    except BadInput as err:
        log.warning("%s", err)
        return []
    if not isinstance(tables, dict):
        log.warning("[%s] in the config file must be a table of tables; ignored.", CONFIG_TABLE)
        return []
    out = []
    for name, table in tables.items():
        if name in RESERVED_NAMES or not isinstance(table, dict):
            log.warning("[%s.%s] ignored: the name is taken or it is not a table.", CONFIG_TABLE, name)
            continue
        out.append(endpoint_from_table(name, table))
    return out


def endpoint_from_table(name: str, table: dict[str, Any]) -> Endpoint:
    where = f"[{CONFIG_TABLE}.{name}] in the config file"
    label = str(table.get("label") or name)
    base_url = table.get("base_url")
    key_var = table.get("api_key_env") or None
    token_param = table.get("max_tokens_param") or None
    models = _models_table(name, table.get("models", {}))
    problem = None
    if not isinstance(base_url, str) or urlsplit(base_url.strip()).scheme not in ("http", "https"):
        problem, base_url = f"{label} needs a base_url (http:// or https://) in {where}.", None
    elif key_var is not None and not isinstance(key_var, str):
        problem, key_var = f"api_key_env in {where} must be the name of an environment variable.", None
    elif token_param is not None and token_param not in TOKEN_PARAMS:
        problem, token_param = f"max_tokens_param in {where} must be one of {', '.join(TOKEN_PARAMS)}.", None
    return Endpoint(name, label, key_var, base_url.strip() if base_url else None, token_param, models, problem)


def _models_table(name: str, table: Any) -> dict[Task, str]:
    models: dict[Task, str] = {}
    for task_name, model in table.items() if isinstance(table, dict) else []:
        try:
            models[Task(task_name)] = str(model)
        except ValueError:
            log.warning(
                "[%s.%s.models]: unknown task %r ignored (use one of %s).",
                CONFIG_TABLE,
                name,
                task_name,
                ", ".join(t.value for t in Task),
            )
    return models
