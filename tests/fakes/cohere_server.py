"""A fake of Cohere's API v2 on the wire: POST /v2/chat (JSON, and SSE when `stream` is true),
/v2/embed and /v2/rerank, with the field names, event names and usage blocks the real API sends.

Outputs are derived from the request so that tests can tell a well-formed request from a wrong
one: chat echoes the model and the last user message word by word; a caption names the image's
size and main colour (decoded from the data URI); embeddings put colour words and an image's
mean colour on the same three axes, so "red" scores highest for a red image; rerank scores by
shared words. Use with `tests.fakes.http_server.FakeServer(route)`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from typing import Any

from tests.fakes.http_server import Reply, Request

DIM = 16
INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}
COLOURS = {"red": 0, "green": 1, "blue": 2}
MAX_EMBED_INPUTS = 96


def route(request: Request) -> Reply:
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not token or token == request.headers.get("authorization", "").strip():
        return error(401, "no api key supplied")
    try:
        body = request.json()
    except ValueError:
        return error(400, "invalid request: body is not JSON")
    model = str(body.get("model") or "")
    if not model:
        return error(400, "invalid request: model must be set")
    if model.startswith("no-such"):
        return error(404, f"model '{model}' not found, make sure the correct model ID was used")
    handler = ROUTES.get(request.path.split("?")[0])
    if handler is None:
        return error(404, f"no route for {request.path}")
    return handler(body)


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    """An error as Cohere sends it: {"id": ..., "message": ...}."""
    return Reply(status=status, json={"id": "err-0001", "message": message}, headers=headers or {}, **extra)


# -- chat ------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


def _words(text: str) -> int:
    return len(text.split())


def reply_pieces(body: dict) -> list[str]:
    """The streamed reply for a chat request, one piece per content-delta event."""
    last = _text_of(body["messages"][-1]["content"])
    words = f"{body['model']} says: {last}".split()
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _usage(body: dict, output_tokens: int) -> dict:
    input_tokens = sum(_words(_text_of(m.get("content"))) for m in body["messages"])
    return {
        "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        "tokens": {"input_tokens": input_tokens + 60, "output_tokens": output_tokens},  # + the prompt template
    }


def _chat(body: dict) -> Reply:
    messages = body.get("messages")
    if not messages or not isinstance(messages, list):
        return error(400, "invalid request: messages must not be empty")
    if "p" in body and not 0.01 <= body["p"] <= 0.99:
        return error(400, f"invalid request: p must be between 0.01 and 0.99, received {body['p']}")
    if body.get("stream"):
        return Reply(sse=stream_frames(body))
    last = messages[-1]
    images = [p for p in last.get("content", []) if isinstance(p, dict) and p.get("type") == "image_url"]
    text = _describe(images[0]["image_url"]["url"], body["model"]) if images else "".join(reply_pieces(body))
    return Reply(
        json={
            "id": "chat-0001",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": _usage(body, _words(text)),
        }
    )


def sse_frame(payload: dict) -> str:
    """One Cohere SSE frame: the event name on its own line, then the JSON data."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n"


def stream_frames(body: dict, *, finish_reason: str | None = None, error_text: str | None = None) -> list[str]:
    """The full event sequence of a streamed chat reply, as the real API orders it."""
    pieces = reply_pieces(body)
    reason = finish_reason or "COMPLETE"
    if body.get("max_tokens") is not None and len(pieces) > body["max_tokens"]:
        pieces, reason = pieces[: body["max_tokens"]], finish_reason or "MAX_TOKENS"
    events = [
        {
            "type": "message-start",
            "id": "chat-0002",
            "delta": {
                "message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
            },
        },
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        *({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}} for p in pieces),
        {"type": "content-end", "index": 0},
    ]
    end: dict[str, Any] = {"finish_reason": reason, "usage": _usage(body, len(pieces))}
    if error_text:
        end["error"] = error_text
    events.append({"type": "message-end", "delta": end})
    return [sse_frame(e) for e in events]


def _decode_image(uri: str):
    from PIL import Image

    match = re.match(r"data:image/(png|jpeg|webp|gif);base64,(.+)$", uri, re.S)
    if not match:
        raise ValueError("not an image data URI")
    return Image.open(io.BytesIO(base64.b64decode(match.group(2)))).convert("RGB")


def _mean_rgb(image) -> tuple[float, float, float]:
    from PIL import ImageStat

    return tuple(ImageStat.Stat(image.resize((8, 8))).mean[:3])  # type: ignore[return-value]


def _colour_name(rgb: tuple[float, float, float]) -> str:
    return max(COLOURS, key=lambda name: rgb[COLOURS[name]])


def _describe(uri: str, model: str) -> str:
    image = _decode_image(uri)
    return f"A {image.width}x{image.height} image, mostly {_colour_name(_mean_rgb(image))} (by {model})."


# -- embed -----------------------------------------------------------------------------------


def _noise(seed: str) -> list[float]:
    digest = hashlib.sha256(seed.encode()).digest()
    return [(b / 255.0 - 0.5) * 0.2 for b in digest[: DIM - 3]]


def text_vector(text: str) -> list[float]:
    """Colour words load the first three axes; every text gets small deterministic noise."""
    head = [0.0, 0.0, 0.0]
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in COLOURS:
            head[COLOURS[word]] += 1.0
    return head + _noise(text)


def image_vector(uri: str) -> list[float]:
    rgb = _mean_rgb(_decode_image(uri))
    return [c / 255.0 for c in rgb] + _noise(uri[-64:])


def _embed(body: dict) -> Reply:
    input_type = body.get("input_type")
    if input_type not in INPUT_TYPES:
        return error(400, f"invalid request: input_type must be one of {sorted(INPUT_TYPES)}")
    texts, images = body.get("texts"), body.get("images")
    if bool(texts) == bool(images):
        return error(400, "invalid request: give either texts or images")
    items = texts or images
    if len(items) > MAX_EMBED_INPUTS:
        return error(400, f"invalid request: at most {MAX_EMBED_INPUTS} texts per call - received {len(items)}")
    if "float" not in (body.get("embedding_types") or []):
        return error(400, "invalid request: this fake only serves float embeddings")
    if texts:
        vectors = [text_vector(t) for t in texts]
        billed = {"input_tokens": sum(_words(t) for t in texts)}
        extra: dict[str, Any] = {"texts": texts}
    else:
        try:
            vectors = [image_vector(uri) for uri in images]
        except (ValueError, OSError):
            return error(400, "invalid request: images must be base64 data URIs of png, jpeg, webp or gif")
        billed = {"images": len(images)}
        extra = {"images": [{"width": 1, "height": 1, "format": "jpeg", "bit_depth": 24} for _ in images]}
    return Reply(
        json={
            "id": "embed-0001",
            "response_type": "embeddings_by_type",
            "embeddings": {"float": vectors},
            **extra,
            "meta": {"api_version": {"version": "2"}, "billed_units": billed},
        }
    )


# -- rerank ----------------------------------------------------------------------------------


def overlap(query: str, document: str) -> float:
    """Share of the query's words found in the document: the fake's relevance score."""
    q = set(re.findall(r"\w+", query.lower()))
    d = set(re.findall(r"\w+", document.lower()))
    return round(len(q & d) / max(1, len(q)), 6)


def _rerank(body: dict) -> Reply:
    query, documents = body.get("query"), body.get("documents")
    if not query or not isinstance(documents, list) or not documents:
        return error(400, "invalid request: query and documents are required")
    scored = sorted(enumerate(documents), key=lambda item: (-overlap(query, item[1]), item[0]))
    top_n = body.get("top_n") or len(documents)
    results = [{"index": i, "relevance_score": overlap(query, doc)} for i, doc in scored[:top_n]]
    return Reply(
        json={
            "id": "rerank-0001",
            "results": results,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }
    )


ROUTES = {"/v2/chat": _chat, "/v2/embed": _embed, "/v2/rerank": _rerank}
