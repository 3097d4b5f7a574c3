"""Target 3: streaming through the app under load.

The app is served in its own process by `bench.app_launcher` with a fake provider that streams
200 tokens at 100 tokens/s (its own first token at 10 ms, its last at 2.0 s: the ideal). 50
`gradio_client` sessions (one `Client` each, all connected before the clock starts) each submit
one `/chat` at the same moment and stream it to the end.

Completion times run from each session's `submit()`; times to first token from the moment the
client starts its join request (`send_data`), since gradio_client spends 10-50 ms of its own
before that (thread hand-offs, a new HTTP client per request). Both are "wire" times: when the
SSE message (the first `process_generating`, which carries the first token, or
`process_completed`) reached the client process, stamped by the client's own SSE reader thread.
"client p95" is when `job.result()` returned, which adds gradio_client's polling (its worker
sleeps 50 ms whenever no message is waiting): an artifact of the client library, not the app.

Targets: p95 completion at most 1.15x the 2.0 s ideal; first token at most 50 ms after the
provider's own (10 ms), counted from the session's join request. Configurations, run
interleaved (a fresh server each run):
- `app`: the app as it is (the /chat listener's concurrency limit 64, `launch(max_threads=64)`,
  each chat sent to the page at most 10 times a second while it streams, about 200 updates a
  second shared by all streams: 4 a second each with 50 open, `demos.widgets.frame_pacing`).
  "new sessions": each session's first request, as 50 freshly connected clients make it (Gradio builds a per-session
  copy of every component's config on the event loop first); "open sessions": each session made
  one request before (as a page that has loaded has), so only the chat itself is measured;
- `10 updates/s each`: the app with every stream sending 10 updates a second however many are
  open (the app before `demos.widgets.frame_pacing`), to show what sharing the budget buys;
- `Gradio defaults`: the same app with Gradio's defaults instead (concurrency limit 16, 40
  threads, every token sent to the page), to show what those three settings buy.
Server and client CPU use (cores busy, from /proc and os.times) show whether the cores saturate;
the 1-minute load average before and after shows what else the machine was doing.

    python -m bench.app_streaming [--quick] [--save] [--sessions 50] [--rounds 2]
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench import timing

TOKENS, RATE = 200, 100.0
DEFAULTS = ["--chat-limit", "16", "--max-threads", "40", "--update-every", "0"]
CONFIGS = {  # name: (launcher flags, sessions already open)
    "app, new sessions": ([], False),
    "app, open sessions": ([], True),
    "10 updates/s each, open sessions": (["--update-every", "0.1"], True),
    "Gradio defaults, open sessions": (DEFAULTS, True),
}


@dataclass
class Session:
    submitted: float = 0.0  # client.submit() called
    joined: float | None = None  # the client starts its POST /queue/join (the app's clock starts)
    first: float | None = None  # first process_generating reached this process
    done: float | None = None  # process_completed reached this process
    returned: float | None = None  # job.result() returned
    text: str = ""


class _Stamped(deque):
    """The per-event message deque of a gradio_client Client, stamping message arrival."""

    def __init__(self, session: Session, items=()):
        super().__init__(items)
        self.session = session

    def append(self, message) -> None:
        if isinstance(message, dict):
            kind = message.get("msg")
            if kind == "process_generating" and self.session.first is None:
                self.session.first = time.perf_counter()
            elif kind == "process_completed" and self.session.done is None:
                self.session.done = time.perf_counter()
        super().append(message)


class _StampedEvents(dict):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def __setitem__(self, key, value) -> None:
        if type(value) is deque:
            value = _Stamped(self.session, value)
        super().__setitem__(key, value)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]


def _stamp_join(send_data, record: Session):
    def stamped(*args, **kwargs):
        record.joined = time.perf_counter()
        return send_data(*args, **kwargs)

    return stamped


class Server:
    """The app under `bench.app_launcher` in a child process."""

    def __init__(self, flags: list[str], tokens: int, rate: float):
        self.tmp = tempfile.TemporaryDirectory(prefix="fmg-bench-")  # the run log of this server
        env = dict(
            os.environ, GRADIO_ANALYTICS_ENABLED="False", FMG_RUN_LOG=os.path.join(self.tmp.name, "runs.sqlite3")
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.app_launcher", "--tokens", str(tokens), "--rate", str(rate), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("URL "):
            self.stop()
            raise RuntimeError(f"the app did not start (it said {line!r})")
        self.url = line.split()[1]

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()


def run_once(flags: list[str], sessions: int, tokens: int, rate: float, open_sessions: bool, serve=Server) -> dict:
    """One measured run on a fresh server made by `serve(flags, tokens, rate)` (bench.scale_proxy
    passes the app behind nginx: it offers each session headers of its own, as each browser has)."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    server = serve(flags, tokens, rate)
    headers = getattr(server, "client_headers", lambda i: None)
    try:
        with ThreadPoolExecutor(8) as pool:  # plain HTTP: ssl_verify=False spares each request a CA bundle load
            clients = list(
                pool.map(
                    lambda i: Client(server.url, verbose=False, ssl_verify=False, headers=headers(i)),
                    range(sessions + 1),
                )
            )
        warm = clients.pop()  # first-call costs (imports, the run log's table) are not what is measured
        warm.submit("Warm up.", [], "benchstream", "", "", 256, 0.7, 1.0, -1, api_name="/chat").result(timeout=120)
        warm.close()
        if open_sessions:  # each session's first request (Gradio builds its per-session state) made beforehand

            def prime(client) -> None:
                # "The prompt is empty": the session now exists, as for a page that has loaded
                with contextlib.suppress(AppError):
                    client.predict("", [], "benchstream", "", "", 16, 0.7, 1.0, -1, api_name="/chat")

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(prime, clients))
        records = [Session() for _ in clients]
        for client, record in zip(clients, records, strict=False):
            client.pending_messages_per_event = _StampedEvents(record)
            client.send_data = _stamp_join(client.send_data, record)
        start = threading.Barrier(sessions + 1)

        def one(i: int) -> None:
            client, record = clients[i], records[i]
            start.wait()
            record.submitted = time.perf_counter()
            job = client.submit(
                "Stream me a long answer.", [], "benchstream", "", "", 256, 0.7, 1.0, -1, api_name="/chat"
            )
            history, _ = job.result(timeout=120)
            record.returned = time.perf_counter()
            content = history[-1]["content"]
            record.text = (
                content
                if isinstance(content, str)
                else "".join(p.get("text", "") for p in content if isinstance(p, dict))
            )

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(sessions)]
        for t in threads:
            t.start()
        cpu_server, cpu_client = server.cpu_s(), sum(os.times()[:2])
        started = time.perf_counter()
        start.wait()
        for t in threads:
            t.join(timeout=180)
        wall = time.perf_counter() - started
        cpu_server, cpu_client = server.cpu_s() - cpu_server, sum(os.times()[:2]) - cpu_client
        for client in clients:
            client.close()
    finally:
        server.stop()
    incomplete = [r for r in records if r.done is None or f"w{tokens - 1}" not in r.text]
    if incomplete:
        raise RuntimeError(f"{len(incomplete)} of {sessions} sessions did not stream the whole answer")
    return {
        "ttft": [r.first - r.submitted for r in records],
        "ttft_join": [r.first - r.joined for r in records],
        "done": [r.done - r.submitted for r in records],
        "returned": [r.returned - r.submitted for r in records],
        "server_cores": cpu_server / wall,
        "client_cores": cpu_client / wall,
        "wall": wall,
    }


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main(argv=None) -> dict:
    parser = timing.parser("50 gradio_client sessions streaming through the app (issue 5, target 3).")
    parser.add_argument("--sessions", type=int, default=None, help="concurrent sessions (50; quick: 5)")
    parser.add_argument("--rounds", type=int, default=None, help="runs per configuration (2; quick: 1)")
    parser.add_argument("--only", action="append", choices=list(CONFIGS), help="run only these configurations")
    args = parser.parse_args(argv)
    sessions = args.sessions or (5 if args.quick else 50)
    rounds = args.rounds or (1 if args.quick else 2)
    tokens = 50 if args.quick else TOKENS
    names = args.only or (["app, new sessions"] if args.quick else list(CONFIGS))
    ideal, provider_ttft = tokens / RATE, 1 / RATE

    order = [name for r in range(rounds) for name in (names if r % 2 == 0 else names[::-1])]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for name in order:
        flags, open_sessions = CONFIGS[name]
        runs[name].append(run_once(flags, sessions, tokens, RATE, open_sessions))

    rows = []
    for name, results in runs.items():
        ttft = [x for r in results for x in r["ttft_join"]]
        ttft_submit = [x for r in results for x in r["ttft"]]
        done = [x for r in results for x in r["done"]]
        returned = [x for r in results for x in r["returned"]]
        rows.append(
            {
                "config": name,
                "flags": " ".join(CONFIGS[name][0]),
                "open_sessions": CONFIGS[name][1],
                "sessions": sessions,
                "runs": len(results),
                "done_p50_s": round(timing.median(done), 3),
                "done_p95_s": round(timing.percentile(done, 95), 3),
                "done_max_s": round(max(done), 3),
                "p95_vs_ideal": round(timing.percentile(done, 95) / ideal, 3),
                "client_done_p95_s": round(timing.percentile(returned, 95), 3),
                "ttft_p50_ms": ms(timing.median(ttft)),
                "ttft_p95_ms": ms(timing.percentile(ttft, 95)),
                "ttft_added_p95_ms": ms(timing.percentile(ttft, 95) - provider_ttft),
                "ttft_from_submit_p50_ms": ms(timing.median(ttft_submit)),
                "ttft_from_submit_p95_ms": ms(timing.percentile(ttft_submit, 95)),
                "server_cores": round(timing.median([r["server_cores"] for r in results]), 2),
                "client_cores": round(timing.median([r["client_cores"] for r in results]), 2),
            }
        )

    print(
        f"{sessions} gradio_client sessions at once, each streaming {tokens} tokens at {RATE:g} tokens/s through "
        f"/chat: ideal {ideal:g} s, the provider's own first token at {provider_ttft * 1000:g} ms"
    )
    timing.table(
        [
            "configuration",
            "runs",
            "p50 s",
            "p95 s",
            "max s",
            "p95 / ideal",
            "client p95 s",
            "server cores",
            "client cores",
        ],
        [
            [
                r["config"],
                r["runs"],
                r["done_p50_s"],
                r["done_p95_s"],
                r["done_max_s"],
                r["p95_vs_ideal"],
                r["client_done_p95_s"],
                r["server_cores"],
                r["client_cores"],
            ]
            for r in rows
        ],
        title="Completion (from submit; wire)",
    )
    timing.table(
        ["configuration", "p50 ms", "p95 ms", "added p95 ms", "from submit p50 ms", "from submit p95 ms"],
        [
            [
                r["config"],
                r["ttft_p50_ms"],
                r["ttft_p95_ms"],
                r["ttft_added_p95_ms"],
                r["ttft_from_submit_p50_ms"],
                r["ttft_from_submit_p95_ms"],
            ]
            for r in rows
        ],
        title="First token (from the join request; wire)",
    )
    targets = []
    for r in rows:
        if r["flags"]:
            continue  # other settings are figures for comparison, not the app's verdict
        targets.append(
            timing.target(
                f"p95 completion / ideal, {r['config']} (x)", r["p95_vs_ideal"], 1.15, higher_is_better=False, unit="x"
            )
        )
        targets.append(
            timing.target(
                f"first token added, p95, {r['config']} (ms)",
                r["ttft_added_p95_ms"],
                50,
                higher_is_better=False,
                unit=" ms",
            )
        )
    notes = [
        "'Gradio defaults' runs the same app with bench.app_launcher's flags changing three of its settings",
        "client p95 adds gradio_client's own 50 ms polling; 'from submit' adds its 10-50 ms before the join request",
    ]
    return timing.report(
        "app_streaming",
        args,
        targets,
        {"sessions": sessions, "tokens": tokens, "rate": RATE, "ideal_s": ideal, "configs": rows},
        notes,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
