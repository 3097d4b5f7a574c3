"""Where evaluations live: one SQLite file in the run log's folder, so a run resumes after a restart.

`FMG_EVALUATIONS` names the file (default: `evaluations.sqlite3` beside the run log; with the run
log off, `~/.fm-gallery/evaluations.sqlite3`). Three tables: the evaluations (spec, owner, status),
one row per finished (item, target, variant) cell, and the cache of identical calls. Each row is
its own short transaction in WAL mode, so a killed process loses at most the cells in flight.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from services import run_log
from services.sqlite_wal import open_wal

DEFAULT_PATH = Path("~/.fm-gallery/evaluations.sqlite3")

SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    visitor TEXT,
    spec TEXT NOT NULL,      -- JSON: dataset, targets, variants, scorer, params, caps
    status TEXT NOT NULL,    -- running | done | cancelled | stopped | failed
    note TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    evaluation TEXT NOT NULL,
    item TEXT NOT NULL,
    target TEXT NOT NULL,
    variant TEXT NOT NULL,
    output TEXT,
    answer TEXT,
    score REAL,
    why TEXT,
    latency_s REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost_usd REAL,
    calls INTEGER NOT NULL,
    cached INTEGER NOT NULL,  -- calls served from the cache
    error TEXT,
    extra TEXT,               -- JSON: e.g. {"attack": true}
    position INTEGER NOT NULL, -- the cell's place in the grid: items, then targets, then variants
    PRIMARY KEY (evaluation, item, target, variant)
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    latency_s REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost_usd REAL,
    created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Cell:
    """One (item, target, variant) result: what was answered, how it scored, what it cost."""

    item: str
    target: str
    variant: str
    output: str | None
    answer: str | None
    score: float | None
    why: str
    latency_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    calls: int
    cached: int
    error: str | None = None
    extra: Mapping[str, Any] | None = None
    position: int = 0


@dataclass(frozen=True)
class Reply:
    """One model call's outcome, as cached."""

    text: str
    latency_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None


def path() -> Path:
    configured = os.environ.get("FMG_EVALUATIONS", "").strip()
    if configured:
        return Path(configured).expanduser()
    log = run_log.location()
    return log.with_name("evaluations.sqlite3") if log is not None else DEFAULT_PATH.expanduser()


_local = threading.local()


def _conn() -> sqlite3.Connection:
    """This thread's connection to the current file (reopened when the path changes)."""
    target = path()
    held = getattr(_local, "held", None)
    if held is None or held[0] != target:
        target.parent.mkdir(parents=True, exist_ok=True)
        conn, _mode = open_wal(target, busy_timeout_s=10.0)
        conn.row_factory = sqlite3.Row
        conn.executescript(SCHEMA)
        _local.held = (target, conn)
    return _local.held[1]


@contextmanager
def _write() -> Iterator[sqlite3.Connection]:
    yield _conn()  # autocommit: each statement is its own transaction


def create(evaluation_id: str, spec: Mapping[str, Any], visitor: str | None) -> None:
    with _write() as conn:
        conn.execute(
            "INSERT INTO evaluations (id, created, visitor, spec, status) VALUES (?, ?, ?, ?, 'running')",
            (evaluation_id, time.time(), visitor, json.dumps(spec)),
        )


def set_status(evaluation_id: str, status: str, note: str | None = None) -> None:
    with _write() as conn:
        conn.execute("UPDATE evaluations SET status = ?, note = ? WHERE id = ?", (status, note, evaluation_id))


def evaluation(evaluation_id: str, visitor: str | None) -> dict[str, Any] | None:
    """The evaluation's row, only for the visitor who started it (None: the owner, who sees all)."""
    row = _conn().execute("SELECT * FROM evaluations WHERE id = ?", (evaluation_id,)).fetchone()
    if row is None or (visitor is not None and row["visitor"] != visitor):
        return None
    return {**dict(row), "spec": json.loads(row["spec"])}


def evaluations(visitor: str | None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest evaluations this visitor may see, newest first, without their specs."""
    where, args = ("WHERE visitor = ?", [visitor]) if visitor is not None else ("", [])
    rows = _conn().execute(
        f"SELECT id, created, status, note FROM evaluations {where} ORDER BY created DESC LIMIT ?", (*args, limit)
    )
    return [dict(r) for r in rows]


_CELL_COLUMNS = [f.name for f in fields(Cell)]
_INSERT_CELL = (
    f"INSERT OR REPLACE INTO cells (evaluation, {', '.join(_CELL_COLUMNS)}) "
    f"VALUES (?, {', '.join('?' for _ in _CELL_COLUMNS)})"
)


def _cell_row(evaluation_id: str, cell: Cell) -> tuple:
    values = [getattr(cell, c) for c in _CELL_COLUMNS]
    values[_CELL_COLUMNS.index("extra")] = json.dumps(dict(cell.extra)) if cell.extra else None
    return (evaluation_id, *values)


def save_cell(evaluation_id: str, cell: Cell) -> None:
    with _write() as conn:
        conn.execute(_INSERT_CELL, _cell_row(evaluation_id, cell))


def save_cells(evaluation_id: str, cells: list[Cell]) -> None:
    """Several cells in one transaction: all of them are stored, or none."""
    conn = _conn()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT_CELL, [_cell_row(evaluation_id, c) for c in cells])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def cells(evaluation_id: str) -> list[Cell]:
    rows = _conn().execute("SELECT * FROM cells WHERE evaluation = ? ORDER BY position", (evaluation_id,))
    out = []
    for r in rows:
        data = {k: r[k] for k in r.keys() if k != "evaluation"}  # noqa: SIM118 - sqlite3.Row has no __iter__ over keys
        data["extra"] = json.loads(data["extra"]) if data["extra"] else None
        out.append(Cell(**data))
    return out


def cached(key: str) -> Reply | None:
    row = _conn().execute("SELECT * FROM cache WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return Reply(row["text"], row["latency_s"], row["input_tokens"], row["output_tokens"], row["cost_usd"])


def cached_many(keys: list[str]) -> dict[str, Reply]:
    """The cached replies among `keys`, read in a few queries."""
    found: dict[str, Reply] = {}
    conn = _conn()
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(f"SELECT * FROM cache WHERE key IN ({marks})", chunk):
            found[row["key"]] = Reply(
                row["text"], row["latency_s"], row["input_tokens"], row["output_tokens"], row["cost_usd"]
            )
    return found


def cache(key: str, reply: Reply) -> None:
    with _write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, reply.text, reply.latency_s, reply.input_tokens, reply.output_tokens, reply.cost_usd, time.time()),
        )
