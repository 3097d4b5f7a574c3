"""Public mode under abuse: hosted calls per visitor against the quota, the server's memory while
visitors send decompression bombs, and a well-behaved visitor's latency while others hammer.

The app runs as `python app.py` runs it (`bench.app_launcher`, in its own process, a fresh one per
phase) with `FMG_PUBLIC=1` and the default quotas (10 hosted calls per visitor per minute, 4
events queued or running per visitor), OpenAI pointed at a fake vendor on 127.0.0.1
(`OPENAI_BASE_URL`, a dummy key) that answers every route after 50 ms in the test fake's wire
format (`tests.fakes.openai_server.OpenAIFake`) and logs every request it gets. The bench is the
proxy: uvicorn believes its `X-Forwarded-For` (`FORWARDED_ALLOW_IPS=127.0.0.1`), so every
simulated visitor has an address of its own. Each request a visitor sends carries a tag
(`visitor-0007-chat`) in text that reaches the vendor (message, labels, prompt, corpus), so the
vendor's log says whose call each request was. Visitors speak Gradio's wire protocol over raw
HTTP (POST /gradio_api/queue/join, then the SSE of /gradio_api/queue/data; files as
gradio_client's `handle_file` sends them: POST /gradio_api/upload, then the returned path), run by
asyncio in a child process (`--hammer`), so their CPU never competes with the measuring client's
GIL. A visitor either keeps one page session per loop (as a browser tab or a gradio_client
`Client`) or sends a new session hash with every event (as a script may).

1. Calls per visitor: one visitor loops every hosted endpoint at once, each as fast as it can
   (a new event as soon as the last ends; 20 ms after a refused join; a new session each event),
   for 60 s: /chat, /compare with 6 completion targets (gpt-4o-mini and gpt-4.1-mini, priced in
   prices.toml, plus 4 unpriced models the owner lists, `allow_unpriced = true`), /compare with
   the 2 priced ones, /classify and /caption (gpt-4o-mini, a small PNG), /generate (dall-e-2,
   256x256) and /search (text-embedding-3-small; a new 39,000-character corpus each time, under
   the public cap, in 20-word passages). Then 20 such visitors at once. Target: a visitor's vendor
   requests in any 55 s at most the per-minute limit + 1. (The quota is a moving minute, so a 10 s
   run allows as many calls as a 60 s one; and it is counted when a call is charged, a little
   before the request reaches the vendor: events queued before a 60 s run ends are charged after
   the run's first calls have left the window, so a run's total may rightly reach twice the limit,
   and calls charged a minute apart may reach the vendor 59.5 s apart. Hence 55 s.)
2. Memory: 4 visitors (2 loops each, one session per loop) send a 20000 x 20000 1-bit PNG (400
   MP in about 50 KB) to /classify as a `data:` URI in a file payload, as a bare `data:` string,
   and as an upload, for 12 s: the server's peak RSS (VmHWM, reset through
   /proc/<pid>/clear_refs, and VmRSS sampled every 10 ms) over its idle RSS after a warm-up.
   Target: under 100 MB. Figure only: 4 visitors uploading a 6300 x 6300 PNG (39.7 MP, under the
   40 MP limit, so accepted and decoded by design).
3. Fairness: a well-behaved visitor (a new address and session every 5 chats, 0.1 s between
   chats) chats with gpt-4o-mini: p95 from its join request to the completed event on the idle
   server (before and after the load, pooled) and while 5 abusive visitors loop every endpoint
   above plus the three bombs, once with one session per loop and once with a new session per
   event (the server's RSS around that second load gives the cost of a session). Target: p95
   under load at most 1.5x idle, for each.

The CPU model, and each phase's server / client / vendor CPU use, are printed with the figures:
on a small machine the visitors' client and the vendor share the cores with the server.

    python -m bench.abuse [--quick] [--save] [--seconds 60] [--crowd 20] [--only calls|memory|latency]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import io
import json
import os
import re
import secrets
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from bench import timing
from bench.app_streaming import Server

CALLS_PER_MINUTE = 10  # the app's default (services.public.Limits); set explicitly for the run
EVENTS_PER_VISITOR = 4
VENDOR_LATENCY_S = 0.05
WINDOW_S = 60.0  # the quota's moving window
# A call is charged before its request reaches the vendor, and under load that gap varies by a
# few seconds: calls charged in two windows (a minute apart) can reach the vendor 59.5 s apart.
LAG_SLACK_S = 5.0
COUNTED_S = WINDOW_S - LAG_SLACK_S
PRICED = ["gpt-4o-mini", "gpt-4.1-mini"]  # chat models with prices in adapters/prices.toml
UNPRICED = ["gpt-4o", "gpt-4.1", "gpt-4.1-nano", "o4-mini"]  # listed by the owner, run with allow_unpriced
HOSTED = ("chat", "compare6", "compare2", "classify", "caption", "generate", "search")
BOMBS = ("bomb_data_uri", "bomb_data_string", "bomb_upload")
API_NAMES = {
    "chat": "chat",
    "compare6": "compare",
    "compare2": "compare",
    "classify": "classify",
    "caption": "caption",
    "generate": "generate",
    "search": "search",
    "bomb_data_uri": "classify",
    "bomb_data_string": "classify",
    "bomb_upload": "classify",
    "near_limit_upload": "classify",
}
TAG = re.compile(rb"visitor-(\d{4})-([a-z0-9_]+)")
BOMB_SIDE = 20_000  # 400 MP, 10x Pillow's limit here
NEAR_SIDE = 6_300  # 39.7 MP: just under adapters.inputs.MAX_IMAGE_PIXELS (40 MP)
CORPUS_CHARS = 39_000  # under the public cap (40,000)
MAX_EVENTS_PER_LOOP = 5_000
EVENT_TIMEOUT_S = 60.0
JOIN_BACKOFF_S = 0.02
GRADIO_SESSIONS_KEPT = 10_000  # Gradio's default state_session_capacity (queue()), which app.py leaves as is
FMG_CONFIG = f"""
[models.openai]
image-generation = "dall-e-2"

[public]
allow_unpriced = true

[public.models.openai]
completion = {json.dumps(PRICED + UNPRICED)}
"""


# --- judging (pure: the smoke test checks these on hand-made numbers) ----------------------------


def max_in_window(times: Iterable[float], window_s: float = WINDOW_S) -> int:
    """The most events in any `window_s`-long window (the quota's own measure)."""
    ordered, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def judge_calls(label: str, times: dict[str, list[float]], limit: int) -> dict:
    """Target 1: the busiest visitor's vendor requests in any `COUNTED_S` window (the quota's
    minute less the slack for the lag between a charge and its request reaching the vendor),
    against the per-minute limit + 1. A run shorter than that is counted whole."""
    busiest = max((max_in_window(ts, COUNTED_S) for ts in times.values()), default=0)
    return timing.target(
        f"vendor calls per visitor in any {COUNTED_S:g} s, {label} (max)", busiest, limit + 1, higher_is_better=False
    )


def judge_memory(baseline_kb: float, peak_kb: float, goal_mb: float = 100.0) -> dict:
    """Target 2: the server's peak RSS over its idle RSS, in MB."""
    return timing.target(
        "server memory growth under bombs (MB)",
        (peak_kb - baseline_kb) / 1024,
        goal_mb,
        higher_is_better=False,
        unit=" MB",
    )


def judge_latency(idle_s: Sequence[float], loaded_s: Sequence[float], label: str = "loaded", goal: float = 1.5) -> dict:
    """Target 3: the well-behaved visitor's p95 under load over its p95 on the idle server."""
    ratio = timing.percentile(loaded_s, 95) / timing.percentile(idle_s, 95)
    return timing.target(f"fair visitor chat p95, {label} / idle (x)", ratio, goal, higher_is_better=False, unit="x")


# --- images --------------------------------------------------------------------------------------


def one_bit_png(side: int) -> bytes:
    """A black side x side 1-bit PNG, compressed row by row (never held decoded here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte 0, then the row's bits
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(side)]
    idat = b"".join(parts) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def small_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (220, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the fake vendor (its own process: python -m bench.abuse --vendor LATENCY_MS) ----------------


def _wire(reply) -> bytes:
    """A `tests.fakes.http_server.Reply` (JSON or SSE) as HTTP/1.1 bytes."""
    status = f"HTTP/1.1 {reply.status} {http.HTTPStatus(reply.status).phrase}\r\n".encode()
    if reply.sse is not None:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(f.encode()), f.encode()) for f in reply.sse)
        return status + b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
    return status + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def _vendor_connection(reader, writer, fake, latency_s: float, calls: list) -> None:
    from tests.fakes.http_server import Request

    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path == "/stats":
                data = json.dumps({"calls": calls, "cpu_s": sum(os.times()[:2])}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(data), data)
                )
                continue
            tag = TAG.search(body)
            route = path.split("?")[0]
            texts = 1
            if route.endswith("/embeddings"):
                with contextlib.suppress(ValueError, AttributeError):
                    given = json.loads(body).get("input")
                    texts = len(given) if isinstance(given, list) else 1
            if len(calls) < 1_000_000:
                calls.append([time.time(), int(tag[1]) if tag else -1, tag[2].decode() if tag else "", route, texts])
            reply = fake(Request(method, path, headers, body))
            await asyncio.sleep(latency_s)
            writer.write(_wire(reply))
            await writer.drain()
    finally:
        writer.close()


async def _serve_vendor(latency_s: float) -> None:
    from tests.fakes.openai_server import OpenAIFake

    fake, calls = OpenAIFake(key=None), []
    server = await asyncio.start_server(
        lambda r, w: _vendor_connection(r, w, fake, latency_s, calls), "127.0.0.1", 0, limit=2**24
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class Vendor:
    """The fake vendor in a child process; `calls()` is its log: [wall time, visitor, endpoint, path]."""

    def __init__(self, latency_s: float = VENDOR_LATENCY_S):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.abuse", "--vendor", str(latency_s)], stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the fake vendor did not start (it said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def stats(self) -> dict:
        import httpx

        return httpx.get(self.url.removesuffix("/v1") + "/stats", timeout=30).json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the app -------------------------------------------------------------------------------------


@contextlib.contextmanager
def public_app(vendor: Vendor, workdir: str, serve=Server) -> Iterator[Server]:
    """The app in public mode as `python app.py` serves it (bench.app_launcher), its OpenAI
    pointed at the fake vendor. `serve` (`Server`, or bench.scale_proxy's app behind nginx) copies
    this process's environment when it starts."""
    config = Path(workdir) / "fm-gallery.toml"
    config.write_text(FMG_CONFIG)
    uploads = tempfile.mkdtemp(prefix="gradio-", dir=workdir)
    settings = {
        "FMG_PUBLIC": "1",
        "FMG_CONFIG": str(config),
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "FMG_PUBLIC_CALLS_PER_MINUTE": str(CALLS_PER_MINUTE),
        "FMG_PUBLIC_EVENTS_PER_VISITOR": str(EVENTS_PER_VISITOR),
        "OPENAI_BASE_URL": vendor.url,
        "OPENAI_API_KEY": "sk-bench-dummy-key-0000",
        "FMG_LEADERBOARD": str(Path(workdir) / "board.sqlite3"),
        "GRADIO_TEMP_DIR": uploads,
        "FMG_VISITOR_SALT": "bench-abuse",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        server = serve([], 10, 100.0)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield server
    finally:
        server.stop()


def api_ids(url: str) -> dict[str, int]:
    """Each named event's fn_index, from the page's config."""
    import httpx

    config = httpx.get(f"{url}config", timeout=30).json()
    return {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


class MemorySampler:
    """VmRSS of a process every 10 ms in a thread; `peak_kb` is the largest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak_kb = max(self.peak_kb, memory_kb(self.pid)["VmRSS"])
            self._stop.wait(0.01)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or "unknown"


# --- visitors (raw Gradio wire protocol, asyncio; in their own process: --hammer PLAN) -------------


def outcome_of(message: dict) -> str:
    """What a process_completed message says, in a word."""
    if message.get("success"):
        return "ok"
    error = str((message.get("output") or {}).get("error") or "")
    for needle, word in (
        ("hosted calls in the last minute", "quota: calls/min"),
        ("daily budget", "quota: $"),
        ("budget for hosted", "quota: $ (all)"),
        ("uploaded through this page", "refused: not an upload"),
        ("megapixel", "refused: pixels"),
        ("could not be read", "refused: unreadable"),
    ):
        if needle in error:
            return word
    return "error: " + (error[:70] or "(no message)")


async def run_event(
    client, url: str, fn_index: int, data: list, address: str, session: str | None = None, marks: dict | None = None
) -> tuple[str, float, dict | None]:
    """One event as a browser or gradio_client sends it: (outcome, seconds, completed message).
    `session`: the page's session hash (None: a new one, as a script that never reuses one);
    `marks["starts"]` is when the queue started it (process_starts), in seconds after the join."""
    try:
        async with asyncio.timeout(EVENT_TIMEOUT_S):  # SSE heartbeats would keep a read timeout from firing
            return await _run_event(client, url, fn_index, data, address, session or secrets.token_hex(8), marks)
    except TimeoutError:
        return "client: timeout", EVENT_TIMEOUT_S, None


async def _run_event(
    client, url: str, fn_index: int, data: list, address: str, session: str, marks: dict | None
) -> tuple[str, float, dict | None]:
    headers = {"X-Forwarded-For": address}
    started = time.perf_counter()
    joined = await client.post(
        f"{url}gradio_api/queue/join",
        headers=headers,
        json={"data": data, "fn_index": fn_index, "session_hash": session},
    )
    if joined.status_code == 503:
        kind = "refused: visitor's events" if "already have" in joined.text else "refused: queue full"
        return kind, time.perf_counter() - started, None
    if joined.status_code == 429:  # the proxy's own limit (bench.scale_proxy)
        return "refused: proxy", time.perf_counter() - started, None
    if joined.status_code != 200:
        return f"http {joined.status_code}", time.perf_counter() - started, None
    async with client.stream(
        "GET", f"{url}gradio_api/queue/data", params={"session_hash": session}, headers=headers
    ) as events:
        async for line in events.aiter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if marks is not None and message.get("msg") == "process_starts":
                marks["starts"] = time.perf_counter() - started
            if message.get("msg") == "process_completed":
                return outcome_of(message), time.perf_counter() - started, message
    return "error: stream ended", time.perf_counter() - started, None


def corpus_text(tag: str, n: int) -> str:
    words = [
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
    out, size, i = [], 0, 0
    while size < CORPUS_CHARS:
        word = tag if i % 10 == 0 else f"{words[i % len(words)]}{n}"
        out.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(out)


def file_data(path: str, name: str = "image.png") -> dict:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


async def upload(client, url: str, address: str, name: str, content: bytes) -> str:
    done = await client.post(
        f"{url}gradio_api/upload", headers={"X-Forwarded-For": address}, files={"files": (name, content, "image/png")}
    )
    done.raise_for_status()
    return done.json()[0]


async def event_data(
    client, url: str, endpoint: str, visitor: int, address: str, n: int, images: dict, small_path: str | None
) -> list:
    tag = f"visitor-{visitor:04d}-{endpoint}"
    if endpoint == "chat":
        return [f"{tag}: question {n}", [], "openai", "", "", 64, 0.7, 1.0, -1]
    if endpoint in ("compare6", "compare2"):
        targets = [f"openai:{m}" for m in (PRICED + UNPRICED if endpoint == "compare6" else PRICED)]
        return ["completion", targets, f"{tag}: question {n}", None, "", "", 3, 64, 0.7, 1, 64, 64, -1, False, "", None]
    if endpoint == "classify":
        return [file_data(small_path), f"red, blue, {tag}", "openai", ""]
    if endpoint == "caption":
        return [file_data(small_path), f"Describe it ({tag}, {n}).", "openai", ""]
    if endpoint == "generate":
        return [f"a red square ({tag}, {n})", "", 1, 256, 256, 0, -1, "openai", ""]
    if endpoint == "search":
        return [f"{tag} fox {n}", corpus_text(tag, n), None, 3, 20, "openai", "", False]
    labels = f"cat, dog, {tag}"
    if endpoint == "bomb_data_uri":
        uri = "data:image/png;base64," + base64.b64encode(images["bomb"]).decode()
        return [
            {"path": None, "url": uri, "orig_name": "bomb.png", "meta": {"_type": "gradio.FileData"}},
            labels,
            "openai",
            "",
        ]
    if endpoint == "bomb_data_string":
        return ["data:image/png;base64," + base64.b64encode(images["bomb"]).decode(), labels, "openai", ""]
    if endpoint == "bomb_upload":
        return [
            file_data(await upload(client, url, address, "bomb.png", images["bomb"]), "bomb.png"),
            labels,
            "openai",
            "",
        ]
    if endpoint == "near_limit_upload":
        return [
            file_data(await upload(client, url, address, "near.png", images["near"]), "near.png"),
            labels,
            "openai",
            "",
        ]
    raise ValueError(endpoint)


async def hammer(plan: dict, stop: asyncio.Event) -> dict:
    """Every visitor loops every endpoint of the plan (`loops` loops each) until the plan's
    duration has passed or `stop` is set; returns outcomes per endpoint and hosted calls the app
    admitted per visitor (an ok event, or each answered target of a comparison). Plan "sessions":
    "per_loop" (each loop one page session, as a browser tab or a gradio_client Client) or
    "per_event" (a new session hash for every event, as a script may send)."""
    import httpx

    images = {k: Path(v).read_bytes() for k, v in plan["images"].items()}
    url, fns = plan["url"], plan["fns"]
    outcomes: dict[str, Counter] = defaultdict(Counter)
    admitted: Counter = Counter()
    seconds: dict[str, list[float]] = defaultdict(list)
    deadline = time.perf_counter() + plan["duration_s"]
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=400)
    async with contextlib.AsyncExitStack() as clients:
        shared = await clients.enter_async_context(httpx.AsyncClient(timeout=EVENT_TIMEOUT_S, limits=limits))
        own: dict[str, httpx.AsyncClient] = {}

        async def client_for(address: str) -> httpx.AsyncClient:
            """Behind a proxy (plan "bind") each visitor connects from its own loopback address."""
            if not plan.get("bind"):
                return shared
            if address not in own:
                transport = httpx.AsyncHTTPTransport(local_address=address, limits=limits)
                own[address] = await clients.enter_async_context(
                    httpx.AsyncClient(timeout=EVENT_TIMEOUT_S, transport=transport)
                )
            return own[address]

        async def loop(visitor: int, address: str, endpoint: str) -> None:
            session = secrets.token_hex(8) if plan.get("sessions", "per_event") == "per_loop" else None
            address = loopback(address) if plan.get("bind") else address
            client = await client_for(address)
            small_path = None
            while endpoint in ("classify", "caption") and small_path is None:
                if stop.is_set() or time.perf_counter() >= deadline:
                    return
                try:
                    small_path = await upload(client, url, address, "small.png", images["small"])
                except httpx.HTTPError:  # refused by the proxy's upload limit: try again shortly
                    await asyncio.sleep(0.2)
            for n in range(plan.get("max_events", MAX_EVENTS_PER_LOOP)):
                if stop.is_set() or time.perf_counter() >= deadline:
                    return
                try:
                    data = await event_data(client, url, endpoint, visitor, address, n, images, small_path)
                    outcome, took, message = await run_event(
                        client, url, fns[API_NAMES[endpoint]], data, address, session
                    )
                except httpx.HTTPError as err:
                    outcome, took, message = f"client: {type(err).__name__}", 0.0, None
                outcomes[endpoint][outcome] += 1
                seconds[endpoint].append(took)
                if outcome == "ok":
                    if endpoint.startswith("compare"):
                        targets = message["output"]["data"][0]["targets"]
                        answered = sum(1 for t in targets if not t.get("error"))
                        admitted[visitor] += answered
                        for t in targets:
                            if t.get("error"):
                                outcomes[endpoint]["target " + outcome_of({"output": {"error": t["error"]}})] += 1
                    else:
                        admitted[visitor] += 1
                elif outcome.startswith(("refused: visitor", "refused: queue", "refused: proxy", "client")):
                    await asyncio.sleep(JOIN_BACKOFF_S)

        await asyncio.gather(
            *(
                loop(v["id"], v["address"], endpoint)
                for v in plan["visitors"]
                for endpoint in plan["endpoints"]
                for _ in range(plan.get("loops", 1))
            )
        )
    joined = sum(
        n
        for counts in outcomes.values()
        for k, n in counts.items()
        if not k.startswith(("refused: visitor", "refused: queue", "refused: proxy", "client", "http", "target "))
    )
    return {
        "outcomes": {k: dict(v) for k, v in outcomes.items()},
        "admitted": {str(k): v for k, v in admitted.items()},
        "joined": joined,
        "events_p50_s": {k: round(statistics.median(v), 4) for k, v in seconds.items() if v},
        "cpu_s": sum(os.times()[:2]),
    }


def _hammer_main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())

    async def go() -> dict:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        return await hammer(plan, stop)

    result = asyncio.run(go())
    print("RESULT " + json.dumps(result), flush=True)


class Hammer:
    """Abusive visitors in a child process; `stop()` ends their loops and returns what they saw."""

    def __init__(self, workdir: str, plan: dict):
        path = Path(tempfile.mkstemp(prefix="plan-", suffix=".json", dir=workdir)[1])
        path.write_text(json.dumps(plan))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.abuse", "--hammer", str(path)], stdout=subprocess.PIPE, text=True
        )

    def wait(self, timeout: float) -> dict:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.wall_s = time.perf_counter() - self.started
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"the visitors' process failed (exit {self.proc.returncode})")
        return json.loads(line[7:])

    def stop(self, timeout: float = EVENT_TIMEOUT_S + 30) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)


_next_visitor = iter(range(1, 10_000))


def visitors(n: int) -> list[dict]:
    out = []
    for _ in range(n):
        v = next(_next_visitor)
        out.append({"id": v, "address": f"198.18.{v // 250}.{v % 250 + 1}"})
    return out


# --- phases --------------------------------------------------------------------------------------


def calls_phase(vendor: Vendor, workdir: str, images: dict, n_visitors: int, run_s: float) -> dict:
    """Phase 1: `n_visitors` visitors loop every hosted endpoint for `run_s` s on a fresh server."""
    with public_app(vendor, workdir) as server:
        fns = api_ids(server.url)
        crowd = visitors(n_visitors)
        ids = {v["id"] for v in crowd}
        plan = {
            "url": server.url,
            "fns": fns,
            "visitors": crowd,
            "endpoints": list(HOSTED),
            "duration_s": run_s,
            "images": images,
            "sessions": "per_event",
        }
        cpu0, vendor_cpu0 = server.cpu_s(), vendor.stats()["cpu_s"]
        hammer_ = Hammer(workdir, plan)
        result = hammer_.wait(run_s + EVENT_TIMEOUT_S + 30)
        wall = hammer_.wall_s
        time.sleep(0.5)  # the last vendor replies
        stats = vendor.stats()
        cpu = server.cpu_s() - cpu0
    calls = [c for c in stats["calls"] if c[1] in ids]
    per_visitor = Counter(str(c[1]) for c in calls)
    by_endpoint = Counter(c[2] for c in calls)
    times = {str(v): [c[0] for c in calls if c[1] == v] for v in ids}
    windowed = {v: max_in_window(ts, COUNTED_S) for v, ts in times.items()}
    # a search embeds its corpus in batches and then the query: counted once, by its query request
    charged = {str(v): [c[0] for c in calls if c[1] == v and not (c[2] == "search" and c[4] > 1)] for v in ids}
    admitted = result["admitted"]
    return {
        "visitors": n_visitors,
        "run_s": run_s,
        "vendor_calls": len(calls),
        "per_visitor_max": max(per_visitor.values(), default=0),
        "per_visitor_min": min([per_visitor.get(str(v), 0) for v in ids]),
        "per_visitor": dict(per_visitor),
        "max_in_counted_window": max(windowed.values(), default=0),
        "max_in_60s_window": max((max_in_window(ts, WINDOW_S) for ts in times.values()), default=0),
        "visitors_over_limit": sum(1 for n in windowed.values() if n > CALLS_PER_MINUTE + 1),
        "max_in_counted_window_one_per_search": max(
            (max_in_window(ts, COUNTED_S) for ts in charged.values()), default=0
        ),
        "vendor_requests_per_search": round(
            by_endpoint["search"] / max(1, result["outcomes"].get("search", {}).get("ok", 0)), 2
        ),
        "_times": times,
        "admitted_per_visitor_max": max(admitted.values(), default=0),
        "vendor_calls_by_endpoint": dict(by_endpoint),
        "events": {k: sum(v.values()) for k, v in result["outcomes"].items()},
        "outcomes": result["outcomes"],
        "event_p50_s": result["events_p50_s"],
        "server_cores": round(cpu / wall, 2),
        "client_cores": round(result["cpu_s"] / wall, 2),
        "vendor_cores": round((stats["cpu_s"] - vendor_cpu0) / wall, 2),
    }


def memory_phase(vendor: Vendor, workdir: str, images: dict, quick: bool) -> dict:
    """Phase 2: bombs to /classify; then, for a figure, near-limit images."""
    bomb_s, near_s = (4.0, 3.0) if quick else (12.0, 5.0)
    with public_app(vendor, workdir) as server:
        fns = api_ids(server.url)
        pid = server.proc.pid
        warm = visitors(1)  # first-call costs (imports, PIL's plugins, the run log) are not the attack's
        plan = {
            "url": server.url,
            "fns": fns,
            "visitors": warm,
            "endpoints": ["classify", "chat", *BOMBS],
            "duration_s": 60,
            "max_events": 1,
            "images": images,
        }
        Hammer(workdir, plan).wait(120)
        time.sleep(2.0)
        idle = []
        for _ in range(5):
            idle.append(memory_kb(pid)["VmRSS"])
            time.sleep(0.1)
        baseline = statistics.median(idle)
        hwm_reset = reset_peak(pid)
        cpu0 = server.cpu_s()
        bombers = visitors(4)
        plan = {
            "url": server.url,
            "fns": fns,
            "visitors": bombers,
            "endpoints": list(BOMBS),
            "loops": 2,
            "duration_s": bomb_s,
            "images": images,
            "sessions": "per_loop",
        }
        with MemorySampler(pid) as sampler:
            hammer_ = Hammer(workdir, plan)
            bombs = hammer_.wait(bomb_s + EVENT_TIMEOUT_S + 30)
            time.sleep(0.5)
        cpu = server.cpu_s() - cpu0
        status = memory_kb(pid)
        peak = max(sampler.peak_kb, status["VmHWM"] if hwm_reset else 0)
        after = status["VmRSS"]

        # near-limit images: accepted (under 40 MP), so decoded; 4 visitors, one at a time each
        time.sleep(1.0)
        near_base = memory_kb(pid)["VmRSS"]
        near_reset = reset_peak(pid)
        plan = {
            "url": server.url,
            "fns": fns,
            "visitors": visitors(4),
            "endpoints": ["near_limit_upload"],
            "duration_s": near_s,
            "images": images,
            "sessions": "per_loop",
        }
        with MemorySampler(pid) as sampler:
            near = Hammer(workdir, plan).wait(near_s + EVENT_TIMEOUT_S + 30)
            time.sleep(0.5)
        near_peak = max(sampler.peak_kb, memory_kb(pid)["VmHWM"] if near_reset else 0)
    return {
        "baseline_kb": baseline,
        "peak_kb": peak,
        "after_kb": after,
        "growth_mb": round((peak - baseline) / 1024, 1),
        "hwm_reset": hwm_reset,
        "bomb_s": bomb_s,
        "bomb_png_bytes": len(Path(images["bomb"]).read_bytes()),
        "events": {k: sum(v.values()) for k, v in bombs["outcomes"].items()},
        "outcomes": bombs["outcomes"],
        "server_cores": round(cpu / hammer_.wall_s, 2),
        "near_limit": {
            "side": NEAR_SIDE,
            "visitors": 4,
            "seconds": near_s,
            "baseline_kb": near_base,
            "peak_kb": near_peak,
            "growth_mb": round((near_peak - near_base) / 1024, 1),
            "outcomes": near["outcomes"],
        },
    }


def loopback(address: str) -> str:
    """198.18.a.b as 127.18.a.b: an address this machine can connect from (all of 127/8 is local)."""
    return "127." + address.split(".", 1)[1]


def fair_chats(url: str, fn_index: int, n: int, budget_s: float, bind: bool = False) -> dict:
    """A well-behaved visitor: one chat at a time, 0.1 s apart, a new address (and page session)
    every 5 chats, so it stays within its own quota. `seconds`: from the join request to the
    completed event; `waits`: to the queue's process_starts."""
    import httpx

    async def go() -> dict:
        out = {"seconds": [], "waits": [], "outcomes": Counter()}
        deadline = time.perf_counter() + budget_s
        client = None
        try:
            address = session = None
            for i in range(n):
                if time.perf_counter() >= deadline:
                    break
                if i % 5 == 0:
                    address, session = visitors(1)[0]["address"], secrets.token_hex(8)
                    if bind or client is None:  # behind a proxy: connect from the visitor's own address
                        if client is not None:
                            await client.aclose()
                        address = loopback(address) if bind else address
                        transport = httpx.AsyncHTTPTransport(local_address=address) if bind else None
                        client = httpx.AsyncClient(timeout=EVENT_TIMEOUT_S, transport=transport)
                data = [f"Hello, how are you? ({i})", [], "openai", "", "", 64, 0.7, 1.0, -1]
                marks: dict = {}
                outcome, seconds, _ = await run_event(client, url, fn_index, data, address, session, marks)
                out["outcomes"][outcome] += 1
                if outcome == "ok":
                    out["seconds"].append(seconds)
                    out["waits"].append(marks.get("starts", seconds))
                await asyncio.sleep(0.1)
        finally:
            if client is not None:
                await client.aclose()
        return out

    return asyncio.run(go())


def latency_phase(vendor: Vendor, workdir: str, images: dict, quick: bool, serve=Server) -> dict:
    """Phase 3: the fair visitor's chats on the idle server, while 5 abusive visitors loop every
    endpoint and bomb (first as browser tabs, one session per loop; then as a script, a new
    session per event), and idle again. The server's RSS around the second load says what each
    new session costs it."""
    n, budget_s = (8, 8.0) if quick else (25, 20.0)
    ms = lambda values, p: round(timing.percentile(values, p) * 1000, 1) if values else None  # noqa: E731
    with public_app(vendor, workdir, serve) as server:
        fns, pid = api_ids(server.url), server.proc.pid
        bind = getattr(server, "binds", False)  # behind nginx: each visitor's own source address
        fair_chats(server.url, fns["chat"], 3, 30, bind)  # warm-up
        idle = fair_chats(server.url, fns["chat"], n, 60, bind)
        loads = {}
        for sessions in ("per_loop", "per_event"):
            rss_before = memory_kb(pid)["VmRSS"]
            plan = {
                "url": server.url,
                "fns": fns,
                "visitors": visitors(5),
                "endpoints": [*HOSTED, *BOMBS],
                "duration_s": budget_s + 30,
                "images": images,
                "sessions": sessions,
                "bind": bind,
            }
            cpu0 = server.cpu_s()
            hammer_ = Hammer(workdir, plan)
            time.sleep(1.0)  # the abusers are joined and running
            fair = fair_chats(server.url, fns["chat"], n, budget_s, bind)
            load = hammer_.stop()
            cpu = server.cpu_s() - cpu0
            time.sleep(1.0)
            rss_after = memory_kb(pid)["VmRSS"]
            loads[sessions] = {
                "fair": fair,
                "abuser_events": {k: sum(v.values()) for k, v in load["outcomes"].items()},
                "abuser_outcomes": load["outcomes"],
                "abuser_events_joined": load["joined"],
                "server_cores": round(cpu / hammer_.wall_s, 2),
                "client_cores": round(load["cpu_s"] / hammer_.wall_s, 2),
                "rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
                "kb_per_joined_event": round((rss_after - rss_before) / max(1, load["joined"]), 1),
            }
        after = fair_chats(server.url, fns["chat"], n, 60, bind)
    idle_s = idle["seconds"] + after["seconds"]
    if not idle_s or not all(v["fair"]["seconds"] for v in loads.values()):
        raise RuntimeError(
            "the fair visitor's chats failed: "
            + json.dumps({"idle": idle["outcomes"], **{k: v["fair"]["outcomes"] for k, v in loads.items()}})
        )
    out = {
        "idle_n": len(idle_s),
        "idle_p50_ms": ms(idle_s, 50),
        "idle_p95_ms": ms(idle_s, 95),
        "idle_before_p95_ms": ms(idle["seconds"], 95),
        "idle_after_p95_ms": ms(after["seconds"], 95),
        "idle_queue_wait_p95_ms": ms(idle["waits"] + after["waits"], 95),
        "idle_outcomes": dict(idle["outcomes"] + after["outcomes"]),
        "abusers": 5,
        "_idle": idle_s,
    }
    for name, load in loads.items():
        fair = load.pop("fair")
        out[name] = {
            "n": len(fair["seconds"]),
            "p50_ms": ms(fair["seconds"], 50),
            "p95_ms": ms(fair["seconds"], 95),
            "max_ms": round(max(fair["seconds"]) * 1000, 1),
            "queue_wait_p95_ms": ms(fair["waits"], 95),
            "outcomes": dict(fair["outcomes"]),
            **load,
            "_seconds": fair["seconds"],
        }
    return out


# --- main ----------------------------------------------------------------------------------------

PHASES = ("calls", "memory", "latency")
LOADS = {"per_loop": "one session per loop", "per_event": "a new session per event"}


def _outcomes(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def print_calls(alone: dict, many: dict, run_s: float) -> None:
    timing.table(
        [
            "visitors",
            "run s",
            "vendor calls",
            "per visitor max",
            "per visitor min",
            f"max in {COUNTED_S:g} s",
            "max in 60 s",
            "over limit + 1",
            f"max in {COUNTED_S:g} s, search as 1",
            "requests per search",
            "admitted by app (max)",
            "server cores",
            "client cores",
            "vendor cores",
        ],
        [
            [
                r["visitors"],
                r["run_s"],
                r["vendor_calls"],
                r["per_visitor_max"],
                r["per_visitor_min"],
                r["max_in_counted_window"],
                r["max_in_60s_window"],
                r["visitors_over_limit"],
                r["max_in_counted_window_one_per_search"],
                r["vendor_requests_per_search"],
                r["admitted_per_visitor_max"],
                r["server_cores"],
                r["client_cores"],
                r["vendor_cores"],
            ]
            for r in (alone, many)
        ],
        title=f"1. Hosted calls per visitor, every endpoint looped at once ({', '.join(HOSTED)})",
    )
    crowd = many["visitors"]
    timing.table(
        [
            "endpoint",
            "events (1)",
            "vendor calls (1)",
            f"events ({crowd})",
            f"vendor calls ({crowd})",
            f"outcomes ({crowd} visitors)",
        ],
        [
            [
                e,
                alone["events"].get(e, 0),
                alone["vendor_calls_by_endpoint"].get(e, 0),
                many["events"].get(e, 0),
                many["vendor_calls_by_endpoint"].get(e, 0),
                _outcomes(many["outcomes"].get(e, {})),
            ]
            for e in HOSTED
        ],
        title="Per endpoint",
    )


def print_memory(memory: dict) -> None:
    near = memory["near_limit"]
    timing.table(
        ["case", "events", "baseline MB", "peak MB", "growth MB", "outcomes"],
        [
            [
                f"bombs: {BOMB_SIDE}x{BOMB_SIDE} PNG as data: URI, data: string, upload",
                sum(memory["events"].values()),
                round(memory["baseline_kb"] / 1024, 1),
                round(memory["peak_kb"] / 1024, 1),
                memory["growth_mb"],
                "; ".join(f"{e}: {_outcomes(o)}" for e, o in memory["outcomes"].items()),
            ],
            [
                f"figure: {NEAR_SIDE}x{NEAR_SIDE} PNG upload (39.7 MP, accepted), 4 at once",
                sum(sum(o.values()) for o in near["outcomes"].values()),
                round(near["baseline_kb"] / 1024, 1),
                round(near["peak_kb"] / 1024, 1),
                near["growth_mb"],
                "; ".join(_outcomes(o) for o in near["outcomes"].values()),
            ],
        ],
        title="2. Server memory (VmHWM reset before each case, VmRSS sampled every 10 ms)",
    )


def print_latency(latency: dict) -> None:
    rows = [
        [
            "idle (before + after)",
            latency["idle_n"],
            latency["idle_p50_ms"],
            latency["idle_p95_ms"],
            latency["idle_queue_wait_p95_ms"],
            "",
            "",
            "",
            _outcomes(latency["idle_outcomes"]),
        ]
    ]
    for name, label in LOADS.items():
        r = latency[name]
        rows.append(
            [
                f"{latency['abusers']} abusers, {label}",
                r["n"],
                r["p50_ms"],
                r["p95_ms"],
                r["queue_wait_p95_ms"],
                sum(r["abuser_events"].values()),
                r["server_cores"],
                r["client_cores"],
                _outcomes(r["outcomes"]),
            ]
        )
    timing.table(
        [
            "server",
            "chats",
            "p50 ms",
            "p95 ms",
            "queue wait p95 ms",
            "abusers' events",
            "server cores",
            "abusers' cores",
            "outcomes",
        ],
        rows,
        title="3. A well-behaved visitor's chat",
    )
    r = latency["per_event"]
    print(
        f"server RSS while abusers sent a new session per event: +{r['rss_growth_mb']} MB for "
        f"{r['abuser_events_joined']} events joined ({r['kb_per_joined_event']} KB each; Gradio keeps up to "
        f"{GRADIO_SESSIONS_KEPT:,} sessions: {r['kb_per_joined_event'] * GRADIO_SESSIONS_KEPT / 2**20:.1f} GB)"
    )


def main(argv=None) -> dict:
    parser = timing.parser("Public mode under abuse: calls per visitor, memory under bombs, a fair visitor's latency.")
    parser.add_argument("--seconds", type=float, default=None, help="each calls run (60; quick: 10)")
    parser.add_argument("--crowd", type=int, default=None, help="visitors in the second calls run (20; quick: 5)")
    parser.add_argument("--only", action="append", choices=PHASES, help="run only these phases")
    args = parser.parse_args(argv)
    run_s = args.seconds or (10.0 if args.quick else 60.0)
    crowd = args.crowd or (5 if args.quick else 20)
    phases = args.only or list(PHASES)
    cpu = cpu_model()
    started = time.perf_counter()
    figures: dict = {
        "cpu_model": cpu,
        "calls_per_minute": CALLS_PER_MINUTE,
        "events_per_visitor": EVENTS_PER_VISITOR,
        "vendor_latency_s": VENDOR_LATENCY_S,
        "endpoints_looped": list(HOSTED),
        "run_s": run_s,
    }
    targets = []
    with tempfile.TemporaryDirectory(prefix="fmg-abuse-") as workdir:
        images = {}
        for name, content in (
            ("small", small_png()),
            ("bomb", one_bit_png(BOMB_SIDE)),
            ("near", one_bit_png(NEAR_SIDE)),
        ):
            path = Path(workdir) / f"{name}.png"
            path.write_bytes(content)
            images[name] = str(path)
        vendor = Vendor()
        try:
            if "calls" in phases:
                alone = figures["calls_one_visitor"] = calls_phase(vendor, workdir, images, 1, run_s)
                many = figures["calls_crowd"] = calls_phase(vendor, workdir, images, crowd, run_s)
                targets += [
                    judge_calls("1 visitor alone", alone.pop("_times"), CALLS_PER_MINUTE),
                    judge_calls(f"{crowd} visitors at once", many.pop("_times"), CALLS_PER_MINUTE),
                ]
            if "memory" in phases:
                memory = figures["memory"] = memory_phase(vendor, workdir, images, args.quick)
                targets.append(judge_memory(memory["baseline_kb"], memory["peak_kb"]))
            if "latency" in phases:
                latency = figures["latency"] = latency_phase(vendor, workdir, images, args.quick)
                idle = latency.pop("_idle")
                targets += [
                    judge_latency(idle, latency[name].pop("_seconds"), f"abusers with {label}")
                    for name, label in LOADS.items()
                ]
        finally:
            vendor.stop()
    figures["wall_s"] = round(time.perf_counter() - started, 1)

    print(
        f"CPU: {cpu} ({os.cpu_count()} cores); public mode, {CALLS_PER_MINUTE} hosted calls per visitor per "
        f"minute, {EVENTS_PER_VISITOR} events per visitor; the fake vendor answers in {VENDOR_LATENCY_S * 1000:g} ms;"
        " "
        f"whole run {figures['wall_s']:.0f} s"
    )
    if "calls" in phases:
        print_calls(figures["calls_one_visitor"], figures["calls_crowd"], run_s)
    if "memory" in phases:
        print_memory(figures["memory"])
    if "latency" in phases:
        print_latency(figures["latency"])
    notes = [
        f"CPU: {cpu}",
        "vendor calls: HTTP requests the fake vendor got, each attributed by the visitor's tag in its text; "
        "'admitted by app': ok events (each answered target of a comparison) as the visitor saw them",
        f"calls are counted in any {COUNTED_S:g} s (the quota's moving minute less {LAG_SLACK_S:g} s for the lag "
        "between a charge and its request): events queued before a 60 s run ends are charged after its first calls "
        "have left the window, so a whole run's total may rightly reach twice the limit",
        "compare6 runs 4 unpriced models (public allow_unpriced = true); generate runs dall-e-2 at 256x256",
        "the visitors' client, the fake vendor and the server share the machine's cores",
    ]
    return timing.report("abuse", args, targets, figures, notes)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--vendor"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_vendor(float(sys.argv[2])))
    elif sys.argv[1:2] == ["--hammer"]:
        _hammer_main(sys.argv[2])
    else:
        main(sys.argv[1:])
