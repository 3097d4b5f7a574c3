"""The "hf" provider: every task through `huggingface_hub.InferenceClient`.

Routing. Every call goes to an explicit URL, never through the SDK's model lookup: given a bare
model id the SDK first asks the Hub which providers serve it (`HfApi().model_info`, with no
timeout and outside any deadline). With a URL it sends exactly one request, under our timeout:

| task | SDK call | URL |
|---|---|---|
| completion | `chat_completion(stream=True)` | `https://router.huggingface.co/v1/chat/completions` (auto) |
| zero-shot | `zero_shot_image_classification` | `{base}/models/{model}` |
| captioning | `image_to_text` | `{base}/models/{model}` |
| image generation | `text_to_image`; edits: `image_to_image` | `{base}/models/{model}` |
| embeddings | `feature_extraction` | `{base}/models/{model}/pipeline/feature-extraction` |

Chat goes to the router's automatic provider selection; with `HF_INFERENCE_ENDPOINT` set it goes
to `{base}/models/{model}/v1/chat/completions` instead, like every other task.

`{base}` defaults to `https://router.huggingface.co/hf-inference`, the URL the SDK itself builds for
provider "hf-inference"; `HF_INFERENCE_ENDPOINT` is the SDK's own name for a base with that layout. A model
configured as a URL (a dedicated Inference Endpoint, a TGI or TEI server) is called as it is.

Served by. The router names the provider that answered in the `x-inference-provider` response
header; the SDK returns only bodies, so a response hook on the SDK's shared HTTP session records
the header for the call running in this thread (`_ServedBy`). Without the header, served_by is
"hf-inference" for hf-inference routes and unknown (None) where the router or an endpoint chose.

Faults. The SDK does not retry inference calls (`_inner_post` has no backoff) and each attempt
gets `timeout=seconds_left`, so `faults` alone decides about retries. A 503 "model is loading"
is retried after its `estimated_time` only when that fits inside the deadline.

Clients. `InferenceClient` holds no connections (requests go through the SDK's shared session)
and takes its timeout only in the constructor, so one is built per attempt: that is what lets
each attempt have its own timeout without threads sharing a mutable client.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import compat
from adapters import config, faults, inputs, keys
from adapters.errors import FMError, ProviderError, ProviderUnavailable
from adapters.registry import Provider
from adapters.tasks import Captioner, Completer, Embedder, ImageGenerator, Raw, ZeroShotClassifier
from adapters.types import CompletionParams, EditMode, Finish, ImageParams, Task, Usage, chat_usage

if TYPE_CHECKING:
    import numpy as np
    from huggingface_hub import InferenceClient
    from PIL.Image import Image

NAME = "hf"
LABEL = "Hugging Face"
KEY_VAR = "HF_TOKEN"
PACKAGE = "huggingface_hub"
ENDPOINT_VAR = "HF_INFERENCE_ENDPOINT"
ROUTER_URL = "https://router.huggingface.co"
HF_INFERENCE = "hf-inference"
SERVED_BY_HEADER = "x-inference-provider"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PIPELINE_SUFFIX = {Task.EMBEDDINGS: "/pipeline/feature-extraction"}  # the SDK's layout for these tasks

log = logging.getLogger("fm_gallery.hf_inference")
T = TypeVar("T")


# --- availability --------------------------------------------------------------------------------


def check(task: Task, model: str) -> FMError | None:
    """Why (task, model) cannot run now, without importing the SDK."""
    if importlib.util.find_spec(PACKAGE) is None:
        return ProviderUnavailable(f"{LABEL} needs the {PACKAGE} package: pip install {PACKAGE}.")
    offline = [var for var in OFFLINE_VARS if _truthy(os.environ.get(var))]
    if offline:
        return ProviderUnavailable(_offline_message(offline[0]))
    if not keys.from_env(KEY_VAR):
        return keys.missing(KEY_VAR, LABEL)
    return None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_message(var: str) -> str:
    return f"{var} is set, which blocks {LABEL} hosted inference: unset it to use {LABEL}."


# --- routing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    url: str  # given to InferenceClient as `model`; for chat the SDK appends /v1/chat/completions
    fallback: str | None  # served_by when the response does not name a provider


def route(task: Task, model: str) -> Route:
    """The one URL a (task, model) call goes to; see the module docstring for why URLs."""
    if model.startswith(("http://", "https://")):
        return Route(model, None)
    endpoint = (os.environ.get(ENDPOINT_VAR) or "").strip().rstrip("/")
    if task is Task.COMPLETION and not endpoint:
        return Route(f"{ROUTER_URL}/v1", None)
    base = endpoint or f"{ROUTER_URL}/{HF_INFERENCE}"
    return Route(f"{base}/models/{model}{PIPELINE_SUFFIX.get(task, '')}", HF_INFERENCE)


# --- which provider served the call --------------------------------------------------------------

_seen: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("hf_served_by", default=None)


def _record_provider(response: Any) -> None:
    """httpx response hook: note the router's provider header for the call running here."""
    seen = _seen.get()
    if seen is not None:
        value = response.headers.get(SERVED_BY_HEADER)
        if value:
            seen.append(value.strip())


def _install_hook() -> None:
    compat.add_hf_response_hook(_record_provider)


class _ServedBy:
    """Collects the provider header of the responses to the SDK call made inside the block.

    The block must not span a `yield`: the context variable belongs to the calling thread.
    """

    def __init__(self, fallback: str | None):
        self.fallback = fallback
        self.seen: list[str] = []

    @property
    def name(self) -> str | None:
        return self.seen[-1] if self.seen else self.fallback

    def __enter__(self) -> _ServedBy:
        _install_hook()
        self._token = _seen.set(self.seen)
        return self

    def __exit__(self, *exc: object) -> None:
        _seen.reset(self._token)


# --- errors --------------------------------------------------------------------------------------


def classify(exc: BaseException, model: str = "", key_var: str = KEY_VAR) -> FMError:
    """Turn a huggingface_hub / httpx2 / parsing exception into the project's error."""
    import httpx2  # huggingface_hub 2.x's own HTTP library
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.OfflineModeIsEnabled):
        return ProviderUnavailable(_offline_message("HF_HUB_OFFLINE"))
    if isinstance(exc, hf.HfHubHTTPError):
        return _http_error(exc, model, key_var)
    if isinstance(exc, (hf.InferenceTimeoutError, httpx2.TimeoutException)):
        return faults.timeout_error(LABEL, config.settings().timeout_s)
    if isinstance(exc, hf.TextGenerationError):
        return _generation_error(exc, hf)
    if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        return faults.cut_error(LABEL)
    if isinstance(exc, httpx2.TransportError):
        return faults.connection_error(LABEL)
    # json.JSONDecodeError and the SDK's parse errors are ValueErrors: the body was unreadable
    if isinstance(exc, (ValueError, UnicodeDecodeError, IndexError, KeyError)) or _is_bad_image(exc):
        log.warning("%s sent an unreadable response: %s", LABEL, keys.redact(repr(exc))[:300])
        return faults.malformed_error(LABEL)
    log.warning("%s call failed", LABEL, exc_info=exc)
    return ProviderError(f"{LABEL} failed unexpectedly ({type(exc).__name__}): see the server log.", provider=LABEL)


def _http_error(exc: Any, model: str, key_var: str) -> ProviderError:
    response = exc.response
    status = response.status_code
    body = _json_body(response)
    if status == 503 and "loading" in str(body.get("error", "")).lower():
        return _loading_error(model, body.get("estimated_time"))
    detail = (exc.server_message or "").strip().splitlines()
    return faults.http_error(
        LABEL,
        status,
        key_var=key_var,
        detail=detail[0] if detail else "",
        retry_after=faults.retry_after(response.headers),
    )


def _loading_error(model: str, estimated: Any) -> ProviderError:
    """HF's cold start: a 503 whose body says the model is loading and for about how long.

    Retryable after `estimated_time`; `faults.call` retries only if that fits in the deadline.
    """
    eta = estimated if isinstance(estimated, (int, float)) and estimated >= 0 else None
    about = f" (about {max(1, round(eta))} s)" if eta is not None else ""
    return ProviderError(
        f"{LABEL}: the model {model} is loading{about}: try again in a minute.",
        provider=LABEL,
        status=503,
        retryable=True,
        retry_after=eta,
    )


def _generation_error(exc: Exception, hf: Any) -> ProviderError:
    """An error event inside a stream (TGI's `{"error": ..., "error_type": ...}`)."""
    if isinstance(exc, hf.OverloadedError):
        return ProviderError(f"{LABEL} is overloaded: try again in a minute.", provider=LABEL, retryable=True)
    status = 422 if isinstance(exc, hf.ValidationError) else None
    return ProviderError(faults.message_for(LABEL, status, detail=str(exc)), provider=LABEL, status=status)


def _json_body(response: Any) -> dict:
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - an error body that is not JSON has no details to read
        return {}
    return body if isinstance(body, dict) else {}


def _is_bad_image(exc: BaseException) -> bool:
    try:
        from PIL import UnidentifiedImageError
    except ImportError:
        return False
    return isinstance(exc, UnidentifiedImageError)


# --- the adapters --------------------------------------------------------------------------------


class _HFAdapter:
    """What every HF task shares: the key, the route, one client per attempt, the fault policy."""

    model: str
    task: Task
    api_key: str | None

    def _key(self) -> str:
        return keys.require(self.api_key, KEY_VAR, LABEL)  # never the SDK's fallback: a token file on disk

    def _prepare(self) -> None:
        """Import the SDK and set up its shared HTTP session before the clock starts; the client
        itself is built per attempt (see the module docstring) and costs nothing once imported."""
        import httpx2  # noqa: F401 - what `classify` reads exceptions with
        from huggingface_hub import errors  # noqa: F401

        _install_hook()

    def _client(self, url: str, seconds_left: float) -> InferenceClient:
        from huggingface_hub import InferenceClient

        return InferenceClient(model=url, token=self._key(), timeout=max(0.05, seconds_left))

    @property
    def _classifier(self) -> Callable[[BaseException], FMError]:
        key_var = "the key typed for this session" if self.api_key else KEY_VAR
        return functools.partial(classify, model=self.model, key_var=key_var)

    def _call(self, run: Callable[[InferenceClient, float], T]) -> tuple[T, str | None]:
        """`run(client, deadline)` under the fault policy; returns its value and who served it."""
        target = route(self.task, self.model)

        def attempt(seconds_left: float) -> tuple[T, str | None]:
            deadline = time.monotonic() + seconds_left
            with self._client(target.url, seconds_left) as client, _ServedBy(target.fallback) as served:
                value = run(client, deadline)
            return value, served.name

        return faults.call(LABEL, attempt, self._classifier)


class HFCompleter(_HFAdapter, Completer):
    def _stream(self, messages, params: CompletionParams):
        target = route(self.task, self.model)

        def open_stream(seconds_left: float) -> Iterator:
            client = self._client(target.url, seconds_left)
            try:
                with _ServedBy(target.fallback) as served:  # the headers arrive before this returns
                    chunks = client.chat_completion(
                        messages,
                        model=self.model,
                        stream=True,
                        max_tokens=params.max_tokens,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        seed=params.seed,
                        stream_options={"include_usage": True},  # type: ignore[call-overload]  # the SDK sends a plain dict as is
                    )
            except BaseException:
                client.close()  # the SDK leaves a failed stream's response open on the client
                raise
            return _chat_events(client, chunks, served.name)

        yield from faults.stream(LABEL, open_stream, self._classifier)


def _chat_events(client: InferenceClient, chunks: Iterator[Any], served_by: str | None) -> Iterator:
    """Text deltas, then Usage and Finish; who served it is sent right after the first text.

    Closing the client closes the streamed response, also when the reader stops early.
    """
    with client:
        marked = served_by is None
        finish = None
        for chunk in chunks:
            usage = chat_usage(getattr(chunk, "usage", None))
            if usage:
                yield usage
            for choice in getattr(chunk, "choices", None) or []:
                delta = choice.delta
                text = getattr(delta, "content", None) if delta else None
                if text:
                    yield str(text)
                    if not marked:
                        marked = True
                        yield Raw(None, served_by=served_by)
                finish = choice.finish_reason or finish
        if not marked:
            yield Raw(None, served_by=served_by)
        yield Finish(finish)


class HFClassifier(_HFAdapter, ZeroShotClassifier):
    def _classify_image(self, client: InferenceClient, image: Image, labels: list[str]) -> list[float]:
        out = client.zero_shot_image_classification(inputs.jpeg_bytes(image), candidate_labels=labels)
        scores: dict[Any, Any] = {getattr(item, "label", None): getattr(item, "score", None) for item in out}
        if any(not _is_score(scores.get(label)) for label in labels):
            raise faults.malformed_error(LABEL)
        return [float(scores[label]) for label in labels]

    def _classify(self, image, labels):
        value, served_by = self._call(lambda client, _: self._classify_image(client, image, labels))
        return Raw(value, served_by=served_by)


class HFCaptioner(_HFAdapter, Captioner):
    """Captions with an image-to-text model. That task takes no prompt, so a prompt is ignored."""

    def _caption(self, image, prompt):
        def run(client: InferenceClient, deadline: float) -> str:
            text = getattr(client.image_to_text(inputs.jpeg_bytes(image)), "generated_text", None)
            if not isinstance(text, str):
                raise faults.malformed_error(LABEL)
            return text

        value, served_by = self._call(run)
        return Raw(value, served_by=served_by)


class HFImageGenerator(_HFAdapter, ImageGenerator):
    """One image per call; the service reports no progress, so on_step(1, 1) marks the end. It edits by
    image-to-image only: the SDK has no inpainting task."""

    edit_modes = frozenset({EditMode.IMAGE_TO_IMAGE})
    edit_takes_seed = False

    def _generate(self, prompt, params: ImageParams, on_step):
        def run(client: InferenceClient, deadline: float) -> Image:
            image = client.text_to_image(
                prompt,
                negative_prompt=params.negative_prompt or None,
                width=params.width,
                height=params.height,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                seed=params.seed,
            )
            return _decoded(image)

        image, served_by = self._call(run)
        on_step(1, 1)
        return Raw(image, usage=Usage(images=1), served_by=served_by)

    def _edit(self, prompt, image, mode, params: ImageParams, mask, strength, scale, on_step):
        """`image_to_image` to the same URL as `text_to_image` (`route`): the prompt, the image and the size
        to return, steps, guidance and `strength`, which the image-to-image task does not define but which
        hf-inference hands to its diffusers pipeline with the other parameters. It takes no seed."""
        from huggingface_hub import ImageToImageTargetSize

        def run(client: InferenceClient, deadline: float) -> Image:
            edited = client.image_to_image(
                inputs.jpeg_bytes(image),
                prompt=prompt,
                negative_prompt=params.negative_prompt or None,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                target_size=ImageToImageTargetSize(width=image.width, height=image.height),
                strength=strength,
            )
            return _decoded(edited)

        edited, served_by = self._call(run)
        on_step(1, 1)
        return Raw(edited, usage=Usage(images=1), served_by=served_by)


class HFEmbedder(_HFAdapter, Embedder):
    """Sentence embeddings from `feature_extraction`.

    Sentence-transformers models return one vector per text (2-D). Plain transformer models
    return one vector per token (3-D, or 4-D with a batch axis of 1): these are mean-pooled over
    tokens (no attention mask comes back, so special tokens count too). When token counts differ
    inside a batch the response is ragged and the SDK cannot make an array of it: then each text
    is sent on its own. `kind` is not used: the feature-extraction task has no query/document
    switch that every model understands.
    """

    max_batch = 32

    def _embed(self, texts, kind):
        value, served_by = self._call(lambda client, deadline: _embed_texts(client, texts, deadline))
        return Raw(value, served_by=served_by)


def _embed_texts(client: InferenceClient, texts: list[str], deadline: float) -> np.ndarray:
    import numpy as np

    try:
        return _pooled(client.feature_extraction(texts), len(texts))
    except ValueError as err:
        if "inhomogeneous" not in str(err) and "sequence" not in str(err):
            raise
    rows = []
    for text in texts:  # ragged token-level output: one text per request, within the deadline
        if time.monotonic() >= deadline:
            raise faults.timeout_error(LABEL, config.settings().timeout_s)
        rows.append(_pooled(client.feature_extraction([text]), 1))
    return np.vstack(rows)


def _pooled(array: Any, rows: int) -> np.ndarray:
    """(rows, dim) from sentence-level (2-D) or token-level (3-D / 4-D) feature extraction."""
    import numpy as np

    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 3:
        a = a.mean(axis=1)
    if a.ndim == 1 and rows == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] != rows or a.shape[1] == 0:
        raise faults.malformed_error(LABEL)
    return a


# --- small helpers -------------------------------------------------------------------------------


def _decoded(image: Any) -> Image:
    """Fully decode the returned image now, so a truncated one is a fault of this attempt."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError):
        raise faults.malformed_error(LABEL) from None
    return image if image.mode in ("RGB", "RGBA") else image.convert("RGB")


def _is_score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def providers() -> list[Provider]:
    from adapters.snippets import hf as reproduce  # (it reads this module's constants)

    return [
        Provider(
            name=NAME,
            label=LABEL,
            adapters={
                Task.COMPLETION: HFCompleter,
                Task.ZERO_SHOT: HFClassifier,
                Task.CAPTIONING: HFCaptioner,
                Task.IMAGE_GENERATION: HFImageGenerator,
                Task.EMBEDDINGS: HFEmbedder,
            },
            check=check,
            reproduce=reproduce.TEMPLATES,
            warm=True,
        )
    ]
