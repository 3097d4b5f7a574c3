"""A fake OpenAI REST API for `FakeServer`: the wire format of every endpoint the adapter uses.

Routes (under `/v1`, as the SDK builds them from a base URL ending in `/v1`):

- `POST /v1/chat/completions`: JSON or SSE (`data: {chunk}` frames, `choices: []` + `usage` as
  the last chunk when `stream_options.include_usage`, then `data: [DONE]`). A text-only chat
  echoes the last user message; a chat with an image either captions it ("A WxH image, mostly
  red.") or, when the prompt lists labels in a JSON array, scores them (labels that name the
  image's main colour get 3 shares, the others 1).
- `POST /v1/images/generations`: `b64_json` PNGs of the requested size, filled with a colour
  derived from the prompt (`prompt_color`); GPT image models reject `response_format`.
- `POST /v1/images/edits`: multipart/form-data (`parse_multipart`): the image (a square PNG for dall-e-2),
  an optional mask that must be a PNG with an alpha channel and the image's size, `prompt`, `size`; the
  answer is the image with its mask's fully transparent pixels (all of it, half-way, without a mask) painted
  `prompt_color(prompt)`, at the requested size.
- `POST /v1/embeddings`: a deterministic vector per text (`vector_for`), base64 float32 when
  `encoding_format` is "base64" (unless the fake plays a server that ignores it).

A fake made with `provider="..."` plays a router in front of many providers (as OpenRouter is):
every chat reply and chunk names the one that served it in a `provider` field; OpenAI sends none.

Errors use OpenAI's body, `{"error": {"message", "type", "param", "code"}}`. Outputs derive from
the request so tests can tell that the request was well formed; requests are recorded by
`FakeServer.requests`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

from tests.fakes.http_server import Reply, Request, sse

EMBED_DIM = 8
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 30),
    "white": (245, 245, 245),
    "black": (10, 10, 10),
}
DALLE2_SIZES = {"256x256", "512x512", "1024x1024"}


class OpenAIFake:
    """The route function. `key=None` plays a server that needs no key (e.g. Ollama)."""

    def __init__(
        self,
        key: str | None = None,
        *,
        json_mode: bool = True,
        base64_embeddings: bool = True,
        known_models: set[str] | None = None,
        snapshot: str = "-2024-07-18",
        provider: str | None = None,
    ):
        self.key = key
        self.json_mode = json_mode  # False: ignores response_format and wraps JSON in prose
        self.base64_embeddings = base64_embeddings  # False: always sends float lists
        self.known_models = known_models  # None: every model exists
        self.snapshot = snapshot  # appended to gpt-* model names in replies, as the API does
        self.provider = provider  # None: replies name no provider (OpenAI's own API)

    def __call__(self, request: Request) -> Reply:
        denied = self._auth(request)
        if denied is not None:
            return denied
        path = request.path.split("?")[0]
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        files: dict[str, Upload] = {}
        try:
            body: Any = request.json() if not multipart else None
            if multipart:
                body, files = parse_multipart(request)
        except ValueError:
            kind = "multipart" if multipart else "JSON"
            return error_reply(400, f"We could not parse the {kind} body of your request.", code=None)
        if path == "/v1/images/edits" and request.method == "POST":
            if not multipart:
                return error_reply(400, "Images must be uploaded as multipart/form-data.", param="image", code=None)
            if not isinstance(body.get("model"), str):
                return error_reply(400, "you must provide a model parameter", param="model", code=None)
            return self._edits(body, files)
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str):
            return error_reply(400, "you must provide a model parameter", param="model", code=None)
        if self.known_models is not None and model not in self.known_models:
            return error_reply(
                404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
            )
        route = {
            "/v1/chat/completions": self._chat,
            "/v1/images/generations": self._images,
            "/v1/embeddings": self._embeddings,
        }.get(request.path.split("?")[0])
        if route is None or request.method != "POST":
            return error_reply(
                404, f"Invalid URL ({request.method} {request.path})", type_="invalid_request_error", code=None
            )
        return route(body)

    def _auth(self, request: Request) -> Reply | None:
        if self.key is None:
            return None
        header = request.headers.get("authorization", "")
        if header == f"Bearer {self.key}":
            return None
        given = header.removeprefix("Bearer ")
        shown = f"{given[:3]}*****{given[-4:]}" if len(given) > 8 else "***"
        return error_reply(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    # -- chat ---------------------------------------------------------------------------

    def _chat(self, body: dict) -> Reply:
        model = body["model"]
        messages = body.get("messages") or []
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10_000
        image, prompt = _vision_parts(messages)
        if image is not None:
            text = self._vision_answer(image, prompt, body)
        else:
            text = f"Echo from {model}: {_last_user_text(messages)}"
        words = text.split(" ")
        finish = "length" if len(words) > limit else "stop"
        words = words[:limit]
        usage = {"prompt_tokens": _count_tokens(messages), "completion_tokens": len(words)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        served = self.served_model(model)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            frames = stream_frames(words, served, finish, usage if include_usage else None, provider=self.provider)
            return Reply(sse=frames)
        reply = chat_json(" ".join(words), served, finish, usage)
        if self.provider:
            reply["provider"] = self.provider
        return Reply(json=reply)

    def _vision_answer(self, image: Any, prompt: str, body: dict) -> str:
        color = dominant_color(image)
        labels = _labels_in(prompt)
        if labels is None:
            return f"A {image.width}x{image.height} image, mostly {color}."
        weights = [3.0 if color in label.lower() else 1.0 for label in labels]
        scores = {label: round(w / sum(weights), 3) for label, w in zip(labels, weights, strict=False)}
        as_json = json.dumps(scores)
        json_mode = (body.get("response_format") or {}).get("type") == "json_object"
        if json_mode and self.json_mode:
            return as_json
        return f"Here are the scores:\n```json\n{as_json}\n```"

    def served_model(self, model: str) -> str:
        dated = re.search(r"\d{4}-\d\d-\d\d$", model)
        return model + self.snapshot if model.startswith("gpt-") and not dated else model

    # -- images -------------------------------------------------------------------------

    def _images(self, body: dict) -> Reply:
        model, prompt, size = body["model"], body.get("prompt"), body.get("size") or "1024x1024"
        gpt_image = model.startswith(("gpt-image", "chatgpt-image"))
        if gpt_image and "response_format" in body:
            return error_reply(
                400, "Unknown parameter: 'response_format'.", param="response_format", code="unknown_parameter"
            )
        if model == "dall-e-2" and size not in DALLE2_SIZES:
            return error_reply(400, f"'{size}' is not one of {sorted(DALLE2_SIZES)} - 'size'", param="size", code=None)
        if not isinstance(prompt, str) or not prompt:
            return error_reply(400, "You must provide a prompt.", param="prompt", code=None)
        width, height = (int(v) for v in size.split("x"))
        items = []
        for _ in range(int(body.get("n") or 1)):
            if body.get("response_format", "url" if not gpt_image else "b64_json") == "url":
                items.append({"url": "https://files.example.invalid/img.png", "revised_prompt": None})
            else:
                items.append({"b64_json": png_b64(width, height, prompt_color(prompt)), "revised_prompt": None})
        reply: dict[str, Any] = {"created": int(time.time()), "data": items}
        if gpt_image:
            reply.update(
                output_format="png",
                size=size,
                quality="medium",
                background="opaque",
                usage={
                    "input_tokens": 10,
                    "output_tokens": 272,
                    "total_tokens": 282,
                    "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
                },
            )
        return Reply(json=reply)

    def _edits(self, fields: dict[str, str], files: dict[str, Upload]) -> Reply:
        """`images.edit`: the repainted area takes `prompt_color(prompt)`. With a mask, that is its fully
        transparent pixels (the rest is the uploaded image); without one, the whole image half-way."""
        from PIL import Image

        model, prompt, size = fields["model"], fields.get("prompt"), fields.get("size") or "1024x1024"
        gpt_image = model.startswith(("gpt-image", "chatgpt-image"))
        if gpt_image and "response_format" in fields:
            return error_reply(
                400, "Unknown parameter: 'response_format'.", param="response_format", code="unknown_parameter"
            )
        if not prompt:
            return error_reply(400, "You must provide a prompt.", param="prompt", code=None)
        upload = files.get("image") or files.get("image[]")
        if upload is None:
            return error_reply(400, "Missing required parameter: 'image'.", param="image", code=None)
        image = upload.image()
        if image is None:
            return error_reply(400, "Invalid image file or mode for image 1.", param="image", code="invalid_image")
        if model == "dall-e-2":
            if size not in DALLE2_SIZES:
                return error_reply(
                    400, f"'{size}' is not one of {sorted(DALLE2_SIZES)} - 'size'", param="size", code=None
                )
            if image.width != image.height or upload.content_type != "image/png":
                return error_reply(400, "Uploaded image must be a square PNG.", param="image", code="invalid_image")
        painted = image.convert("RGB")
        colour = Image.new("RGB", painted.size, prompt_color(prompt))
        if "mask" in files:
            mask = files["mask"].image()
            if mask is None or "A" not in mask.getbands():
                return error_reply(400, "Invalid mask image: it must be a PNG with an alpha channel.", param="mask")
            if mask.size != image.size:
                return error_reply(
                    400, "Invalid mask: it must have the same dimensions as the image.", param="mask", code=None
                )
            transparent = mask.getchannel("A").point(lambda a: 255 if a == 0 else 0)
            painted = Image.composite(colour, painted, transparent)
        else:
            painted = Image.blend(painted, colour, 0.5)
        width, height = (int(v) for v in size.split("x"))
        painted = painted.resize((width, height), Image.Resampling.NEAREST)
        if fields.get("response_format", "url" if not gpt_image else "b64_json") == "url":
            item = {"url": "https://files.example.invalid/img.png", "revised_prompt": None}
        else:
            buffer = io.BytesIO()
            painted.save(buffer, format="PNG")
            item = {"b64_json": base64.b64encode(buffer.getvalue()).decode(), "revised_prompt": None}
        return Reply(json={"created": int(time.time()), "data": [item] * int(fields.get("n") or 1)})

    # -- embeddings ---------------------------------------------------------------------

    def _embeddings(self, body: dict) -> Reply:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return error_reply(400, "'$.input' is invalid.", param="input", code=None)
        as_base64 = body.get("encoding_format") == "base64" and self.base64_embeddings
        data = []
        for i, text in enumerate(texts):
            vector = vector_for(text)
            embedding: Any = base64.b64encode(struct.pack(f"<{EMBED_DIM}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(t.split()) for t in texts)
        return Reply(
            json={
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


# -- wire-format helpers (also used by tests to script replies) ------------------------------


@dataclass
class Upload:
    """One file of a multipart/form-data request."""

    filename: str
    content_type: str
    data: bytes

    def image(self) -> Any:
        """The file as a decoded PIL image, or None if it is not one."""
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(self.data))
            image.load()
        except Exception:  # noqa: BLE001 - anything unreadable is "not an image" to the API
            return None
        return image


def parse_multipart(request: Request) -> tuple[dict[str, str], dict[str, Upload]]:
    """(form fields, files by field name) of a multipart/form-data request; ValueError if it is not one."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(data, bytes):
            raise ValueError("a part without a name or a body")
        filename = part.get_filename()
        if filename is None:
            fields[name] = data.decode()
        else:
            files[name] = Upload(filename, part.get_content_type(), data)
    return fields, files


def error_reply(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = "error",
    headers: dict[str, str] | None = None,
    delay_s: float = 0.0,
) -> Reply:
    kind = type_ or {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Reply(status=status, json=body, headers=dict(headers or {}), delay_s=delay_s)


def rate_limited(retry_after: str | None = "1") -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return error_reply(
        429,
        "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
        code="rate_limit_exceeded",
        headers=headers,
    )


def server_error(status: int = 500) -> Reply:
    return error_reply(status, "The server had an error while processing your request. Sorry about that!", code=None)


def chat_json(
    content: str, model: str = "gpt-4o-mini-2024-07-18", finish: str = "stop", usage: dict | None = None
) -> dict:
    usage = usage or {"prompt_tokens": 12, "completion_tokens": len(content.split()), "total_tokens": 0}
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            **usage,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def chunk(
    model: str,
    delta: dict | None = None,
    finish: str | None = None,
    usage: dict | None = None,
    choices: bool = True,
    provider: str | None = None,
) -> dict:
    """One `chat.completion.chunk` as the API streams it (`provider`: as a router names who served it)."""
    extra = {"provider": provider} if provider else {}
    return {
        **extra,
        "id": "chatcmpl-fake123",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}] if choices else [],
        "usage": usage,
    }


def stream_frames(
    words: list[str],
    model: str = "gpt-4o-mini-2024-07-18",
    finish: str = "stop",
    usage: dict | None = None,
    provider: str | None = None,
) -> list[str]:
    """SSE frames: a role chunk, one chunk per word, the finish chunk, usage, `[DONE]`."""
    chunks = [chunk(model, {"role": "assistant", "content": "", "refusal": None}, provider=provider)]
    chunks += [chunk(model, {"content": w if i == 0 else " " + w}, provider=provider) for i, w in enumerate(words)]
    chunks.append(chunk(model, {}, finish=finish, provider=provider))
    if usage is not None:
        chunks.append(chunk(model, usage=usage, choices=False, provider=provider))
    return sse(*chunks, done="[DONE]")


def vector_for(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [(b - 127.5) / 127.5 for b in digest[:EMBED_DIM]]


def prompt_color(prompt: str) -> tuple[int, int, int]:
    digest = hashlib.md5(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def png_b64(width: int, height: int, color: tuple[int, int, int]) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def dominant_color(image: Any) -> str:
    """The named colour nearest to the image's mean colour."""
    from PIL import ImageStat

    mean = ImageStat.Stat(image.convert("RGB")).mean
    return min(COLORS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLORS[name], mean, strict=False)))


def decode_data_uri(url: str) -> tuple[str, Any]:
    """(media type, PIL image) from a `data:image/...;base64,...` URI."""
    from PIL import Image

    match = re.fullmatch(r"data:(image/[\w.+-]+);base64,(.+)", url, re.S)
    if match is None:
        raise ValueError("not a base64 image data URI")
    image = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
    image.load()
    return match.group(1), image


def _vision_parts(messages: list[dict]) -> tuple[Any, str]:
    """The first image and the text next to it in the last user message, if it has an image."""
    if not messages or not isinstance(messages[-1].get("content"), list):
        return None, ""
    image, texts = None, []
    for part in messages[-1]["content"]:
        if part.get("type") == "image_url" and image is None:
            image = decode_data_uri(part["image_url"]["url"])[1]
        elif part.get("type") == "text":
            texts.append(part["text"])
    return image, "\n".join(texts)


def _labels_in(prompt: str) -> list[str] | None:
    match = re.search(r"\[.*?\]", prompt, re.S)
    if match is None:
        return None
    try:
        labels = json.loads(match.group(0))
    except ValueError:
        return None
    return labels if isinstance(labels, list) and all(isinstance(x, str) for x in labels) else None


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def _count_tokens(messages: list[dict]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            total += sum(len(p.get("text", "").split()) + (85 if p.get("type") == "image_url" else 0) for p in content)
    return total
