"""Where evaluations live, so a run resumes after a restart and every worker sees every evaluation.

`FMG_EVALUATIONS` names the SQLite file (default: `evaluations.sqlite3` beside the run log; with
the run log off, `~/.fm-gallery/evaluations.sqlite3`); with `FMG_DATABASE_URL` they live in that
shared database (services.db; Alembic branch `evaluations`). Three tables: the evaluations
(spec, owner, status), one row per finished (item, target, variant) cell, and the cache of
identical calls. Each row is its own short transaction (several cells: one transaction), so a
killed process loses at most the cells in flight and never leaves half a row.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, Float, Integer, MetaData, Table, Text, insert, select, update

from services import db, run_log

DEFAULT_PATH = Path("~/.fm-gallery/evaluations.sqlite3")
BRANCH = "evaluations"  # its Alembic branch

metadata = MetaData()
evaluations_table = Table(
    "evaluations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("created", Float, nullable=False),
    Column("visitor", Text),
    Column("spec", Text, nullable=False),  # JSON: dataset, targets, variants, scorer, params, caps
    Column("status", Text, nullable=False),  # running | done | cancelled | stopped | failed
    Column("note", Text),
)
cells_table = Table(
    "cells",
    metadata,
    Column("evaluation", Text, primary_key=True),
    Column("item", Text, primary_key=True),
    Column("target", Text, primary_key=True),
    Column("variant", Text, primary_key=True),
    Column("output", Text),
    Column("answer", Text),
    Column("score", Float),
    Column("why", Text),
    Column("latency_s", Float),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cost_usd", Float),
    Column("calls", Integer, nullable=False),
    Column("cached", Integer, nullable=False),  # calls served from the cache
    Column("error", Text),
    Column("extra", Text),  # JSON: e.g. {"attack": true}
    Column("position", Integer, nullable=False),  # the cell's place in the grid: items, then targets, then variants
)
cache_table = Table(
    "cache",
    metadata,
    Column("key", Text, primary_key=True),
    Column("text", Text, nullable=False),
    Column("latency_s", Float),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cost_usd", Float),
    Column("created", Float, nullable=False),
)


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


def _engine() -> Engine:
    """The database (the SQLite file or the shared one), with the evaluations' tables at their head."""
    return db.ready(db.store_url(path()), BRANCH)


@contextlib.contextmanager
def _write(what: str) -> Iterator[Connection]:
    """A write transaction whose engine errors leave as `StorageError` ("could not <what>")."""
    with db.storage_errors(f"the evaluation store could not {what}"), db.writing(_engine()) as conn:
        yield conn


def _read(statement) -> list[Any]:
    with db.storage_errors("the evaluation store could not be read"), _engine().connect() as conn:
        return list(conn.execute(statement).mappings())


def create(evaluation_id: str, spec: Mapping[str, Any], visitor: str | None) -> None:
    with _write("create the evaluation") as conn:
        conn.execute(
            insert(evaluations_table).values(
                id=evaluation_id, created=time.time(), visitor=visitor, spec=json.dumps(spec), status="running"
            )
        )


def set_status(evaluation_id: str, status: str, note: str | None = None) -> None:
    with _write("update the evaluation") as conn:
        conn.execute(
            update(evaluations_table).where(evaluations_table.c.id == evaluation_id).values(status=status, note=note)
        )


def evaluation(evaluation_id: str, visitor: str | None) -> dict[str, Any] | None:
    """The evaluation's row, only for the visitor who started it (None: the owner, who sees all)."""
    found = _read(select(evaluations_table).where(evaluations_table.c.id == evaluation_id))
    if not found or (visitor is not None and found[0]["visitor"] != visitor):
        return None
    row = db.as_dict(found[0])
    return {**row, "spec": json.loads(row["spec"])}


def evaluations(visitor: str | None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest evaluations this visitor may see, newest first, without their specs."""
    t = evaluations_table
    statement = select(t.c.id, t.c.created, t.c.status, t.c.note).order_by(t.c.created.desc()).limit(limit)
    if visitor is not None:
        statement = statement.where(t.c.visitor == visitor)
    return [db.as_dict(r) for r in _read(statement)]


_CELL_COLUMNS = [f.name for f in fields(Cell)]


def _cell_row(evaluation_id: str, cell: Cell) -> dict[str, Any]:
    values = {c: getattr(cell, c) for c in _CELL_COLUMNS}
    values["extra"] = json.dumps(dict(cell.extra)) if cell.extra else None
    return {"evaluation": evaluation_id, **values}


def _replace_cells(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert or replace cells by their key (a cell rerun after a resume replaces the old one)."""
    t = cells_table
    for row in rows:
        key = [t.c[k] == row[k] for k in ("evaluation", "item", "target", "variant")]
        if not conn.execute(update(t).where(*key).values(**row)).rowcount:
            conn.execute(insert(t).values(**row))


def save_cell(evaluation_id: str, cell: Cell) -> None:
    with _write("save a cell") as conn:
        _replace_cells(conn, [_cell_row(evaluation_id, cell)])


def save_cells(evaluation_id: str, cells: list[Cell]) -> None:
    """Several cells in one transaction: all of them are stored, or none."""
    with _write("save the cells") as conn:
        _replace_cells(conn, [_cell_row(evaluation_id, c) for c in cells])


def cells(evaluation_id: str) -> list[Cell]:
    rows = _read(select(cells_table).where(cells_table.c.evaluation == evaluation_id).order_by(cells_table.c.position))
    out = []
    for r in rows:
        data = {k: r[k] for k in _CELL_COLUMNS}
        data["extra"] = json.loads(data["extra"]) if data["extra"] else None
        out.append(Cell(**data))
    return out


def _reply(row) -> Reply:
    return Reply(row["text"], row["latency_s"], row["input_tokens"], row["output_tokens"], row["cost_usd"])


def cached(key: str) -> Reply | None:
    found = _read(select(cache_table).where(cache_table.c.key == key))
    return _reply(found[0]) if found else None


def cached_many(keys: list[str]) -> dict[str, Reply]:
    """The cached replies among `keys`, read in a few queries."""
    found: dict[str, Reply] = {}
    for i in range(0, len(keys), 500):
        for row in _read(select(cache_table).where(cache_table.c.key.in_(keys[i : i + 500]))):
            found[row["key"]] = _reply(row)
    return found


def cache(key: str, reply: Reply) -> None:
    """Remember a reply; the first one stored for a key wins (another worker's identical call)."""
    row = {
        "key": key,
        "text": reply.text,
        "latency_s": reply.latency_s,
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "cost_usd": reply.cost_usd,
        "created": time.time(),
    }
    with _write("cache a reply") as conn:
        if not conn.execute(update(cache_table).where(cache_table.c.key == key).values(**row)).rowcount:
            conn.execute(insert(cache_table).values(**row))
