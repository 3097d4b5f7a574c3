"""A fast OpenAI wire-format server for benchmarks, run in its own process.

The test fake (`tests.fakes.openai_server` on `ThreadingHTTPServer`) is built for fault modes,
not speed, and in the benchmark's own process it would compete with the client for the GIL.
This one is a small asyncio HTTP/1.1 server with keep-alive that answers
`POST /v1/chat/completions` with bodies built by the test fake's own wire-format helpers
(`chat_json`, `stream_frames`), precomputed once per model. Whoever calls it, the adapter or the
raw SDK, gets byte-identical replies after the same delay.

The model name sets the timing, so one server serves every case: `bench-<L>ms` waits L ms
before the status line; `bench-<L>ms-gap<G>ms` also waits G ms between streamed chunks;
`-words<N>` sets the reply length (default 32 words). `GET /stats` returns
`{"connections": n, "requests": n}` so a benchmark can check that both sides reuse connections.

    python -m bench.openai_wire      # prints "PORT <n>" once listening on 127.0.0.1
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tests.fakes.openai_server import chat_json, stream_frames

MODEL_RE = re.compile(r"bench-(?P<latency>[\d.]+)ms(?:-gap(?P<gap>[\d.]+)ms)?(?:-words(?P<words>\d+))?$")
DEFAULT_WORDS = 32
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "small",
    "models",
    "stream",
    "their",
    "answers",
]


def reply_text(n_words: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(n_words)]


class Replies:
    """(latency_s, gap_s, JSON response bytes, list of SSE chunk bytes) per model name, cached."""

    def __init__(self):
        self._cache: dict[str, tuple[float, float, bytes, list[bytes]]] = {}

    def get(self, model: str) -> tuple[float, float, bytes, list[bytes]]:
        if model not in self._cache:
            match = MODEL_RE.match(model)
            latency = float(match["latency"]) / 1000 if match else 0.0
            gap = float(match["gap"] or 0) / 1000 if match else 0.0
            n_words = int(match["words"] or DEFAULT_WORDS) if match else DEFAULT_WORDS
            words = reply_text(n_words)
            usage = {"prompt_tokens": 12, "completion_tokens": n_words, "total_tokens": 12 + n_words}
            body = json.dumps(chat_json(" ".join(words), model, "stop", usage)).encode()
            whole = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(body),
                body,
            )
            frames = [f.encode() for f in stream_frames(words, model, "stop", usage)]
            chunks = [b"%x\r\n%s\r\n" % (len(f), f) for f in frames]
            chunks[0] = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks[0]
            )
            chunks[-1] += b"0\r\n\r\n"
            self._cache[model] = (latency, gap, whole, chunks)
        return self._cache[model]


class Stats:
    connections = 0
    requests = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: Replies) -> None:
    Stats.connections += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == "content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            Stats.requests += 1
            if method == "GET" and path == "/stats":
                data = json.dumps({"connections": Stats.connections, "requests": Stats.requests}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(data), data)
                )
                continue
            request = json.loads(body)
            latency, gap, whole, chunks = replies.get(request.get("model", ""))
            if latency:
                await asyncio.sleep(latency)
            if not request.get("stream"):
                writer.write(whole)
                continue
            for i, chunk in enumerate(chunks):
                if gap and i > 1:  # the role chunk and the first word go together, then one word per gap
                    await writer.drain()
                    await asyncio.sleep(gap)
                writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


async def serve() -> None:
    replies = Replies()
    server = await asyncio.start_server(lambda r, w: handle(r, w, replies), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def running() -> Iterator[str]:
    """Start the server in a child process; yields its base URL (ending in /v1)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.openai_wire"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start (said {line!r})")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stats(base_url: str) -> dict:
    import httpx

    return httpx.get(base_url.removesuffix("/v1") + "/stats").json()


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        asyncio.run(serve())
