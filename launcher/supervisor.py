"""Child processes that die with the launcher: started in their own process group with
PR_SET_PDEATHSIG (a SIGKILLed launcher still takes them down), their output prefixed with their
name (`[w1] ...`), restarted with backoff when they die, and stopped as a group.

Start children from the main thread only: Linux sends the death signal when the *thread* that
forked a child ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

log = logging.getLogger("launcher")
PR_SET_PDEATHSIG = 1
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_S = 60.0  # a child that ran this long starts its backoff over
_output_lock = threading.Lock()


def _die_with(parent: int) -> Callable[[], None]:
    """For `preexec_fn`: in the child, ask for SIGTERM when the launcher dies."""

    def arm() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)

    return arm


def _relay(name: str, stream: IO[bytes], out: IO[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        with _output_lock:
            out.write(f"[{name}] {line}\n")
            out.flush()
    stream.close()


class Child:
    """One supervised process. `restart=True`: `check()` starts it again after it dies."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, restart: bool = True):
        self.name, self.argv, self.env, self.restart = name, argv, env, restart
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.failures = 0
        self.due = 0.0  # when a dead child may start again
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, out: IO[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach its children too
            preexec_fn=_die_with(os.getpid()),
        )
        self.started = time.monotonic()
        assert self.proc.stdout is not None
        threading.Thread(
            target=_relay, args=(self.name, self.proc.stdout, out or sys.stdout), daemon=True, name=f"relay-{self.name}"
        ).start()
        log.info("%s started (pid %d)", self.name, self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self, out: IO[str] | None = None) -> None:
        """Restart a dead child once its backoff has passed (call it often, from the main thread)."""
        if self.proc is None or self.alive() or not self.restart:
            return
        now = time.monotonic()
        if self.due == 0.0:
            self.signal(signal.SIGKILL)  # whatever it started dies with it
            ran = now - self.started
            if ran >= STABLE_S:
                self.failures = 0
            wait = BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)]
            self.failures += 1
            self.due = now + wait
            log.warning(
                "%s (pid %d) exited with %s after %.0f s; restarting in %g s",
                self.name,
                self.proc.pid,
                self.proc.returncode,
                ran,
                wait,
            )
            return
        if now >= self.due:
            self.due = 0.0
            self.restarts += 1
            self.start(out)

    def signal(self, signum: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)


def stop_all(children: list[Child], grace_s: float = 5.0) -> None:
    """SIGTERM every child's process group, then SIGKILL whatever is left after `grace_s`."""
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %g s: killing it", child.name, grace_s)
        child.signal(signal.SIGKILL)  # the group: anything the child started
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=2)
