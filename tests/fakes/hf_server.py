"""A fake Hugging Face inference router for `FakeServer`: the wire format `InferenceClient` speaks.

Paths, as the SDK builds them from a URL model (see `adapters.hf_inference.route`):

- `POST /v1/chat/completions` (the router's auto-routing) and
  `POST .../models/{model}/v1/chat/completions` (hf-inference): OpenAI-style JSON in, SSE out
  (`data: {chat.completion.chunk}` frames, a usage chunk with empty choices when
  `stream_options.include_usage`, then `data: [DONE]`).
- `POST .../models/{model}/pipeline/feature-extraction`: `{"inputs": [texts]}` -> nested float lists.
- `POST .../models/{model}`: the task is told by the body, as the real service tells it by the
  model's pipeline: `{"inputs": b64, "parameters": {"candidate_labels": [...]}}` -> zero-shot
  `[{"label", "score"}]` best first; `{"inputs": b64 image, "parameters": {"prompt", "strength",
  "target_size", ...}}` -> image-to-image PNG bytes; `{"inputs": prompt, "parameters": {...}}` with
  `Accept: image/png` -> PNG bytes; a raw image body (no JSON) -> `[{"generated_text": ...}]`.

Outputs are derived from the request so tests can check that it was well formed: the chat text
echoes the model and the last user message, zero-shot scores fall with the label's position,
the caption names the received image size, the generated image has the requested size and a
colour from the seed, image-to-image moves the image `strength` of the way to `edit_colour(prompt)`,
embeddings come from a hash of each text (or of each word, token-level).
Every answer carries `x-inference-provider` unless `provider_header` is None. Errors use HF's
body shape `{"error": "..."}` (503 cold starts add `"estimated_time"`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import time
from dataclasses import dataclass

from tests.fakes.http_server import Reply, Request, sse

CHAT_PROVIDER = "together"  # what the fake router claims served auto-routed chat
MODEL_PATH = re.compile(r"/models/(?P<model>[^/]+/[^/]+|[^/]+)(?P<rest>/.*)?$")
DIM = 8


@dataclass
class HFRouter:
    """The route function; flip the attributes to change how the fake behaves."""

    provider_header: str | None = "hf-inference"  # None: send no x-inference-provider header
    token_level: bool = False  # feature extraction returns one vector per word (3-D, ragged if lengths differ)
    words_per_chunk: int = 1

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST":
            return _error(405, "Method not allowed")
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "Invalid credentials in Authorization header")
        path = request.path.split("?")[0]
        if path.endswith("/v1/chat/completions"):
            return self._chat(request, path)
        match = MODEL_PATH.search(path)
        if not match:
            return _error(404, f"Not Found: {path}")
        model, rest = match["model"], match["rest"] or ""
        if rest == "/pipeline/feature-extraction":
            return self._features(request)
        if rest:
            return _error(404, f"Model {model} has no route {rest}")
        body = _json(request)
        if body is None:  # not JSON: a raw image, as the SDK sends it for image-to-text
            return self._caption(request.body)
        if isinstance(body.get("parameters"), dict) and "candidate_labels" in body["parameters"]:
            return self._zero_shot(body)
        if _b64_image(body.get("inputs")) is not None:
            return self._image_to_image(body)
        if "image/" in request.headers.get("accept", ""):
            return self._text_to_image(body)
        return _error(400, "Unknown task for this model")

    # -- tasks --

    def _chat(self, request: Request, path: str) -> Reply:
        body = _json(request)
        if not body or not isinstance(body.get("messages"), list) or not body.get("stream"):
            return _error(422, "Expected a streamed chat request with messages")
        model = body.get("model") or "dummy"
        last = next((m["content"] for m in reversed(body["messages"]) if m.get("role") == "user"), "")
        words = f"Echo from {model}: {last}".split()
        limit = int(body.get("max_tokens") or len(words))
        finish = "length" if len(words) > limit else "stop"
        words = words[:limit]
        frames = [
            chat_chunk(model, " ".join(words[i : i + self.words_per_chunk]) + " ")
            for i in range(0, len(words), self.words_per_chunk)
        ]
        frames.append(chat_chunk(model, "", finish=finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
            frames.append(usage_chunk(model, prompt_tokens, len(words)))
        provider = CHAT_PROVIDER if path == "/v1/chat/completions" else self.provider_header
        return Reply(sse=sse(*frames, done="[DONE]"), headers=self._headers(provider))

    def _features(self, request: Request) -> Reply:
        body = _json(request)
        texts = body.get("inputs") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(400, "inputs must be a string or a list of strings")
        if self.token_level:
            data = [[vector(word) for word in text.split()] for text in texts]
        else:
            data = [vector(text) for text in texts]
        return Reply(json=data, headers=self._headers(self.provider_header))

    def _zero_shot(self, body: dict) -> Reply:
        labels = body["parameters"]["candidate_labels"]
        try:
            size = image_size(base64.b64decode(body["inputs"]))
        except Exception:  # noqa: BLE001
            return _error(400, "inputs is not a base64 image")
        if not labels or not size:
            return _error(400, "Bad zero-shot request")
        weights = [len(labels) - i for i in range(len(labels))]
        out = [{"label": label, "score": w / sum(weights)} for label, w in zip(labels, weights, strict=False)]
        return Reply(json=sorted(out, key=lambda d: -d["score"]), headers=self._headers(self.provider_header))

    def _caption(self, image_bytes: bytes) -> Reply:
        size = image_size(image_bytes)
        if not size:
            return _error(400, "Could not read the image")
        text = f"a photo of {size[0]}x{size[1]} pixels"
        return Reply(json=[{"generated_text": text}], headers=self._headers(self.provider_header))

    def _text_to_image(self, body: dict) -> Reply:
        from PIL import Image

        params = body.get("parameters") or {}
        if not isinstance(body.get("inputs"), str) or not body["inputs"]:
            return _error(400, "inputs must be the prompt")
        width, height, seed = int(params.get("width", 64)), int(params.get("height", 64)), int(params.get("seed", 0))
        colour = (seed % 256, (seed // 256) % 256, 128)
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
        headers = {"Content-Type": "image/png", **self._headers(self.provider_header)}
        return Reply(body=buffer.getvalue(), headers=headers)

    def _image_to_image(self, body: dict) -> Reply:
        """The image, `strength` of the way to `edit_colour(prompt)`, at `target_size` (default: its own)."""
        from PIL import Image

        image = _b64_image(body["inputs"]).convert("RGB")
        params = body.get("parameters") or {}
        prompt = params.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _error(400, "parameters.prompt is required for image-to-image")
        target = params.get("target_size") or {}
        size = (int(target.get("width", image.width)), int(target.get("height", image.height)))
        strength = float(params.get("strength", 0.8))
        edited = Image.blend(image, Image.new("RGB", image.size, edit_colour(prompt)), strength).resize(size)
        buffer = io.BytesIO()
        edited.save(buffer, format="PNG")
        headers = {"Content-Type": "image/png", **self._headers(self.provider_header)}
        return Reply(body=buffer.getvalue(), headers=headers)

    @staticmethod
    def _headers(provider: str | None) -> dict[str, str]:
        return {"x-inference-provider": provider} if provider else {}


# --- wire-format helpers, also used by tests to script replies ------------------------------------


def chat_chunk(model: str, text: str, *, finish: str | None = None) -> dict:
    delta = {"role": "assistant", "content": text}  # TGI repeats the role in every delta
    return {
        "object": "chat.completion.chunk",
        "id": "chatcmpl-fake",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "3.3.6-sha-fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def usage_chunk(model: str, prompt_tokens: int, completion_tokens: int) -> dict:
    chunk = chat_chunk(model, "")
    chunk["choices"] = []
    chunk["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return chunk


def loading(model: str, estimated_time: float) -> Reply:
    """HF's cold-start answer."""
    return Reply(503, json={"error": f"Model {model} is currently loading", "estimated_time": estimated_time})


def vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255.0 - 0.5 for b in digest[:DIM]]


def image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001
        return None


def edit_colour(prompt: str) -> tuple[int, int, int]:
    """The colour image-to-image moves an image towards, from its prompt."""
    digest = hashlib.md5(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def _b64_image(value: object):
    """The PIL image a base64 string holds, or None."""
    from PIL import Image

    if not isinstance(value, str):
        return None
    try:
        image = Image.open(io.BytesIO(base64.b64decode(value, validate=True)))
        image.load()
    except Exception:  # noqa: BLE001 - a prompt, or anything else that is not an image
        return None
    return image


def _json(request: Request):
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


def _error(status: int, message: str, **extra) -> Reply:
    return Reply(status, json={"error": message, **extra})
