"""The writer lock: one writer at a time per collection, across threads and processes.

`writer.lock` in the collection's folder is locked with `flock`, which belongs to an open file
description: each `writing` opens the file anew, so two threads of one process wait for each other
as two processes (the app's workers on one machine, sharing the data folder) do. The kernel drops
the lock when its holder dies, so a killed writer never leaves the collection locked. Readers take
no lock. (`flock` is local to a machine: across machines, the vectors go to Qdrant and the folder
is not shared.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.collections.layout import LOCK, check_name, folder, missing
from services.collections.metadata import State, connect, read_state


@dataclass
class Writer:
    """A collection held for writing: its folder and a connection; one at a time per collection."""

    name: str
    path: Path
    conn: sqlite3.Connection

    def state(self) -> State:
        return read_state(self.conn)


@contextlib.contextmanager
def writing(name: str) -> Iterator[Writer]:
    """Hold the collection's writer lock (waiting for another writer to finish)."""
    name = check_name(name)
    path = folder(name)
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
        conn = connect(path, name)
        try:
            yield Writer(name, path, conn)
        finally:
            conn.close()
    finally:
        os.close(fd)  # releases the lock
