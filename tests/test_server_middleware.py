"""The app's own ASGI middleware, through the running app with raw HTTP and gradio_client:
request bodies capped before Gradio reads them (demos/widgets/body_limit.py: declared and chunked
bodies, the upload route's own cap; on the middleware alone, nothing past the cap is handed over),
and unknown queue sessions answered without a traceback (demos/widgets/unknown_sessions.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client

from adapters import registry
from demos.widgets.body_limit import MB, BodyLimit, Caps, body_caps
from tests.fakes import providers as fake

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    mp.setenv("FMG_MAX_BODY_MB", "1")
    mp.setenv("FMG_MAX_UPLOAD_REQUEST_MB", "3")
    registry.register(fake.provider())
    import app

    app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_options()
    )
    try:
        yield app.demo.local_url.rstrip("/")
    finally:
        app.demo.close()
        mp.undo()
        registry.unregister(fake.NAME)


def test_a_declared_body_over_the_cap_is_refused_with_one_sentence(server):
    body = b'{"data": ["' + b"x" * (MB + 10) + b'"]}'
    reply = httpx.post(f"{server}/gradio_api/call/chat", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert "larger than the app accepts (1 MB)" in reply.json()["detail"]


def test_a_chunked_body_over_the_cap_is_refused_too(server):
    def chunks():  # no Content-Length: the middleware counts what arrives
        for _ in range(40):
            yield b"x" * 65536

    reply = httpx.post(f"{server}/gradio_api/call/chat", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413


def test_a_small_call_and_an_upload_under_its_own_cap_still_work(server):
    reply = httpx.post(f"{server}/gradio_api/call/chat", json={"data": ["hi", [], "", "", "", 8, 0.7, 1.0, -1]})
    assert reply.status_code == 200, reply.text
    two_mb = {"files": ("a.bin", b"\0" * (2 * MB), "application/octet-stream")}
    assert httpx.post(f"{server}/gradio_api/upload", files=two_mb).status_code == 200  # over 1 MB, under 3 MB
    four_mb = {"files": ("b.bin", b"\0" * (4 * MB), "application/octet-stream")}
    assert httpx.post(f"{server}/gradio_api/upload", files=four_mb).status_code == 413


def test_nothing_past_the_cap_reaches_the_app():
    read: list[int] = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            read.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict] = []
    pieces = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(10)]

    async def receive():
        return pieces.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/gradio_api/call/chat", "headers": []}
    asyncio.run(BodyLimit(app, Caps(upload=10_000, other=1_000))(scope, receive, send))
    assert sent[0]["status"] == 413
    assert sum(read) <= 1_000  # the piece that crossed the cap was never handed over
    assert len(pieces) == 8  # and the rest was not even read


def test_a_malformed_length_is_refused_and_settings_are_checked(monkeypatch):
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def never(scope, receive, send):
        raise AssertionError("the app ran")

    scope = {"type": "http", "path": "/x", "headers": [(b"content-length", b"-1")]}
    asyncio.run(BodyLimit(never, Caps(upload=10, other=10))(scope, None, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    monkeypatch.setenv("FMG_MAX_BODY_MB", "lots")
    with pytest.raises(ValueError, match="FMG_MAX_BODY_MB must be a whole number"):
        body_caps(25)


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if all(record is not seen for seen in self.records):  # one record reaches several loggers' handlers
            self.records.append(record)


def test_unknown_queue_sessions_cost_one_log_line_per_address_and_no_traceback(server):
    handler = Records()
    watched = [logging.getLogger(name) for name in ("uvicorn.error", "fm_gallery.sessions", "")]
    for logger in watched:
        logger.addHandler(handler)
    try:
        with httpx.Client() as client:
            for i in range(40):
                reply = client.get(f"{server}/gradio_api/queue/data", params={"session_hash": f"nobody-{i}"})
                assert reply.status_code == 200
                assert '"session_not_found":true' in reply.text  # what Gradio's page and client read
    finally:
        for logger in watched:
            logger.removeHandler(handler)
    mine = [r for r in handler.records if r.name == "fm_gallery.sessions"]
    assert len(mine) == 1 and "127.0.0.1" in mine[0].getMessage()
    assert not [r for r in handler.records if r.exc_info or "Exception in ASGI" in r.getMessage()]


def test_a_real_session_still_streams_through_both_middlewares(server):
    client = Client(server, verbose=False)
    reply = client.predict("hello there", [], fake.NAME, "", "", 32, 0.7, 1.0, -1, api_name="/chat")
    assert "hello there" in str(reply)
