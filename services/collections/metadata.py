"""A collection's metadata, through SQLAlchemy Core (`tables`), one code path for every engine:
- embedded default: the collection's own SQLite file, `<folder>/collection.sqlite3` (WAL), holding
  that one collection; opened per use (no pooled connection outlives a deleted collection's file);
- `FMG_DATABASE_URL` set: the shared database (PostgreSQL, or one SQLite file) holds every
  collection, so every worker and machine sees the same ones; its tables come from the
  `collections` Alembic branch (`services.db`).

A commit is one transaction; a reader takes one read transaction (PostgreSQL: REPEATABLE READ)
and sees one committed version whole: the collection row, its removed rows and its items.
Files written before SQLAlchemy (user_version 1 and 2: tables collection, sources, items, dead)
are converted in place, in one transaction, the first time they are opened.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from adapters.errors import BadInput
from services import db, sqlite_wal
from services.collections import tables
from services.collections.layout import DB, missing
from services.db.engines import _WRITE

BRANCH = "collections"  # the Alembic branch of the shared database
SCHEMA_VERSION = 3  # `PRAGMA user_version` of a collection's own file; 1 and 2: before SQLAlchemy
BUSY_TIMEOUT_S = 10.0
EMBEDDED = "embedded"  # vectors in the collection's folder (`files`, `embedded`)
QDRANT = "qdrant"  # vectors in a Qdrant collection (`qdrant`), named in `backend_name`
BACKENDS = (EMBEDDED, QDRANT)


class CollectionError(Exception):
    """A collection's files are not what its metadata says (damaged outside this program)."""


@dataclass(frozen=True)
class State:
    """The collection row of one committed version."""

    uid: str
    name: str
    kind: str
    provider: str
    model: str
    dim: int | None
    created: str
    updated: str
    version: int
    vectors_file: str
    rows: int
    index_file: str | None
    index_rows: int
    trained_rows: int
    nlist: int | None
    nprobe: int | None
    rerank: int | None
    index_note: str
    backend: str = EMBEDDED
    backend_name: str | None = None

    @property
    def embedder(self) -> str:
        return f"{self.provider}:{self.model}"


COLUMNS = [tables.collections.c[f.name] for f in fields(State)]


def shared() -> str | None:
    """The shared database's URL (`FMG_DATABASE_URL`), or None: each collection's own file."""
    return db.database_url()


def shared_engine() -> Engine | None:
    """The shared database's engine, its collections tables ready; None without `FMG_DATABASE_URL`."""
    url = shared()
    return None if url is None else db.ready(url, BRANCH)


def engine_for(path: Path, name: str) -> Engine:
    """The engine holding the collection at `path`: the shared database's, or its own file's
    (which must exist: a missing file is a missing collection, never a new empty one)."""
    url = shared()
    if url is not None:
        return db.ready(url, BRANCH)
    if not (path / DB).is_file():
        raise missing(name)
    return file_engine(path / DB, name)


_file_engines: dict[str, Engine] = {}
_file_engines_lock = threading.Lock()


def file_engine(file: Path, name: str) -> Engine:
    """An engine for one collection's own SQLite file: a new connection per use (NullPool), each
    in WAL with `synchronous=FULL` (a commit is on disk before the files it superseded are
    deleted), its schema brought up to date on connecting."""
    key = str(file)
    with _file_engines_lock:
        made = _file_engines.get(key)
        if made is None:
            made = _file_engines[key] = new_file_engine(file, name)
        return made


def new_file_engine(file: Path, name: str) -> Engine:
    def connect() -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                f"file:{quote(str(file))}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
            )
        except sqlite3.OperationalError:
            raise missing(name) from None

    made = sa.create_engine("sqlite://", creator=connect, poolclass=NullPool)

    @event.listens_for(made, "connect")
    def _connected(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        sqlite_wal.enable_wal(dbapi_conn, BUSY_TIMEOUT_S)
        dbapi_conn.execute("PRAGMA synchronous = FULL")
        upgrade_file(dbapi_conn, name)

    @event.listens_for(made, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return made


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """One read transaction: everything read in it belongs to one committed version."""
    with engine.connect() as conn:
        if not db.is_sqlite(conn):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def writing(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """One write transaction, committed whole or rolled back (SQLite: its write lock taken at once)."""
    return db.writing(engine)


# --- a collection's own file: made, and converted from the layout before SQLAlchemy ---------------

LEGACY = ("collection", "sources", "items", "dead")


def upgrade_file(conn: sqlite3.Connection, name: str) -> None:
    """Bring a collection's own file to `SCHEMA_VERSION` (a new file gets the tables) in one
    transaction; another process may be doing the same, so the version is read again inside it."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found == SCHEMA_VERSION:
        return
    if found > SCHEMA_VERSION:
        raise BadInput(f"The collection '{name}' was written by a newer fm-gallery: upgrade to use it.")
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found < SCHEMA_VERSION:
            dialect = sqlite_dialect.dialect()  # type: ignore[no-untyped-call]
            for table in tables.meta.sorted_tables:
                conn.execute(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
                for index in table.indexes:
                    conn.execute(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
            if found in (1, 2):
                _import_legacy(conn, found)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _import_legacy(conn: sqlite3.Connection, version: int) -> None:
    """Rows of the tables before SQLAlchemy into the current ones (ids and order kept), then those
    tables dropped. Version 1 had no backend columns: its vectors were embedded."""
    backend = "backend, backend_name" if version >= 2 else "'embedded', NULL"
    conn.execute(
        "INSERT INTO collections (uid, name, kind, provider, model, dim, created, updated, version, vectors_file,"
        " rows, index_file, index_rows, trained_rows, nlist, nprobe, rerank, index_note, backend, backend_name)"
        " SELECT uid, name, kind, provider, model, dim, created, updated, version, vectors_file, rows, index_file,"
        f" index_rows, trained_rows, nlist, nprobe, rerank, index_note, {backend} FROM collection"
    )
    conn.execute(
        "INSERT INTO collection_sources (collection, name, hash, items, added) SELECT (SELECT uid FROM collection),"
        " name, hash, items, added FROM sources ORDER BY added, rowid"
    )
    conn.execute(
        "INSERT INTO collection_items (id, collection, source, hash, text, image, row) SELECT id,"
        " (SELECT uid FROM collection), source, hash, text, image, row FROM items"
    )
    conn.execute("INSERT INTO collection_dead (collection, row) SELECT (SELECT uid FROM collection), row FROM dead")
    for table in LEGACY:
        conn.execute(f"DROP TABLE {table}")


# --- reading ---------------------------------------------------------------------------------------


def read_state(conn: Connection, *, name: str | None = None, uid: str | None = None) -> State:
    """The collection row, by uid (a writer's) or by name; a missing one is a missing collection."""
    query = sa.select(*COLUMNS)
    if uid is not None:
        query = query.where(tables.collections.c.uid == uid)
    if name is not None:
        query = query.where(tables.collections.c.name == name)
    row = conn.execute(query).first()
    if row is None:
        raise missing(name or "?")
    return State(*row)


def counts(conn: Connection, uid: str) -> tuple[int, int]:
    """(items, removed rows not yet compacted away)."""
    s, d = tables.sources, tables.dead
    items = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(s.c["items"]), 0)).where(s.c.collection == uid))
    dead = conn.execute(sa.select(sa.func.count()).select_from(d).where(d.c.collection == uid))
    return int(items.scalar_one()), int(dead.scalar_one())


def source_hashes(conn: Connection, uid: str) -> dict[str, str]:
    s = tables.sources
    return {n: h for n, h in conn.execute(sa.select(s.c.name, s.c.hash).where(s.c.collection == uid))}


def source_items(conn: Connection, uid: str) -> dict[str, int]:
    s = tables.sources
    return {n: int(i) for n, i in conn.execute(sa.select(s.c.name, s.c["items"]).where(s.c.collection == uid))}


def source_names(conn: Connection, uid: str) -> tuple[str, ...]:
    """The collection's files, in the order they were added (a replaced file counts as added again)."""
    s = tables.sources
    return tuple(conn.execute(sa.select(s.c.name).where(s.c.collection == uid).order_by(s.c.id)).scalars())


def dead_rows(conn: Connection, uid: str) -> list[int]:
    d = tables.dead
    return [int(r) for r in conn.execute(sa.select(d.c.row).where(d.c.collection == uid)).scalars()]


def items_at(conn: Connection, uid: str, rows: list[int]) -> dict[int, tuple[int, str, str | None, str | None]]:
    """row -> (item id, source, text, image) for the items at `rows`."""
    i = tables.items
    found = conn.execute(
        sa.select(i.c.row, i.c.id, i.c.source, i.c.text, i.c.image).where(i.c.collection == uid, i.c.row.in_(rows))
    )
    return {int(row): (int(item), source, text, image) for row, item, source, text, image in found}


def used_images(conn: Connection, uid: str) -> set[str]:
    i = tables.items
    return set(conn.execute(sa.select(i.c.image).where(i.c.collection == uid, i.c.image.is_not(None))).scalars())


def all_states(conn: Connection) -> list[State]:
    return [State(*row) for row in conn.execute(sa.select(*COLUMNS))]
