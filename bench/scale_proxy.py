"""Issue 17, section E (the proxy's rows): the app behind nginx, as `python app.py --workers N`
serves it, on this machine, side by side in one run.

(a) The app_streaming scenario (`bench.app_streaming.run_once`: 50 gradio_client sessions submit
    one /chat each at the same moment, each streaming 200 tokens at 100 tokens/s: ideal 2.0 s)
    one process served directly, then through nginx with 1 worker and with 2 workers. Each session
    carries its own route cookie, as each browser does (a cookie-less client would be routed by its
    address, and all 50 share 127.0.0.1). nginx's per-address limits are raised for this part only:
    50 simulated people share one address here. Targets, with 2 workers: p95 completion at most
    1.15x the ideal, first token at most +100 ms p95 over the provider's own.
(b) The abuse scenario's latency phase (`bench.abuse.latency_phase`: a polite visitor's chats,
    idle and while 5 abusive visitors loop every endpoint and send decompression bombs) through
    nginx with 2 workers and its default limits; every visitor connects from its own loopback
    address (127.18.x.y), so nginx tells them apart as it would real visitors. Target: the polite
    visitor's p95 under load at most 1.5x idle.

The workers are `python -m bench.app_launcher` (the app with the benchmark's streaming provider)
started by the launcher's own pieces: `launcher.ports`, `launcher.supervisor.Child`,
`launcher.nginx` (the same generated config as `--workers`).

    python -m bench.scale_proxy [--quick] [--save] [--only streaming|abuse]
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import abuse, app_streaming, timing
from launcher import nginx, ports, settings
from launcher.supervisor import Child, stop_all

STREAMING_LIMITS = {"connections": 1000, "join_burst": 1000, "burst": 1000, "rate": "1000r/s", "join_rate": "1000r/s"}
MAX_UPLOAD = "25mb"  # app.MAX_UPLOAD (app.py is not imported here: it would build the page)


class ProxiedApp:
    """`bench.app_launcher` workers behind nginx; the interface of `bench.app_streaming.Server`."""

    binds = True  # bench.abuse: visitors connect from their own loopback addresses

    def __init__(self, flags: list[str], tokens: int, rate: float, workers: int = 2, limits: dict | None = None):
        self.tmp = tempfile.TemporaryDirectory(prefix="fmg-bench-proxy-", dir=nginx.temp_parent())
        folder = Path(self.tmp.name)
        env = dict(
            os.environ,
            GRADIO_ANALYTICS_ENABLED="False",
            FMG_RUN_LOG=str(folder / "runs.sqlite3"),
            FORWARDED_ALLOW_IPS="127.0.0.1",
        )
        self.quiet = open(os.devnull, "w")  # noqa: SIM115 - closed in stop()
        worker_ports = ports.free_ports(workers)
        self.children: list[Child] = []
        for i, port in enumerate(worker_ports, start=1):
            child = Child(
                f"w{i}",
                [sys.executable, "-m", "bench.app_launcher", "--tokens", str(tokens), "--rate", str(rate), *flags],
                {**env, "GRADIO_SERVER_PORT": str(port), "FMG_WORKER": str(i)},
            )
            child.start(self.quiet)
            self.children.append(child)
        (public,) = ports.free_ports(1)
        config = dataclasses.replace(settings.from_env({}), port=public, **(limits or {}))
        proxy_dir = folder / "nginx"
        proxy_dir.mkdir()
        folder.chmod(0o711)  # as root, nginx's workers (nobody) reach their temp folders
        self.children.append(Child("proxy", nginx.write(config, proxy_dir, worker_ports, MAX_UPLOAD)))
        try:
            for port in worker_ports:
                _wait(f"http://127.0.0.1:{port}/", self.children)
            self.children[-1].start(self.quiet)
            self.url = f"http://127.0.0.1:{public}/"
            _wait(self.url, self.children)
        except BaseException:
            self.stop()
            raise
        self.proc = self.children[0].proc  # bench.abuse samples the first worker's memory

    def client_headers(self, i: int) -> dict[str, str]:
        return {"Cookie": f"fmg_route={i + 1:032x}"}  # each session a browser with its own route

    def cpu_s(self) -> float:
        """CPU seconds of the workers and nginx (master and worker processes), from /proc."""
        groups = {c.pid for c in self.children if c.pid}
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in groups:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop_all(list(reversed(self.children)))
        self.quiet.close()
        self.tmp.cleanup()


def _wait(url: str, children: list[Child], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or not all(c.alive() for c in children if c.proc):
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.3)


def streaming(sessions: int, tokens: int, rounds: int) -> tuple[list[dict], list[dict]]:
    """(a): one process direct, nginx + 1 worker, nginx + 2 workers, interleaved over rounds."""

    configs = {
        "1 process, direct": app_streaming.Server,
        "nginx, 1 worker": functools.partial(ProxiedApp, workers=1, limits=STREAMING_LIMITS),
        "nginx, 2 workers": functools.partial(ProxiedApp, workers=2, limits=STREAMING_LIMITS),
    }
    names = list(configs)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            runs[name].append(
                app_streaming.run_once([], sessions, tokens, app_streaming.RATE, False, serve=configs[name])
            )
    ideal, provider = tokens / app_streaming.RATE, 1 / app_streaming.RATE
    rows = []
    for name, results in runs.items():
        done = [x for r in results for x in r["done"]]
        ttft = [x for r in results for x in r["ttft_join"]]
        rows.append(
            {
                "config": name,
                "sessions": sessions,
                "runs": len(results),
                "done_p50_s": round(timing.median(done), 3),
                "done_p95_s": round(timing.percentile(done, 95), 3),
                "p95_vs_ideal": round(timing.percentile(done, 95) / ideal, 3),
                "ttft_p95_ms": round(timing.percentile(ttft, 95) * 1000, 1),
                "ttft_added_p95_ms": round((timing.percentile(ttft, 95) - provider) * 1000, 1),
                "server_cores": round(timing.median([r["server_cores"] for r in results]), 2),
                "client_cores": round(timing.median([r["client_cores"] for r in results]), 2),
            }
        )
    timing.table(
        ["configuration", "runs", "p50 s", "p95 s", "p95 / ideal", "first token p95 ms", "added ms", "server cores"],
        [
            [
                r["config"],
                r["runs"],
                r["done_p50_s"],
                r["done_p95_s"],
                r["p95_vs_ideal"],
                r["ttft_p95_ms"],
                r["ttft_added_p95_ms"],
                r["server_cores"],
            ]
            for r in rows
        ],
        title=f"(a) {sessions} sessions streaming {tokens} tokens at {app_streaming.RATE:g}/s (ideal {ideal:g} s)",
    )
    two = rows[-1]
    targets = [
        timing.target("p95 completion / ideal, nginx + 2 workers (x)", two["p95_vs_ideal"], 1.15, False, "x"),
        timing.target("first token added, p95, nginx + 2 workers (ms)", two["ttft_added_p95_ms"], 100, False, " ms"),
    ]
    return rows, targets


def abusers(quick: bool) -> tuple[dict, list[dict]]:
    """(b): bench.abuse's latency phase through nginx + 2 workers, with nginx's default limits."""
    with tempfile.TemporaryDirectory(prefix="fmg-bench-abuse-") as workdir:
        images = {}
        for name, content in (("small", abuse.small_png()), ("bomb", abuse.one_bit_png(abuse.BOMB_SIDE))):
            path = Path(workdir) / f"{name}.png"
            path.write_bytes(content)
            images[name] = str(path)
        vendor = abuse.Vendor()
        try:
            latency = abuse.latency_phase(vendor, workdir, images, quick, serve=ProxiedApp)
        finally:
            vendor.stop()
    idle = latency.pop("_idle")
    targets = [
        abuse.judge_latency(idle, latency[name].pop("_seconds"), f"nginx + 2 workers, abusers with {label}")
        for name, label in abuse.LOADS.items()
    ]
    abuse.print_latency(latency)
    return latency, targets


def main(argv=None) -> dict:
    parser = timing.parser("The app behind nginx (python app.py --workers N): streaming and abusers (issue 17).")
    parser.add_argument("--only", action="append", choices=["streaming", "abuse"], help="run only these parts")
    parser.add_argument("--sessions", type=int, default=None, help="streaming sessions (50; quick: 5)")
    parser.add_argument("--rounds", type=int, default=None, help="runs per configuration (1)")
    args = parser.parse_args(argv)
    parts = args.only or ["streaming", "abuse"]
    sessions = args.sessions or (5 if args.quick else 50)
    tokens = 50 if args.quick else app_streaming.TOKENS
    cpu = timing.cpu_model()
    print(f"CPU: {cpu} ({os.cpu_count()} cores)")
    figures: dict = {"cpu_model": cpu, "cores": os.cpu_count(), "proxy": "nginx"}
    targets: list[dict] = []
    started = time.perf_counter()
    if "streaming" in parts:
        figures["streaming"], found = streaming(sessions, tokens, args.rounds or 1)
        targets += found
    if "abuse" in parts:
        figures["abuse"], found = abusers(args.quick)
        targets += found
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    notes = [
        f"CPU: {cpu}; the clients, the fake vendor, nginx and the workers share its cores",
        "streaming: nginx's per-address limits raised (50 simulated people share 127.0.0.1); "
        "each session sends its own route cookie, as a browser does",
        "abuse: nginx's default limits; every visitor connects from its own loopback address",
    ]
    return timing.report("scale_proxy", args, targets, figures, notes)


if __name__ == "__main__":
    main(sys.argv[1:])
