"""A collection's metadata: one SQLite database (WAL) in its folder, holding the collection row
(what each committed version points at), its source files, its items and the rows removed.

A commit is one transaction; readers take a read transaction and see one committed version whole.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from adapters.errors import BadInput
from services.collections.layout import DB, missing

SCHEMA_VERSION = 2  # SQLite's `PRAGMA user_version`; 2 added the backend columns
BUSY_TIMEOUT_S = 10.0
EMBEDDED = "embedded"  # vectors in the collection's folder (`files`, `embedded`)
QDRANT = "qdrant"  # vectors in a Qdrant collection (`qdrant`), named in `backend_name`
BACKENDS = (EMBEDDED, QDRANT)

SCHEMA = """
CREATE TABLE IF NOT EXISTS collection (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    uid          TEXT NOT NULL,     -- random: a collection re-created under an old name is another one
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,     -- text | image
    provider     TEXT NOT NULL,     -- the embedder that built it
    model        TEXT NOT NULL,
    dim          INTEGER,           -- set by the first vectors added
    created      TEXT NOT NULL,     -- ISO 8601 UTC
    updated      TEXT NOT NULL,
    version      INTEGER NOT NULL,  -- +1 at every commit: readers reload when it moves
    vectors_file TEXT NOT NULL,     -- rows [0, rows) of it are committed (embedded backend)
    rows         INTEGER NOT NULL,  -- rows [0, rows) are committed; a row number is never reused
                                    -- before compaction (Qdrant: the point ids)
    index_file   TEXT,              -- the approximate index, or NULL: exact search
    index_rows   INTEGER NOT NULL,  -- rows [0, index_rows) are in it; later ones are searched exactly
    trained_rows INTEGER NOT NULL,  -- rows when the index was last built (or found not worth it)
    nlist        INTEGER,
    nprobe       INTEGER,
    rerank       INTEGER,           -- candidates re-scored exactly per result; NULL: the codes are exact
    index_note   TEXT NOT NULL,     -- how it is searched, in words
    backend      TEXT NOT NULL DEFAULT 'embedded',  -- where the vectors are: embedded | qdrant, for good
    backend_name TEXT               -- the collection's name in that backend (Qdrant)
);
CREATE TABLE IF NOT EXISTS sources (
    name  TEXT PRIMARY KEY,         -- the uploaded file's name
    hash  TEXT NOT NULL,            -- sha256 of its bytes: an unchanged file is not embedded again
    items INTEGER NOT NULL,
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id     INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    hash   TEXT NOT NULL,           -- the source's content hash
    text   TEXT,                    -- a passage (text collections)
    image  TEXT,                    -- a stored image, relative to the collection's folder
    row    INTEGER NOT NULL         -- its vector's row in the vectors file (Qdrant: its point id)
);
CREATE INDEX IF NOT EXISTS items_by_row ON items (row);
CREATE INDEX IF NOT EXISTS items_by_source ON items (source);
CREATE TABLE IF NOT EXISTS dead (row INTEGER PRIMARY KEY);  -- rows of removed items, until compaction
"""
UPGRADES = {  # user_version -> the statements that bring it to the next one
    1: [
        "ALTER TABLE collection ADD COLUMN backend TEXT NOT NULL DEFAULT 'embedded'",
        "ALTER TABLE collection ADD COLUMN backend_name TEXT",
    ],
}
COLUMNS = (
    "uid, name, kind, provider, model, dim, created, updated, version, vectors_file, rows, index_file,"
    " index_rows, trained_rows, nlist, nprobe, rerank, index_note, backend, backend_name"
)


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


def connect(path: Path, name: str) -> sqlite3.Connection:
    """An autocommit connection to an existing collection's database (never creates one), its
    schema brought up to date."""
    db = path / DB
    if not db.is_file():
        raise missing(name)
    try:
        conn = sqlite3.connect(f"file:{quote(str(db))}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.OperationalError:
        raise missing(name) from None
    try:
        conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk before the files it replaced are deleted
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise BadInput(f"The collection '{name}' was written by a newer fm-gallery: upgrade to use it.")
        if found < SCHEMA_VERSION:
            _upgrade(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring an older schema up to date in one transaction (another process may be doing the same)."""
    with transaction(conn):
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        while found < SCHEMA_VERSION:
            for statement in UPGRADES[found]:
                conn.execute(statement)
            found += 1
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE), committed or rolled back whole."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def read_state(conn: sqlite3.Connection) -> State:
    row = conn.execute(f"SELECT {COLUMNS} FROM collection WHERE id = 1").fetchone()
    if row is None:
        raise CollectionError("the collection's metadata has no collection row")
    return State(*row)


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(items, removed rows not yet compacted away)."""
    items = conn.execute("SELECT COALESCE(SUM(items), 0) FROM sources").fetchone()[0]
    dead = conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
    return int(items), int(dead)


def source_hashes(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, hash FROM sources").fetchall())


def dead_rows(conn: sqlite3.Connection) -> list[int]:
    return [r for (r,) in conn.execute("SELECT row FROM dead")]
