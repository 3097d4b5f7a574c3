"""A cap on every request body, enforced before Gradio reads it (an ASGI middleware).

Gradio parses a JSON body whole before any of the app's own limits run: a 300 MB body to
`/gradio_api/call/*` cost the server ~786 MB of memory that it kept. A Space has no proxy in front
of it, so the app refuses such bodies itself, with 413, from the `Content-Length` header when there
is one and by counting the bytes as they arrive otherwise (a chunked body): nothing past the cap
is ever buffered. Behind `--workers` the proxy applies the same caps first (`launcher/`).

Two caps: uploads (`/gradio_api/upload`, multipart, streamed to disk by Gradio, which also holds
each file to `max_file_size`) may carry several files; every other request (JSON: queue joins,
API calls) is small unless something is wrong. Both are settings (`body_caps`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MB = 1024 * 1024
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")


@dataclass(frozen=True)
class Caps:
    """The largest body accepted: `upload` for the upload route, `other` for everything else."""

    upload: int
    other: int

    def for_path(self, path: str) -> int:
        return self.upload if path.rstrip("/").endswith(UPLOAD_PATHS) else self.other


def body_caps(file_mb: int) -> Caps:
    """The caps from the environment: `FMG_MAX_UPLOAD_REQUEST_MB` (default: four files of the
    app's per-file limit) and `FMG_MAX_BODY_MB` (default 16: a long chat, a pasted corpus and an
    evaluation spec fit many times over)."""
    upload = _mb("FMG_MAX_UPLOAD_REQUEST_MB", 4 * file_mb)
    return Caps(upload=upload, other=_mb("FMG_MAX_BODY_MB", 16))


def _mb(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a whole number of megabytes, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1 (megabytes), not {value}")
    return value * MB


class BodyLimit:
    """ASGI middleware: 413 for a body over its path's cap, before the app has read past it."""

    def __init__(self, app: ASGIApp, caps: Caps) -> None:
        self.app = app
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.for_path(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _refuse(send, cap)
            return
        received = 0
        started = refused = False

        async def counted() -> Message:
            # Over the cap: answer 413 now and tell the app the client left (an exception raised
            # here would be caught by the app's body parser and turned into a 400).
            nonlocal received, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    refused = True
                    if not started:
                        started = True
                        await _refuse(send, cap)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out: whatever the app answers after it is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)


def _content_length(scope: Scope) -> int | None:
    """The declared length; a malformed one counts as too large (0 bytes would be a lie we'd trust)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else 1 << 62
    return None


async def _refuse(send: Send, cap: int) -> None:
    sentence = (
        f"This request is larger than the app accepts ({cap // MB} MB): send a smaller file or fewer items at a time."
    )
    body = json.dumps({"detail": sentence, "error": sentence}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
