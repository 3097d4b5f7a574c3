"""`python app.py --workers N` (or FMG_WORKERS=N): N Gradio workers behind nginx, supervised.

Order: the database's migrations (once), the llama.cpp server for local chat (when there is a
GGUF chat model and llama_cpp.server is installed), the workers on private loopback ports (each
`python app.py` with FMG_WORKER=i), then nginx on the public address. Then it watches: a dead
worker is restarted on its port; SIGTERM or Ctrl-C stops everything within a few seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from launcher import llama_server as llama_server_module
from launcher import nginx, ports, settings
from launcher.supervisor import Child, stop_all

log = logging.getLogger("launcher")
WORKER_ENV = "FMG_WORKER"  # set in each worker: its number (1..N); a worker never launches workers
BEHIND_PROXY_ENV = "FMG_BEHIND_PROXY"
APP = Path(__file__).resolve().parent.parent / "app.py"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="fm-gallery: try foundation models side by side.")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="serve through nginx with N app processes (also FMG_WORKERS); without it, one process and no proxy",
    )
    return p


def workers_wanted(argv: list[str], environ: dict[str, str] | None = None) -> int | None:
    """N from `--workers N` or FMG_WORKERS, or None for plain one-process mode (and in a worker)."""
    env = os.environ if environ is None else environ
    if env.get(WORKER_ENV):
        return None
    args, _ = parser().parse_known_args(argv)
    if args.workers is not None:
        return args.workers
    raw = env.get("FMG_WORKERS", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"FMG_WORKERS must be a whole number, not {raw!r}.") from None


def main(argv: list[str], max_upload: str) -> int:
    """Run the launcher until SIGTERM or Ctrl-C; the exit status."""
    logging.basicConfig(level=logging.INFO, format="[launcher] %(asctime)s %(levelname)s %(message)s")
    parser().parse_args(argv)  # --help, and unknown arguments refused
    try:
        config = settings.from_env(workers=workers_wanted(argv))
        nginx.size_bytes(config.body_max or max_upload)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if nginx.binary() is None:
        print(nginx.MISSING, file=sys.stderr)
        return 1
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _frame: stopping.append(s))
    with tempfile.TemporaryDirectory(prefix="fmg-proxy-", dir=nginx.temp_parent()) as tmp:
        children: list[Child] = []
        try:
            return _serve(config, Path(tmp), max_upload, children, stopping)
        finally:
            stop_all(list(reversed(children)))
            log.info("stopped")


def _serve(config: settings.Settings, tmp: Path, max_upload: str, children: list[Child], stopping: list[int]) -> int:
    warn_about_quotas(config.workers)
    migrate()
    env = worker_environment()
    llama = llama_server(env, children)
    worker_ports = ports.free_ports(config.workers)
    workers = []
    for i, port in enumerate(worker_ports, start=1):
        child = Child(f"w{i}", [sys.executable, str(APP)], worker_env(env, i, port))
        child.start()
        children.append(child)
        workers.append((child, port))
    proxy = Child("proxy", nginx.write(config, tmp, worker_ports, max_upload))
    deadline = time.monotonic() + config.worker_start_s
    waiting = {port for _, port in workers}
    if llama is not None:
        waiting.add(llama[1])
    while waiting:
        if stopping:
            return 0
        for child in children:
            if not child.alive():
                log.error("%s exited before it was ready (status %s)", child.name, child.proc and child.proc.returncode)
                return 1
        ready = {p for p in waiting if _ready(p, llama)}
        waiting -= ready
        if time.monotonic() > deadline:
            log.error("no answer on ports %s after %d s", sorted(waiting), config.worker_start_s)
            return 1
        time.sleep(0.2)
    proxy.start()
    children.append(proxy)
    log.info(
        "serving on http://%s:%d/ through nginx, %d workers on 127.0.0.1:%s",
        config.host,
        config.port,
        config.workers,
        ",".join(map(str, worker_ports)),
    )
    while not stopping:
        for child in children:
            child.check()
        if proxy.restarts > 3:  # nginx that keeps dying (its port taken?): nothing is served
            log.error("nginx keeps exiting: stopping")
            return 1
        time.sleep(0.2)
    log.info("%s: stopping the proxy and the workers", signal.Signals(stopping[0]).name)
    return 0


def _ready(port: int, llama: tuple[Child, int, str] | None) -> bool:
    path = llama[2] if llama is not None and port == llama[1] else "/"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def worker_environment() -> dict[str, str]:
    """What every worker shares: the launcher's environment less its own settings."""
    env = {k: v for k, v in os.environ.items() if k != "FMG_WORKERS"}
    env["FORWARDED_ALLOW_IPS"] = "127.0.0.1"  # X-Forwarded-For is believed from nginx only
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return env


def worker_env(shared: dict[str, str], i: int, port: int) -> dict[str, str]:
    return {
        **shared,
        WORKER_ENV: str(i),
        BEHIND_PROXY_ENV: "1",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
    }


def warn_about_quotas(workers: int) -> None:
    """Public mode's quotas in memory are per worker: say so once (Redis shares them)."""
    from services import public

    if workers > 1 and public.enabled() and public.limits().rate_limit_storage.startswith("memory"):
        log.warning(
            "public mode with %d workers and quotas in memory: each worker counts on its own; "
            "set FMG_RATE_LIMIT_STORAGE=redis://host:6379 to share them",
            workers,
        )


def migrate() -> None:
    """The database's migrations, once, before any worker starts (nothing to do on SQLite files,
    which each store upgrades on first use)."""
    from services import db

    db.migrate()


def llama_server(env: dict[str, str], children: list[Child]) -> tuple[Child, int, str] | None:
    """llama.cpp's OpenAI-compatible server for local chat, shared by the workers (its URL goes
    into `env`), or None where the chat model is not a GGUF or llama_cpp.server is missing."""
    (port,) = ports.free_ports(1)
    argv = llama_server_module.command(port)
    if argv is None:
        return None
    child = Child("llama", argv, dict(env))
    child.start()
    children.append(child)
    env[llama_server_module.ENV] = f"http://127.0.0.1:{port}/v1"
    return child, port, llama_server_module.health_path
