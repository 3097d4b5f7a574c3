"""The "cohere" provider: Cohere's API v2 through the `cohere` SDK (`ClientV2`).

| task        | endpoint                                                                  |
|-------------|---------------------------------------------------------------------------|
| completion  | `chat_stream` (POST /v2/chat, SSE)                                        |
| captioning  | `chat` (POST /v2/chat) with a text part and an `image_url` data URI part  |
| zero-shot   | `embed` (POST /v2/embed): the image, then the labels; cosine + softmax    |
| embeddings  | `embed` (POST /v2/embed), `input_type` search_document / search_query    |
| (rerank)    | `rerank` (POST /v2/rerank): `reranker()`, an option for the search demo   |

Cohere has no image generation, so the provider does not list that task. The SDK is imported
only when a call is made; each adapter builds its client on first use (rebuilt when the key or
`CO_API_URL` changes) with the SDK's retries off, so `adapters.faults` owns retries and the
deadline.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from adapters import config, faults, inputs, keys
from adapters.clients import ClientCache
from adapters.errors import BadInput, FMError, MissingCredentials, ProviderError, ProviderUnavailable
from adapters.registry import Provider
from adapters.tasks import Captioner, Completer, Embedder, Raw, ZeroShotClassifier
from adapters.types import CompletionParams, Finish, Message, Task, Usage, total_usage

if TYPE_CHECKING:
    from PIL.Image import Image

NAME = "cohere"
LABEL = "Cohere"
KEY_VAR = "CO_API_KEY"
URL_VAR = "CO_API_URL"  # the SDK's own variable; unset means the SDK's default (api.cohere.com)
PACKAGE = "cohere"

EMBED_BATCH = 96  # Cohere's limit of texts per embed call
CAPTION_PROMPT = "Describe this image in one or two sentences."
CAPTION_MAX_TOKENS = 300
LABEL_TEMPLATE = "a photo of {label}"  # labels are embedded as queries that describe an image
# Cosine similarities between embed-v4 image and text vectors sit in a narrow band (a few
# hundredths apart between labels), so they are multiplied by this scale before the softmax,
# as CLIP does with its logit scale (100). 50 keeps a clear winner without turning every
# answer into 0.99; the result is a ranking with relative weights, not calibrated probabilities.
SIMILARITY_SCALE = 50.0
LABEL_CACHE_SIZE = 2048  # (model, label) embeddings kept per adapter
NUCLEUS_RANGE = (0.01, 0.99)  # Cohere accepts p only in this range; top_p=1.0 maps to 0.99

RERANK_MODEL_VAR = "FMG_COHERE_RERANK_MODEL"
DEFAULT_RERANK_MODEL = "rerank-v3.5"
MAX_RERANK_DOCUMENTS = 1000  # Cohere's recommended ceiling per request

# Cohere's finish reasons in the words the other providers use.
FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "TIMEOUT": "timeout",
    "ERROR": "error",
}
# Statuses Cohere uses outside the usual set, shown as the status a user understands.
STATUS_ALIASES = {498: 401}  # 498: invalid token

log = logging.getLogger("fm_gallery.cohere")
T = TypeVar("T")


# -- availability and errors -----------------------------------------------------------------


def check(task: Task, model: str) -> FMError | None:
    """Why Cohere cannot serve `task` now (SDK missing, no key), without importing the SDK."""
    if importlib.util.find_spec(PACKAGE) is None:
        return ProviderUnavailable(f"{LABEL} needs the {PACKAGE} package: pip install {PACKAGE}.")
    if keys.from_env(KEY_VAR) is None:
        return keys.missing(KEY_VAR, LABEL)
    return None


def classify(exc: BaseException) -> FMError:
    """Turn a `cohere` / `httpx` exception into the project's error (never its raw text)."""
    import httpx
    import pydantic
    from cohere.core.api_error import ApiError
    from cohere.core.http_sse import SSEError
    from cohere.core.parse_error import ParsingError

    if isinstance(exc, ApiError):
        return _api_error(exc)
    malformed = (ParsingError, SSEError, json.JSONDecodeError, pydantic.ValidationError, UnicodeDecodeError)
    if isinstance(exc, malformed):  # before TransportError: SSEError (not an event stream) is one
        return faults.malformed_error(LABEL)
    if isinstance(exc, httpx.TimeoutException):
        return faults.timeout_error(LABEL, config.settings().timeout_s)
    if isinstance(exc, (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.ProxyError)):
        return faults.connection_error(LABEL)
    if isinstance(exc, httpx.TransportError):  # dropped mid-response (RemoteProtocolError, ReadError)
        return faults.cut_error(LABEL)
    log.warning("%s: unexpected %s", LABEL, type(exc).__name__, exc_info=exc)
    return ProviderError(f"{LABEL} failed ({type(exc).__name__}): try again, or see the server log.", provider=LABEL)


def _api_error(exc: Any) -> FMError:
    status = exc.status_code
    if status is None or 200 <= status < 300:  # a 2xx body the SDK could not parse
        return faults.malformed_error(LABEL)
    headers = {str(k).lower(): v for k, v in (exc.headers or {}).items()}
    return faults.http_error(
        LABEL,
        STATUS_ALIASES.get(status, status),
        key_var=KEY_VAR,
        detail=_detail(exc.body),
        retry_after=faults.retry_after(headers),
    )


def _detail(body: Any) -> str:
    """The server's short explanation from an error body (Cohere sends {"message": ...})."""
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or ""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    text = body if isinstance(body, str) else ""
    return "" if text.lstrip().startswith("<") else text[:200]  # no HTML error pages


# -- the client --------------------------------------------------------------------------------


def _build_client(api_key: str, base_url: str | None) -> Any:
    import cohere

    return cohere.ClientV2(
        api_key=api_key,
        base_url=base_url,  # None: the SDK's default environment
        timeout=config.settings().timeout_s,
        max_retries=0,
        log_warning_experimental_features=False,
    )


def _request_options(seconds_left: float) -> dict[str, Any]:
    """Per-attempt settings: the time this attempt may take, and no SDK retries."""
    return {"timeout": max(0.05, seconds_left), "max_retries": 0}


class _CohereClient:
    """Mixin: one lazily built `ClientV2` per adapter, rebuilt when the key or base URL changes."""

    api_key: str | None = None

    def _sdk(self) -> Any:
        key = keys.require(self.api_key, KEY_VAR, LABEL)
        cache = self.__dict__.get("_clients")
        if cache is None:
            cache = self.__dict__.setdefault("_clients", ClientCache(_build_client, _close))
        return cache.get(key, keys.from_env(URL_VAR))

    def _prepare(self) -> None:
        self._sdk()  # the client built (its first build imports most of the SDK) before the clock starts

    def _call(self, request: Callable[[Any, dict[str, Any]], T]) -> T:
        """Run `request(client, request_options)` under the project's fault policy."""
        client = self._sdk()
        return faults.call(
            LABEL,
            lambda seconds_left: request(client, _request_options(seconds_left)),
            faults.session_aware(classify, self.api_key),
        )


def _close(client: Any) -> None:
    client.__exit__(None, None, None)


# -- usage -------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _usage(meta: Any) -> Usage | None:
    """Usage from a chat `usage` or an embed/rerank `meta`: billed units first (what is paid)."""
    if meta is None:
        return None
    billed, tokens = getattr(meta, "billed_units", None), getattr(meta, "tokens", None)
    input_tokens = _int(getattr(billed, "input_tokens", None))
    if input_tokens is None:  # embed-v4 bills text and image tokens separately
        input_tokens = _int(getattr(billed, "text_tokens", None))
    if input_tokens is None:
        input_tokens = _int(getattr(tokens, "input_tokens", None))
    output_tokens = _int(getattr(billed, "output_tokens", None))
    if output_tokens is None:
        output_tokens = _int(getattr(tokens, "output_tokens", None))
    images = _int(getattr(billed, "images", None))
    if input_tokens is None and output_tokens is None and images is None:
        return None
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, images=images)


# -- completion --------------------------------------------------------------------------------


def _chat_args(model: str, messages: list[Message], params: CompletionParams) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "p": min(max(params.top_p, NUCLEUS_RANGE[0]), NUCLEUS_RANGE[1]),
    }
    if params.seed is not None:
        args["seed"] = params.seed
    return args


def _finish_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    reason = str(getattr(reason, "value", reason))
    return FINISH_REASONS.get(reason.upper(), reason.lower())


def _delta_text(event: Any) -> str:
    content = getattr(getattr(getattr(event, "delta", None), "message", None), "content", None)
    return getattr(content, "text", None) or ""


class CohereCompleter(_CohereClient, Completer):
    def _stream(self, messages: list[Message], params: CompletionParams) -> Iterator[str | Usage | Finish]:
        client = self._sdk()
        args = _chat_args(self.model, messages, params)

        def open_stream(seconds_left: float) -> Iterator[Any]:
            # The per-read timeout set here bounds the first byte and then every gap between chunks.
            return client.chat_stream(**args, request_options=_request_options(seconds_left))

        ended = False
        for event in faults.stream(LABEL, open_stream, faults.session_aware(classify, self.api_key)):
            if _unreadable(event):
                raise faults.malformed_error(LABEL)
            kind = getattr(event, "type", None)
            if kind == "content-delta":
                yield _delta_text(event)
            elif kind == "message-end":
                ended = True
                yield from _message_end(event)
        if not ended:  # the connection closed cleanly but the answer never finished
            raise ProviderError(f"{LABEL} ended the answer early: try again.", provider=LABEL, retryable=True)


def _unreadable(event: Any) -> bool:
    """A frame the SDK could not parse: it only logs a warning and yields an empty "message-start"
    event carrying the frame's raw text (`data`), which no event Cohere sends has."""
    return isinstance(getattr(event, "data", None), str)


def _message_end(event: Any) -> Iterator[Usage | Finish]:
    delta = getattr(event, "delta", None)
    usage = _usage(getattr(delta, "usage", None))
    if usage is not None:
        yield usage
    reason = _finish_reason(getattr(delta, "finish_reason", None))
    if reason == "error":
        detail = keys.redact(" ".join(str(getattr(delta, "error", None) or "").split()))[:200]
        said = f" ({detail.rstrip('.')})" if detail else ""
        raise ProviderError(f"{LABEL} stopped with an error{said}: try again.", provider=LABEL)
    yield Finish(reason)


# -- captioning --------------------------------------------------------------------------------


def _reply_text(response: Any) -> str:
    content = getattr(getattr(response, "message", None), "content", None)
    if content is None:
        raise faults.malformed_error(LABEL)
    return "".join(getattr(part, "text", None) or "" for part in content)


class CohereCaptioner(_CohereClient, Captioner):
    def _caption(self, image: Image, prompt: str | None) -> Raw:
        message = {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt or CAPTION_PROMPT},
                {"type": "image_url", "image_url": {"url": inputs.jpeg_data_uri(image)}},
            ],
        }
        response = self._call(
            lambda client, options: client.chat(
                model=self.model, messages=[message], max_tokens=CAPTION_MAX_TOKENS, request_options=options
            )
        )
        text = _reply_text(response)
        if not text.strip():
            raise ProviderError(f"{LABEL} returned an empty caption: try again or give a prompt.", provider=LABEL)
        return Raw(text, usage=_usage(getattr(response, "usage", None)))


# -- embeddings --------------------------------------------------------------------------------


INPUT_TYPES = {"document": "search_document", "query": "search_query"}


def _float_vectors(response: Any, expected: int) -> list[list[float]]:
    vectors = getattr(getattr(response, "embeddings", None), "float_", None)
    if not isinstance(vectors, list) or len(vectors) != expected:
        raise faults.malformed_error(LABEL)
    return vectors


class _Embedding(_CohereClient):
    model: str

    def _embed_texts(self, texts: list[str], input_type: str) -> tuple[list[list[float]], Usage | None]:
        response = self._call(
            lambda client, options: client.embed(
                model=self.model,
                texts=texts,
                input_type=input_type,
                embedding_types=["float"],
                request_options=options,
            )
        )
        return _float_vectors(response, len(texts)), _usage(getattr(response, "meta", None))


class CohereEmbedder(_Embedding, Embedder):
    max_batch = EMBED_BATCH

    def _embed(self, texts: list[str], kind: str) -> Raw:
        vectors, usage = self._embed_texts(texts, INPUT_TYPES[kind])
        return Raw(vectors, usage=usage)


# -- zero-shot ---------------------------------------------------------------------------------


def _image_input_type(model: str) -> str:
    """embed-v3 models need input_type "image" for images; v4 and later recommend search_document."""
    return "image" if "v3" in model else "search_document"


def _softmax_of_cosines(image: Sequence[float], labels: Sequence[Sequence[float]]) -> list[float]:
    import numpy as np

    img = np.asarray(image, dtype=np.float64)
    txt = np.asarray(labels, dtype=np.float64)
    if img.ndim != 1 or txt.ndim != 2 or txt.shape[1] != img.shape[0] or not np.isfinite(txt).all():
        raise faults.malformed_error(LABEL)
    cosines = txt @ img / np.maximum(np.linalg.norm(txt, axis=1) * np.linalg.norm(img), 1e-12)
    logits = SIMILARITY_SCALE * cosines
    weights = np.exp(logits - logits.max())
    return [float(w) for w in weights / weights.sum()]


class CohereClassifier(_Embedding, ZeroShotClassifier):
    """Zero-shot by embedding: the image and "a photo of <label>" in embed-v4's shared space.

    Scores are a softmax over scaled cosine similarities (`SIMILARITY_SCALE`): they rank the
    labels but are not calibrated probabilities, hence `calibrated = False`. Label embeddings
    are cached per (model, label), so asking again with the same labels embeds only the image.
    `embed_images` / `embed_labels` give the same vectors, for a linear probe (`embeds`).
    """

    calibrated = False
    embeds = True

    def __init__(self, provider: str, model: str):
        super().__init__(provider, model)
        self._labels: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._labels_lock = threading.Lock()

    def _embed_images(self, images: list[Image]) -> Raw:
        """One embed call per image, as `classify` makes it; usage counts the images."""
        embedded = [self._embed_image(image) for image in images]
        return Raw([vector for vector, _ in embedded], usage=total_usage(*(usage for _, usage in embedded)))

    def _embed_labels(self, labels: list[str]) -> Raw:
        """The labels as `classify` embeds them ("a photo of <label>", search_query), cache included."""
        vectors, usage = self._label_vectors(labels)
        return Raw(vectors, usage=usage)

    def _classify(self, image: Image, labels: list[str]) -> Raw:
        image_vector, image_usage = self._embed_image(image)
        label_vectors, label_usage = self._label_vectors(labels)
        scores = _softmax_of_cosines(image_vector, label_vectors)
        return Raw(scores, usage=total_usage(image_usage, label_usage))

    def _embed_image(self, image: Image) -> tuple[list[float], Usage | None]:
        uri = inputs.jpeg_data_uri(image)
        response = self._call(
            lambda client, options: client.embed(
                model=self.model,
                images=[uri],
                input_type=_image_input_type(self.model),
                embedding_types=["float"],
                request_options=options,
            )
        )
        # Priced per image, not per token: image tokens are not added to the text tokens, so the
        # cost is "unknown" until prices.toml has a per_image price, never a wrong number.
        billed = _usage(getattr(response, "meta", None))
        return _float_vectors(response, 1)[0], Usage(images=(billed and billed.images) or 1)

    def _label_vectors(self, labels: list[str]) -> tuple[list[list[float]], Usage | None]:
        with self._labels_lock:
            cached = [(label, self._labels.get((self.model, label))) for label in labels]
            known = {label: vector for label, vector in cached if vector is not None}
            for label in known:
                self._labels.move_to_end((self.model, label))
        missing = [label for label in labels if label not in known]
        usages = []
        for i in range(0, len(missing), EMBED_BATCH):
            batch = missing[i : i + EMBED_BATCH]
            vectors, usage = self._embed_texts([LABEL_TEMPLATE.format(label=label) for label in batch], "search_query")
            known.update(zip(batch, vectors, strict=False))
            usages.append(usage)
        self._remember([(label, known[label]) for label in missing])
        return [known[label] for label in labels], total_usage(*usages)

    def _remember(self, pairs: list[tuple[str, list[float]]]) -> None:
        """Keep label vectors, least recently used dropped first beyond `LABEL_CACHE_SIZE`."""
        with self._labels_lock:
            for label, vector in pairs:
                self._labels[(self.model, label)] = vector
            while len(self._labels) > LABEL_CACHE_SIZE:
                self._labels.popitem(last=False)


# -- rerank (an option of the search demo, not a task) ---------------------------------------


def rerank_model() -> str:
    return os.environ.get(RERANK_MODEL_VAR, "").strip() or DEFAULT_RERANK_MODEL


class CohereReranker(_CohereClient):
    """Reorders search hits by relevance to the query with Cohere's rerank endpoint."""

    def __init__(self, provider: str = NAME, model: str | None = None):
        self.provider = provider
        self.model = model or rerank_model()

    def __repr__(self) -> str:
        return f"CohereReranker(model={self.model!r})"

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> list[tuple[int, float]]:
        """(index into `documents`, relevance score in [0, 1]) pairs, most relevant first."""
        query, documents, top_n = _check_rerank(query, documents, top_n)
        if not documents:
            return []
        response = self._call(
            lambda client, options: client.rerank(
                model=self.model, query=query, documents=documents, top_n=top_n, request_options=options
            )
        )
        results = getattr(response, "results", None)
        if not isinstance(results, list) or any(not 0 <= r.index < len(documents) for r in results):
            raise faults.malformed_error(LABEL)
        scores = [(int(r.index), float(r.relevance_score)) for r in results]
        if not all(math.isfinite(score) for _, score in scores):
            raise faults.malformed_error(LABEL)
        return sorted(scores, key=lambda pair: -pair[1])


def _check_rerank(query: Any, documents: Any, top_n: Any) -> tuple[str, list[str], int | None]:
    if not isinstance(query, str) or not query.strip():
        raise BadInput("The search query is empty: type what to look for first.")
    if isinstance(documents, str) or not all(isinstance(d, str) for d in documents):
        raise BadInput("Documents to rerank must be a list of texts.")
    documents = list(documents)
    if len(documents) > MAX_RERANK_DOCUMENTS:
        raise BadInput(f"Too many documents to rerank ({len(documents):,}); the limit is {MAX_RERANK_DOCUMENTS:,}.")
    if top_n is not None:
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise BadInput(f"top_n must be a whole number of at least 1 (got {top_n!r}).")
        top_n = min(top_n, len(documents)) or None
    return query.strip(), documents, top_n


def rerank_key(api_key: str | None, provider: str | None = NAME) -> str | None:
    """The session key rerank may use: one typed for Cohere itself (the session's `provider`),
    never a key typed for another vendor."""
    key = (api_key or "").strip()
    return key if key and provider == NAME else None


def rerank_check(api_key: str | None = None, provider: str | None = NAME) -> FMError | None:
    """Why reranking with Cohere cannot run now, or None (for the search demo's option), checked
    before any call. `provider`: the session's provider, whose typed key counts only if it is Cohere."""
    problem = check(Task.EMBEDDINGS, rerank_model())
    if isinstance(problem, MissingCredentials):
        if rerank_key(api_key, provider):
            return None
        if provider != NAME:  # a typed key goes to its own vendor: it cannot help here
            return MissingCredentials(
                f"Reranking uses {LABEL}: set {KEY_VAR}, or pick {LABEL} as the provider and type its key."
            )
    return problem


def reranker(model: str | None = None, api_key: str | None = None, provider: str | None = NAME) -> CohereReranker:
    """A Cohere reranker for the search demo; raises a clear `FMError` if it cannot run now."""
    problem = rerank_check(api_key, provider)
    if problem is not None:
        raise problem
    made = CohereReranker(NAME, model)
    key = rerank_key(api_key, provider)
    if key:
        made.api_key = key
        keys.remember(made)
    return made


def providers() -> list[Provider]:
    from adapters.snippets import cohere as reproduce  # (it reads this module's constants)

    return [
        Provider(
            name=NAME,
            label=LABEL,
            adapters={
                Task.COMPLETION: CohereCompleter,
                Task.ZERO_SHOT: CohereClassifier,
                Task.CAPTIONING: CohereCaptioner,
                Task.EMBEDDINGS: CohereEmbedder,
            },
            check=check,
            reproduce=reproduce.TEMPLATES,
            reranker=lambda api_key, session_provider: reranker(api_key=api_key, provider=session_provider),
            warm=True,
        )
    ]
