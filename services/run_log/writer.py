"""Run-log rows written on a thread of their own, so that no run waits for the disk.

A finished run hands its row over and returns at once; one writer thread commits whatever rows
have queued by then, all in one transaction. Runs writing their own rows would each wait for the
GIL and for the transactions before theirs, at the end of every answer.

Readers call `flush()` first, so a run is in the log for anything that reads it once the run has
returned. Rows still queued at a normal exit are written then; a process killed outright loses
the rows of its last moments (a few milliseconds' worth), never the database.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("fm_gallery.run_log")

Row = dict[str, Any]
Where = Hashable  # where rows go (the run log's database); its `name`, if any, is what a warning shows
EXIT_WAIT_S = 10.0  # at a normal exit, how long queued rows may take to be written


class RowWriter:
    """Hands rows to `write(where, rows)` on one daemon thread, started on the first row."""

    def __init__(self, write: Callable[[Any, list[Row]], None], name: str = "fmg-run-log-writer"):
        self._write = write
        self._name = name
        self._ready = threading.Condition()
        self._queue: list[tuple[Where, Row]] = []
        self._queued = 0  # rows handed over so far
        self._settled = 0  # rows written (or given up on) so far
        self._thread: threading.Thread | None = None

    def put(self, path: Where, row: Row) -> None:
        with self._ready:
            self._queue.append((path, row))
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                atexit.register(self.flush, EXIT_WAIT_S)
            self._ready.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row handed over before this call is written; False on timeout."""
        with self._ready:
            target = self._queued
            return self._ready.wait_for(lambda: self._settled >= target, timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._queue)
                batch, self._queue = self._queue, []
            try:
                for path, rows in _by_path(batch).items():
                    try:
                        self._write(path, rows)
                    except Exception:  # `write` reports its own; the writer (and other files' rows) go on
                        log.exception(
                            "the run-log writer failed on %d rows for %s", len(rows), getattr(path, "name", "?")
                        )
            finally:
                with self._ready:
                    self._settled += len(batch)
                    self._ready.notify_all()


def _by_path(batch: list[tuple[Where, Row]]) -> dict[Where, list[Row]]:
    grouped: dict[Where, list[Row]] = {}
    for path, row in batch:
        grouped.setdefault(path, []).append(row)
    return grouped
