"""The writer lock: one writer at a time per collection, across threads, processes and machines.

`writer.lock` in the collection's folder is locked with `flock`, which belongs to an open file
description: each `writing` opens the file anew, so two threads of one process wait for each other
as two processes (the app's workers on one machine, sharing the data folder) do. The kernel drops
the lock when its holder dies, so a killed writer never leaves the collection locked. `flock` is
local to a machine: with the metadata in a shared PostgreSQL (`FMG_DATABASE_URL`), the writer also
holds a session advisory lock there, which PostgreSQL drops when the writer's connection ends.
Readers take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from services import db
from services.collections import metadata
from services.collections.layout import LOCK, check_name, folder, missing
from services.collections.metadata import State
from services.db.engines import lock_key


@dataclass
class Writer:
    """A collection held for writing: its name, folder, uid and metadata engine; one at a time."""

    name: str
    path: Path
    uid: str
    engine: Engine

    def state(self) -> State:
        with self.engine.connect() as conn:
            return metadata.read_state(conn, uid=self.uid, name=self.name)

    def read(self) -> contextlib.AbstractContextManager[Connection]:
        return metadata.reading(self.engine)

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        return metadata.writing(self.engine)


def ensure_folder(path: Path) -> None:
    """A shared database's collection made elsewhere gets its folder here (lock, images, vectors)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    (path / LOCK).touch(exist_ok=True)


@contextlib.contextmanager
def writing(name: str) -> Iterator[Writer]:
    """Hold the collection's writer lock (waiting for another writer to finish)."""
    name = check_name(name)
    path = folder(name)
    engine = metadata.engine_for(path, name)
    if metadata.shared() is not None:
        with engine.connect() as conn:
            metadata.read_state(conn, name=name)  # missing: said before any folder is made for it
        ensure_folder(path)
    try:
        fd = os.open(path / LOCK, os.O_RDWR)
    except FileNotFoundError:
        raise missing(name) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # deleted (renamed away) while this writer waited?
            current = os.stat(path / LOCK).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            raise missing(name)
        with _database_lock(engine, name) as uid:
            yield Writer(name, path, uid, engine)
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _database_lock(engine: Engine, name: str) -> Iterator[str]:
    """PostgreSQL: a session advisory lock on the collection's name, for writers on other machines;
    SQLite needs none (one machine: `flock` is enough). The collection's uid, read under the lock."""
    if db.is_sqlite(engine):
        with engine.connect() as conn:
            uid = metadata.read_state(conn, name=name).uid
        yield uid
        return
    key = lock_key(f"fm-gallery:collection:{name}")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
        try:
            yield metadata.read_state(conn, name=name).uid
        finally:
            conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
