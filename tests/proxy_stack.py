"""`python app.py --workers N` as an operator runs it, for tests/test_proxy.py: the launcher in a
subprocess (its own temp home, run log and uploads), OpenAI pointed at the fake vendor, its output
read line by line so a test can find the children's pids and the workers' ports."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-proxy-test-0000"
STARTED = re.compile(r"\] \S+ \S+ INFO (\w+) started \(pid (\d+)\)")
SERVING = re.compile(r"workers on 127\.0\.0\.1:([\d,]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_groups() -> dict[int, list[int]]:
    """Every live process's pid by process group (from /proc)."""
    groups: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            groups.setdefault(int(fields[2]), []).append(int(entry))
    return groups


class Stack:
    def __init__(self, base: Path, vendor_url: str, workers: int = 2, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        for folder in ("home", "tmp"):
            (base / folder).mkdir(exist_ok=True)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "FMG_", "GRADIO_"))}
        clean.update(
            OPENAI_API_KEY=KEY,
            OPENAI_BASE_URL=vendor_url + "/v1",
            HOME=str(base / "home"),
            TMPDIR=str(base / "tmp"),
            GRADIO_TEMP_DIR=str(base / "tmp" / "gradio"),
            GRADIO_SERVER_PORT=str(self.port),
            GRADIO_ANALYTICS_ENABLED="False",
            FMG_CONFIG=str(base / "no-config.toml"),
            FMG_MAX_UPLOAD_REQUEST_MB="30",  # the app's largest body, which the launcher gives nginx too
            FMG_RUN_LOG=str(base / "home" / "runs.sqlite3"),
            FMG_LEADERBOARD=str(base / "home" / "board.sqlite3"),
            PYTHONUNBUFFERED="1",
            **(env or {}),
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--workers", str(workers)],
            cwd=base / "home",
            env=clean,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self.wait_for(SERVING, timeout=240)
        self.worker_ports = [int(p) for p in line[1].split(",")]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float, after: int = 0) -> re.Match[str]:
        """The first line from index `after` on that matches, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if match := pattern.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._changed.wait(0.5)):
                    raise AssertionError("not seen: " + pattern.pattern + "\n" + "\n".join(self.lines[-60:]))
                self._changed.wait(min(left, 0.5))

    def pids(self) -> dict[str, int]:
        """The latest pid of each child, by name (w1, w2, proxy, llama)."""
        out: dict[str, int] = {}
        for line in self.lines:
            if match := STARTED.search(line):
                out[match[1]] = int(match[2])
        return out

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> float:
        """Signal the launcher and wait for it; the seconds it took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - started

    def kill_everything(self) -> None:
        """After a failed test: nothing of this stack may outlive the test run."""
        self.stop(signal.SIGKILL, timeout=5)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()
        for name, pid in self.pids().items():
            if name:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
