"""Unknown queue sessions are answered cheaply and logged once per address per minute.

Gradio answers `GET /gradio_api/queue/data?session_hash=<unknown>` by starting an event stream,
raising a 404 inside it and letting the server log the resulting "response already started" error
with two tracebacks: 300 such requests wrote 600 tracebacks (1.6 MB) to the log, and they are no
events, so no visitor limit applies. This ASGI middleware checks the session first and sends the
same one-message stream Gradio's page and client understand (`session_not_found`), without a
traceback; the log gets one line per client address per minute.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import parse_qs

import orjson
from gradio.server_messages import UnexpectedErrorMessage

from demos.widgets.body_limit import ASGIApp, Receive, Scope, Send

log = logging.getLogger("fm_gallery.sessions")

PATH = "/gradio_api/queue/data"
QUIET_S = 60.0  # one log line per address this often
ADDRESSES = 10_000  # addresses remembered for that; the oldest are forgotten first
STREAM = (
    "data: "
    + orjson.dumps(UnexpectedErrorMessage(message="404: Not Found", session_not_found=True).model_dump()).decode()
    + "\n\n"
).encode()


class UnknownSessions:
    """ASGI middleware: `known(session_hash)` says whether the queue holds that session."""

    def __init__(self, app: ASGIApp, known: Callable[[str], bool]) -> None:
        self.app = app
        self.known = known
        self._logged: OrderedDict[str, float] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or not scope.get("path", "").endswith(PATH):
            await self.app(scope, receive, send)
            return
        session = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [""])[0]
        if session and self.known(session):
            await self.app(scope, receive, send)
            return
        self._note(scope)
        await send(
            {
                "type": "http.response.start",
                "status": 200,  # as Gradio answers: its page reads the message, not the status
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        await send({"type": "http.response.body", "body": STREAM})

    def _note(self, scope: Scope) -> None:
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        now = time.monotonic()
        last = self._logged.get(address)
        if last is not None and now - last < QUIET_S:
            return
        self._logged[address] = now
        self._logged.move_to_end(address)
        while len(self._logged) > ADDRESSES:
            self._logged.popitem(last=False)
        log.warning("%s asked for queue sessions this server does not know (logged once a minute)", address)
