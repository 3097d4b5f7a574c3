"""One SQLAlchemy engine (and its connection pool) per database URL per process.

PostgreSQL goes through psycopg 3 with `pool_pre_ping`, so a restarted server costs one retry, not
an error. SQLite keeps what the stores relied on before SQLAlchemy: each new connection turns the
file to WAL (readers never block the writer; a killed process leaves whole transactions or none)
with `synchronous=NORMAL` and a busy timeout (`services.sqlite_wal`), and transactions are begun by
hand, because Python's sqlite3 module would otherwise start them late. `writing()` begins
`BEGIN IMMEDIATE`: the write lock is taken up front, so two writers queue on the busy timeout
instead of failing when both upgrade a read to a write.

Engine-specific SQL lives here and in the migrations only: `lock()` is PostgreSQL's transaction
advisory lock (SQLite needs none: its write lock is the whole database's).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, text

from services import sqlite_wal
from services.db.urls import sqlite_file
from services.errors import StorageError

log = logging.getLogger("fm_gallery.db")

BUSY_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10  # PostgreSQL: an unreachable server is an error after this, not a hang
_WRITE = "fmg_write"  # execution option: begin with SQLite's write lock

MAX_ENGINES = 32  # SQLite files each hold a pool: past this many, the least recently used is closed

_engines: OrderedDict[str, Engine] = OrderedDict()
_lock = threading.Lock()


def engine(url: str) -> Engine:
    """This process's engine for `url` (made on first use; a SQLite file's folder is made owner-only).
    Only the `MAX_ENGINES` most recently used keep their pools open (a process that moves between
    many files, as tests do, would otherwise hold every file open); a closed one reopens on use."""
    with _lock:
        made = _engines.get(url)
        if made is None:
            made = _engines[url] = _create(url)
        _engines.move_to_end(url)
        while len(_engines) > MAX_ENGINES:
            _, oldest = _engines.popitem(last=False)
            oldest.dispose()  # connections still checked out close when they are returned
        return made


def is_sqlite(bound: Engine | Connection) -> bool:
    return bound.dialect.name == "sqlite"


@contextlib.contextmanager
def writing(bound: Engine, flush_to_disk: bool = True) -> Iterator[Connection]:
    """A write transaction, committed on leaving (rolled back on an exception): on SQLite it
    holds the database's write lock from its first statement, on PostgreSQL it is READ COMMITTED.

    `flush_to_disk=False` makes PostgreSQL's commit return before its WAL reaches the disk
    (`synchronous_commit = off` for this transaction): the trade SQLite's `synchronous=NORMAL`
    makes for every commit. A killed client still loses nothing committed and nothing is ever
    half-written; only a crash of the server itself (or a power cut) may lose the last fraction
    of a second of such commits."""
    with bound.execution_options(**{_WRITE: True}).begin() as conn:
        if not flush_to_disk and not is_sqlite(conn):
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        yield conn


def lock(conn: Connection, name: str) -> None:
    """Serialise the transactions that take the lock `name` until they end (PostgreSQL's
    `pg_advisory_xact_lock`); nothing on SQLite, whose `writing()` already holds the only write lock."""
    if is_sqlite(conn):
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for an advisory lock's name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextlib.contextmanager
def storage_errors(what: str, error: type[Exception] = StorageError) -> Iterator[None]:
    """Turn an engine's exception into `error` ("`what`: the driver's sentence"), so that nothing
    engine-specific leaves services/; the SQL and its parameters (visitors' text) are left out."""
    try:
        yield
    except exc.SQLAlchemyError as err:
        orig = getattr(err, "orig", None)
        detail = str(orig if orig is not None else err).strip().splitlines()
        raise error(f"{what}: {type(orig or err).__name__}: {detail[0] if detail else ''}") from err
    except sqlite3.Error as err:
        raise error(f"{what}: {type(err).__name__}: {err}") from err


def as_dict(row: Any) -> dict[str, Any]:
    """A result row (`.mappings()`) as a plain dict with plain `str` keys: SQLAlchemy's column
    names are a `str` subclass, which some JSON encoders (orjson, in Gradio) refuse as keys."""
    return {str(key): value for key, value in row.items()}


def dispose_all() -> None:
    """Forget every engine and its pool (e.g. before deleting the databases they point at)."""
    with _lock:
        held = list(_engines.values())
        _engines.clear()
    for made in held:
        made.dispose()


def _after_fork_in_child() -> None:
    """A forked child must not use its parent's pooled sockets: it starts with no engines."""
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    for made in list(_engines.values()):
        made.dispose(close=False)  # leave the parent's connections to the parent
    _engines.clear()


def _create(url: str) -> Engine:
    path = sqlite_file(url)
    if path is None and url.startswith("sqlite"):
        raise StorageError("An in-memory SQLite database cannot be shared: name a file.")
    if path is None:
        return create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # prompts are private: the folder is the owner's
    made = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(made, "connect")
    def _connected(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the sqlite3 module
        mode = sqlite_wal.enable_wal(dbapi_conn, BUSY_TIMEOUT_S)
        if mode != "wal":
            log.warning("%s is in %s mode, not WAL (a network file system?)", path, mode)

    @event.listens_for(made, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return made


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)  # the launcher may migrate, then fork workers
