"""Uploads in public mode: each visitor's bytes per hour, and the upload folder's total size.

Gradio writes an upload to its temp folder before any handler runs and removes it an hour later,
and holds each file to `max_file_size`, but nothing limits a visitor's total: 40 uploads of 24 MB
from one address wrote 960 MB in 20 s. This ASGI middleware checks an upload's declared size
before Gradio reads a byte of it: against the visitor's hourly budget (`upload_mb_per_hour`,
counted by `services.quotas` like every quota) and against the folder's total
(`temp_folder_mb`). An upload that declares no length is refused (411): its size could not be
checked first. `body_limit` still counts the bytes that arrive, so a short declaration gains
nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from starlette.requests import Request

from demos.widgets.body_limit import MB, UPLOAD_PATHS, ASGIApp, Receive, Scope, Send
from services import public, quotas, visitors

SIZE_TTL_S = 5.0  # the folder's size is measured at most this often


class UploadBudget:
    """ASGI middleware: public-mode uploads within the visitor's and the folder's budgets."""

    def __init__(self, app: ASGIApp, folder: Callable[[], str]) -> None:
        self.app = app
        self.size = FolderSize(folder)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not scope.get("path", "").rstrip("/").endswith(UPLOAD_PATHS)
            or not public.enabled()
        ):
            await self.app(scope, receive, send)
            return
        length = _declared(scope)
        if length is None:
            await _answer(
                send, 411, "Send the upload with its Content-Length: its size is checked before it is stored."
            )
            return
        settings = public.limits()
        if self.size.bytes() + length > settings.temp_folder_mb * MB:
            await _answer(send, 503, "The server's upload space is full for now: try again in a few minutes.")
            return
        try:
            quotas.upload(visitors.of(Request(scope)), length)
        except quotas.LimitReached as refused:
            await _answer(send, 429, str(refused))
            return
        self.size.added(length)
        await self.app(scope, receive, send)


class FolderSize:
    """The total size of the files under a folder, measured at most every `SIZE_TTL_S` seconds
    (with what was let in since added), so a flood of uploads costs no walk each."""

    def __init__(self, folder: Callable[[], str]) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._measured = 0
        self._at = -SIZE_TTL_S

    def bytes(self) -> int:
        with self._lock:
            if time.monotonic() - self._at >= SIZE_TTL_S:
                self._measured, self._at = _walk(self.folder()), time.monotonic()
            return self._measured

    def added(self, nbytes: int) -> None:
        with self._lock:
            self._measured += nbytes


def _walk(folder: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we walked
    return total


def _declared(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _answer(send: Send, status: int, sentence: str) -> None:
    body = json.dumps({"detail": sentence, "error": sentence}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
