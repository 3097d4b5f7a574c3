"""Where the run log lives and the shape of its table (created and upgraded by Alembic: the
`run_log` branch of services/db/migrations).

`FMG_RUN_LOG` names its SQLite file (default `~/.fm-gallery/runs.sqlite3`; `off` turns logging
off). With `FMG_DATABASE_URL` the rows go to that shared database instead, and the file's folder
still holds the images (`images/`, `uploads/`): one folder shared by the workers of one machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import BigInteger, Column, Engine, Float, Integer, MetaData, Table, Text

from services import db
from services.db.schema import SQLITE_USER_VERSION
from services.errors import StorageError

ENV = "FMG_RUN_LOG"
OFF_VALUES = frozenset({"off", "0", "false", "no", "none"})
DEFAULT_PATH = "~/.fm-gallery/runs.sqlite3"
BRANCH = "run_log"  # its Alembic branch
SCHEMA_VERSION = SQLITE_USER_VERSION  # what a SQLite run log's `PRAGMA user_version` says once upgraded

# The project's storage error, under the name the History tab has always caught: every engine's
# exception (sqlite3, psycopg, SQLAlchemy) is turned into it before it leaves services/.
RunLogError = StorageError

metadata = MetaData()
runs = Table(
    "runs",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),  # order
    Column("id", Text, nullable=False, unique=True),  # uuid4 hex; also names the run's image file
    Column("created_at", Text, nullable=False),  # when the run started, ISO 8601 UTC
    Column("tab", Text, nullable=False),  # the tab that ran it: chat, zero-shot, ...
    Column("task", Text, nullable=False),  # adapters.types.Task value
    Column("provider", Text),
    Column("model", Text),  # NULL when the run failed before a model was chosen
    Column("served_by", Text),
    Column("inputs", Text, nullable=False),  # JSON object, keys scrubbed, long values cut
    Column("params", Text, nullable=False),  # JSON object
    Column("output", Text),  # JSON: text, {label: score}, [hit], {"image": path, ...}
    Column("image_path", Text),  # generated image, relative to the log folder
    Column("latency_s", Float),  # the provider call, from the Result
    Column("ttft_s", Float),  # time to first token, streamed completions only
    Column("wall_s", Float),  # the whole run as the user waited for it, errors included
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cost_usd", Float),
    Column("error", Text),  # NULL when the run succeeded; a cut stream says so here
    Column("visitor", Text),  # who ran it (a pseudonym, services.visitors); NULL: the owner
    Column("comparison_id", Text),  # the Compare tab's comparison it was one side of (params say so too)
)
COLUMNS = (
    "id",
    "created_at",
    "tab",
    "task",
    "provider",
    "model",
    "served_by",
    "inputs",
    "params",
    "output",
    "image_path",
    "latency_s",
    "ttft_s",
    "wall_s",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "error",
    "visitor",
)  # what a reader gets and an export writes (`seq` and `comparison_id` are the table's own)
JSON_COLUMNS = ("inputs", "params", "output")


def location() -> Path | None:
    """The SQLite file (and, beside it, the images), or None when logging is off. Read at each
    run, never cached, so the setting can change without a restart (and each test can point it
    at its own folder)."""
    raw = os.environ.get(ENV, "").strip()
    if raw.lower() in OFF_VALUES:
        return None
    return Path(raw or DEFAULT_PATH).expanduser()


class Store(NamedTuple):
    """Where rows go: the database URL (the key the writer groups rows by)."""

    url: str

    @property
    def name(self) -> str:  # what a warning may show: never a password
        return db.shown(self.url)


def store(path: Path) -> Store:
    return Store(db.store_url(path))


def engine(where: Store) -> Engine:
    """The database, with the run log's tables at their current schema (made on first use)."""
    return db.ready(where.url, BRANCH)


def readable(path: Path | None) -> Engine | None:
    """The database to read from, or None when there is nothing to read (logging off, or no
    SQLite file yet: reading creates none)."""
    if path is None:
        return None
    where = store(path)
    local = db.sqlite_file(where.url)
    if local is not None and not local.exists():
        return None
    return engine(where)
