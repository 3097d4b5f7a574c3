"""A small local HTTP server for vendor wire-format tests: real sockets, real HTTP/1.1.

A vendor fake supplies `route(request) -> Reply`; tests queue faults in front of it with
`server.script(Reply(...), ...)`. Replies can be JSON, raw bytes (malformed JSON), or SSE
streams sent chunk by chunk, optionally delayed before the first byte or cut mid-stream
(the connection is closed without the final chunk, as a dropped connection looks on the wire);
a plain body can be cut too (`cut_body_after`: fewer bytes than its Content-Length, then closed).
A reply's own `Date` header replaces the one the server adds (a server whose clock is off).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None  # raw body, e.g. malformed JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line is sent
    sse: list[str] | None = None  # SSE frames, each already formatted ("data: {...}\n\n")
    chunks: list[bytes] | None = None  # raw streamed chunks (e.g. JSON lines)
    interval_s: float = 0.0  # between streamed chunks
    cut_after: int | None = None  # close the connection after this many streamed chunks
    hold_s: float = 0.0  # after the last streamed chunk, wait this long before ending the body
    cut_body_after: int | None = None  # plain body: send this many bytes of it, then close the connection


class FakeServer:
    def __init__(self, route: Callable[[Request], Reply]):
        self.route = route
        self.requests: list[Request] = []
        self.connections = 0  # accepted so far: a client that reuses connections opens few
        self.finished = 0  # replies sent to their last byte (a held or cut body is not, until it ends)
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.requests.append(request)
                    scripted = server._script.popleft() if server._script else None
                reply = scripted or server.route(request)
                try:
                    complete = server._send(self, reply)
                except (BrokenPipeError, ConnectionResetError):
                    complete = False
                if complete:
                    with server._lock:
                        server.finished += 1

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client dropping a connection is normal here
                pass

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        """Serve these replies, in order, before falling back to the route."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.connections = 0
            self.finished = 0

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> bool:
        """Send `reply`; False if it was cut on purpose before its end."""
        if reply.delay_s:
            time.sleep(reply.delay_s)
        streamed = reply.sse if reply.sse is not None else reply.chunks
        handler.send_response_only(reply.status)
        handler.send_header("Server", handler.version_string())
        if not any(name.lower() == "date" for name in reply.headers):
            handler.send_header("Date", handler.date_time_string())
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if streamed is not None:
            if reply.sse is not None:
                handler.send_header("Content-Type", "text/event-stream")
                streamed = [frame.encode() for frame in reply.sse]
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for i, chunk in enumerate(streamed):
                if reply.cut_after is not None and i >= reply.cut_after:
                    handler.wfile.flush()
                    handler.connection.shutdown(socket.SHUT_RDWR)  # no final chunk: a broken stream
                    handler.close_connection = True
                    return False
                if reply.interval_s and i:
                    time.sleep(reply.interval_s)
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
            if reply.hold_s:
                time.sleep(reply.hold_s)
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
            return True
        body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
        if reply.body is None:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if reply.cut_body_after is not None:  # a reply broken off mid-body: the client saw it begin
            handler.wfile.write(body[: reply.cut_body_after])
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return False
        handler.wfile.write(body)
        handler.wfile.flush()
        return True


def sse(*payloads: Any, done: str | None = None) -> list[str]:
    """SSE frames for JSON payloads (`data: {...}`), optionally ending with `data: [DONE]`."""
    frames = [f"data: {json.dumps(p) if not isinstance(p, str) else p}\n\n" for p in payloads]
    if done is not None:
        frames.append(f"data: {done}\n\n")
    return frames
