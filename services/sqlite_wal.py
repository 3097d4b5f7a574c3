"""Opening a SQLite file in WAL mode so that concurrent first uses queue instead of failing.

Turning a new database into WAL needs an exclusive lock for an instant, and SQLite answers that
switch with "database is locked" at once, without waiting on the busy timeout, when another
connection holds any lock. Two threads opening a fresh log together (the first runs after a
start) hit exactly that. So the switch is made one thread at a time per process, and retried
with a short backoff until the busy timeout, for other processes holding the file.
Once the file is in WAL mode the mode is stored in it, and later opens pass straight through.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

_switching = threading.Lock()  # one journal-mode switch at a time in this process


def open_wal(path: Path, busy_timeout_s: float) -> tuple[sqlite3.Connection, str]:
    """A new autocommit connection to `path` (created with an owner-only folder) and its journal
    mode, which is "wal" unless the file system cannot do WAL (then the caller may warn)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    try:
        mode = enable_wal(conn, busy_timeout_s)
    except BaseException:
        conn.close()
        raise
    return conn, mode


def enable_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> str:
    """Put an open connection's file in WAL mode (queueing as above) with `synchronous=NORMAL`;
    the journal mode it ends in. services.db calls it on each new SQLAlchemy connection."""
    mode = _switch_to_wal(conn, time.monotonic() + busy_timeout_s)
    conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: a killed process loses nothing committed
    return mode


def _switch_to_wal(conn: sqlite3.Connection, deadline: float) -> str:
    pause = 0.005
    while True:
        try:
            with _switching:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
