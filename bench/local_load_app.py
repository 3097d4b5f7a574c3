"""Serve `app.demo` with a local evaluation that can be switched on and off: for `bench.scale_local`
and tests/test_local_priority.py.

    python -m bench.local_load_app [--items N] [--max-tokens T] [--today]

The app is launched as `python app.py` launches it (`app.launch_options()`), in this process, and
the evaluation runs in this process too, as the Evaluate tab runs one (`Evaluation.start()`, the
packaged SmolLM2 as the "local" target, the arithmetic set, the tab's default concurrency).
Prints `URL <local url>` once serving, then answers commands read from stdin, one line each:

- `warm`: one local evaluation of one item (loads the model) -> `WARM <seconds> <status> <failed cells>`
- `load`: evaluations of `--items` items, one after another, each with a new seed (so nothing
  comes from the cache), until `idle` -> `LOADING`
- `idle`: cancel the running one and wait until it stops -> `IDLE <cells since load> <failed cells>`
- `threads`: -> `THREADS <nice values of this process's threads, most common first>`

`--today` serves the behaviour before issue 17, for comparison: llama.cpp on every core
(`FMG_LOCAL_THREADS` = all usable cores, before the model loads) and evaluation threads at normal
priority with no turn order at the device slot.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import random
import sys
import tempfile
import threading
import time


def _today() -> None:
    """Undo issue 17's protections in this process (the comparison's baseline)."""
    from adapters import priority
    from local_models import threads

    os.environ[threads.ENV] = str(threads.usable_cores())
    priority.lower_this_thread = lambda: None  # type: ignore[assignment]
    priority.background = lambda: False  # type: ignore[assignment]


def thread_nices() -> list[tuple[int, int]]:
    """(nice value, threads) for this process's threads, most common first."""
    counts: collections.Counter[int] = collections.Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                counts[int(f.read().rsplit(")", 1)[1].split()[16])] += 1
        except (OSError, ValueError, IndexError):
            continue
    return counts.most_common()


def failed_cells(evaluation) -> int:
    from services.evaluation import store

    return sum(cell.error is not None for cell in store.cells(evaluation.id))


class Load:
    """Evaluations on the local target, one after another, until stopped."""

    def __init__(self, items: int, max_tokens: int):
        from adapters.types import CompletionParams
        from services.evaluation import datasets

        data = datasets.builtin("arithmetic")
        self.data = datasets.Dataset(data.name, data.kind, data.items[:items], data.description, data.scorer)
        self.params = CompletionParams(max_tokens=max_tokens, temperature=0.0)
        self.cells = self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current = None

    def one(self, items: int | None = None):
        from services.evaluation.datasets import Dataset
        from services.evaluation.engine import Evaluation, Spec, Target

        data = self.data if items is None else Dataset(self.data.name, "chat", self.data.items[:items], "", "numeric")
        # a new seed each time (each call's is seed * 1000 + sample, under 2**32): no answer from the cache
        spec = Spec(data, (Target("local"),), params=self.params, seed=random.randrange(1, 4_000_000))
        self._current = Evaluation(spec).start()
        return self._current

    def start(self) -> None:
        self._stop.clear()
        self.cells = self.failed = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            evaluation = self.one()
            evaluation.wait()
            self.cells += evaluation.done
            self.failed += failed_cells(evaluation)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        if self._current is not None:
            self._current.cancel()
        if self._thread is not None:
            self._thread.join()
        return self.cells, self.failed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--today", action="store_true", help="threads = all cores, no priority (before issue 17)")
    args = parser.parse_args(argv)

    folder = tempfile.mkdtemp(prefix="fmg-bench-local-")
    for name, file in (("FMG_RUN_LOG", "runs.sqlite3"), ("FMG_EVALUATIONS", "evaluations.sqlite3")):
        os.environ.setdefault(name, os.path.join(folder, file))
    if args.today:
        _today()
    import app
    from adapters.keys import install_log_redaction

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    load = Load(args.items, args.max_tokens)
    app.demo.launch(**app.launch_options(), server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    print(f"URL {app.demo.local_url}", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "warm":
            started = time.perf_counter()
            done = load.one(items=1)
            done.wait()
            print(f"WARM {time.perf_counter() - started:.2f} {done.status} {failed_cells(done)}", flush=True)
        elif command == "load":
            load.start()
            print("LOADING", flush=True)
        elif command == "idle":
            cells, failed = load.stop()
            print(f"IDLE {cells} {failed}", flush=True)
        elif command == "threads":
            print("THREADS " + " ".join(f"{nice}:{n}" for nice, n in thread_nices()), flush=True)
        elif command:
            print(f"UNKNOWN {command}", flush=True)
    app.demo.close()


if __name__ == "__main__":
    main()
