"""One collection on disk: its folder, metadata database, writer lock, and every write to it.

`<root>/<name>/` holds `collection.sqlite3` (WAL), `vectors-<generation>.f32` (raw float32 rows,
memory-mapped by readers), `index-<version>.faiss` (the approximate index's cells and codes, when
the collection is large enough), `images/` (an image collection's stored files) and `writer.lock`.

A commit is one SQLite transaction; every file it points at is complete before it runs:
- vectors are appended past the committed `rows` and fsynced, then the transaction that inserts
  their items advances `rows`: a killed writer leaves only bytes past `rows`, which no reader maps
  and the next writer overwrites or truncates;
- a rewritten file (compacted vectors, a new index, a stored image) goes to a temporary name, is
  fsynced and `os.replace`d to a name no committed version uses yet, then committed.
Writers take `writer.lock` (flock) in turn; readers never wait (WAL snapshots of files that are
never changed in place below `rows`). Superseded files are deleted after the commit, so a reader
that loses that race loads again (see `reader`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from adapters.errors import BadInput
from services import run_log
from services.search.vector_index import APPROX_THRESHOLD as SEARCH_APPROX_THRESHOLD
from services.search.vector_index import ApproxIndex, build_index
from services.sqlite_wal import open_wal

ENV = "FMG_COLLECTIONS"
DEFAULT_ROOT = Path("~/.fm-gallery/collections")
DB = "collection.sqlite3"
LOCK = "writer.lock"
IMAGES = "images"
KINDS = ("text", "image")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")
MAX_NAME_CHARS = 64
SCHEMA_VERSION = 1  # SQLite's `PRAGMA user_version`
BUSY_TIMEOUT_S = 10.0
STALE_S = 3600.0  # a hidden `.creating-*` folder this old belongs to a killed process

APPROX_THRESHOLD = SEARCH_APPROX_THRESHOLD  # live vectors from which search is approximate
COMPACT_FRACTION = 0.2  # removed rows, as a share of all rows, that make the vectors file rewritten
REBUILD_GROWTH = 2.0  # the approximate index is retrained when the rows have grown this much since

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
    vectors_file TEXT NOT NULL,     -- rows [0, rows) of it are committed
    rows         INTEGER NOT NULL,
    index_file   TEXT,              -- the approximate index, or NULL: exact search
    index_rows   INTEGER NOT NULL,  -- rows [0, index_rows) are in it; later ones are searched exactly
    trained_rows INTEGER NOT NULL,  -- rows when the index was last built (or found not worth it)
    nlist        INTEGER,
    nprobe       INTEGER,
    rerank       INTEGER,           -- candidates re-scored exactly per result; NULL: the codes are exact
    index_note   TEXT NOT NULL      -- how it is searched, in words
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
    row    INTEGER NOT NULL         -- its vector's row in the vectors file
);
CREATE INDEX IF NOT EXISTS items_by_row ON items (row);
CREATE INDEX IF NOT EXISTS items_by_source ON items (source);
CREATE TABLE IF NOT EXISTS dead (row INTEGER PRIMARY KEY);  -- rows of removed items, until compaction
"""


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

    @property
    def embedder(self) -> str:
        return f"{self.provider}:{self.model}"


# --- where collections live and what they may be called --------------------------------------------


def root() -> Path:
    """`FMG_COLLECTIONS`, else `collections/` beside the run log, else `~/.fm-gallery/collections`;
    read at each call, like the run log's location."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    log = run_log.location()
    return log.with_name("collections") if log is not None else DEFAULT_ROOT.expanduser()


def check_name(name: object) -> str:
    """A collection name a folder may carry: no path separator, no leading dot, 64 characters at most."""
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise BadInput("Name the collection (letters, digits, spaces, '.', '_' or '-').")
    if len(text) > MAX_NAME_CHARS or not NAME.fullmatch(text) or text.endswith("."):
        shown = repr(text[:40] + ("…" if len(text) > 40 else ""))
        raise BadInput(
            f"{shown} cannot name a collection: use at most {MAX_NAME_CHARS} letters, digits, spaces, '.', '_' "
            "or '-', starting with a letter or digit."
        )
    return text


def folder(name: str) -> Path:
    return root() / check_name(name)


def missing(name: str) -> BadInput:
    return BadInput(f"There is no collection named '{name}': create it first, or pick one that exists.")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- the metadata database -------------------------------------------------------------------------


def connect(path: Path, name: str) -> sqlite3.Connection:
    """An autocommit connection to an existing collection's database (never creates one)."""
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
    except BaseException:
        conn.close()
        raise
    if found > SCHEMA_VERSION:
        conn.close()
        raise BadInput(f"The collection '{name}' was written by a newer fm-gallery: upgrade to use it.")
    return conn


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
    row = conn.execute(
        "SELECT uid, name, kind, provider, model, dim, created, updated, version, vectors_file, rows, index_file,"
        " index_rows, trained_rows, nlist, nprobe, rerank, index_note FROM collection WHERE id = 1"
    ).fetchone()
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


# --- creating and deleting -------------------------------------------------------------------------


def create(name: str, kind: str, provider: str, model: str) -> State:
    """A new empty collection, made in a hidden folder and renamed into place whole."""
    name = check_name(name)
    base = root()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    _clear_leftovers(base)
    target = base / name
    if target.exists():
        raise BadInput(f"A collection named '{name}' exists already: pick another name, or add files to it.")
    staging = base / f".creating-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    try:
        conn, _mode = open_wal(staging / DB, BUSY_TIMEOUT_S)
        try:
            conn.executescript(SCHEMA)
            stamp = now()
            conn.execute(
                "INSERT INTO collection (id, uid, name, kind, provider, model, dim, created, updated, version,"
                " vectors_file, rows, index_file, index_rows, trained_rows, index_note)"
                " VALUES (1, ?, ?, ?, ?, ?, NULL, ?, ?, 1, 'vectors-1.f32', 0, NULL, 0, 0, 'exact')",
                (uuid.uuid4().hex, name, kind, provider, model, stamp, stamp),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            state = read_state(conn)
        finally:
            conn.close()
        (staging / "vectors-1.f32").touch()
        (staging / LOCK).touch()
        try:
            staging.rename(target)  # fails when another session created it meanwhile
        except OSError:
            raise BadInput(
                f"A collection named '{name}' exists already: pick another name, or add files to it."
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return state


def _clear_leftovers(base: Path) -> None:
    """Folders of deletions and creations a killed process left (a creation in progress is young)."""
    for entry in base.iterdir():
        young = entry.name.startswith(".creating-") and time.time() - entry.stat().st_mtime < STALE_S
        if entry.name.startswith((".creating-", ".deleted-")) and not young:
            shutil.rmtree(entry, ignore_errors=True)


def delete(name: str) -> None:
    """Remove a collection: renamed away under the writer lock (readers then find it gone), then erased."""
    with writing(name) as writer:
        trash = writer.path.with_name(f".deleted-{uuid.uuid4().hex}")
        writer.path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


# --- the writer ------------------------------------------------------------------------------------


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


# --- files -----------------------------------------------------------------------------------------


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        _fsync_file(path)


def replace_with(target: Path, write: Any) -> None:
    """Write a file whole under a temporary name (`write(tmp_path)`), fsync it, then rename it to `target`."""
    tmp = _temporary(target)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def append_vectors(path: Path, at_row: int, vectors: np.ndarray) -> None:
    """Write `vectors` from row `at_row` on (over any uncommitted rows a killed writer left), durably."""
    data = np.ascontiguousarray(vectors, dtype="<f4")
    offset = at_row * data.shape[1] * 4
    with path.open("r+b") as f:
        if os.fstat(f.fileno()).st_size < offset:
            raise CollectionError(f"{path.name} is shorter than its {at_row:,} committed rows")
        f.seek(offset)
        f.write(data.tobytes())
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def map_vectors(path: Path, rows: int, dim: int) -> np.ndarray:
    """The committed rows of a vectors file, memory-mapped read-only (nothing is read until used)."""
    if rows == 0:
        return np.empty((0, dim), dtype=np.float32)
    return np.memmap(path, dtype="<f4", mode="r", shape=(rows, dim))


def store_image(path: Path, source: Path, digest: str) -> str:
    """The uploaded image copied into the collection (once per content), as a path relative to it."""
    suffix = source.suffix.lower()
    relative = f"{IMAGES}/{digest[:40]}{suffix}"
    target = path / relative
    if not target.is_file():
        target.parent.mkdir(mode=0o700, exist_ok=True)
        replace_with(target, lambda tmp: shutil.copyfile(source, tmp))
    return relative


# --- committing sources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One uploaded file, read and cut into items, ready to be embedded."""

    name: str
    path: Path
    hash: str
    texts: tuple[str, ...]  # a text file's passages; empty for an image

    @property
    def inputs(self) -> list[str]:
        """What the embedder is given: the passages, or the image file's path."""
        return list(self.texts) if self.texts else [str(self.path)]


def commit_source(writer: Writer, source: Prepared, vectors: np.ndarray) -> str:
    """Store one file's items and vectors in one transaction, replacing an older version of it:
    "added", "replaced", or "unchanged" where another session stored the same content meanwhile."""
    conn = writer.conn
    state = writer.state()
    stored = conn.execute("SELECT hash FROM sources WHERE name = ?", (source.name,)).fetchone()
    if stored is not None and stored[0] == source.hash:
        return "unchanged"
    if state.dim is not None and vectors.shape[1] != state.dim:
        raise BadInput(
            f"The embedder returned vectors of {vectors.shape[1]} dimensions; the collection '{writer.name}' holds "
            f"{state.dim}: add files with the embedder that built it ({state.embedder})."
        )
    if len(vectors) != len(source.inputs):
        raise CollectionError(f"{len(vectors)} vectors for the {len(source.inputs)} items of '{source.name}'")
    if state.kind == "image":
        rows: list[tuple[str | None, str | None]] = [(None, store_image(writer.path, source.path, source.hash))]
    else:
        rows = [(text, None) for text in source.texts]
    append_vectors(writer.path / state.vectors_file, state.rows, vectors)
    with transaction(conn):
        if stored is not None:
            conn.execute("INSERT OR IGNORE INTO dead SELECT row FROM items WHERE source = ?", (source.name,))
            conn.execute("DELETE FROM items WHERE source = ?", (source.name,))
        conn.executemany(
            "INSERT INTO items (source, hash, text, image, row) VALUES (?, ?, ?, ?, ?)",
            [(source.name, source.hash, text, image, state.rows + i) for i, (text, image) in enumerate(rows)],
        )
        stamp = now()
        conn.execute(
            "INSERT OR REPLACE INTO sources (name, hash, items, added) VALUES (?, ?, ?, ?)",
            (source.name, source.hash, len(rows), stamp),
        )
        conn.execute(
            "UPDATE collection SET rows = rows + ?, dim = ?, version = version + 1, updated = ? WHERE id = 1",
            (len(rows), vectors.shape[1], stamp),
        )
    return "replaced" if stored is not None else "added"


def remove_sources(writer: Writer, names: Sequence[str]) -> int:
    """Drop the named files' items (their rows wait as dead for compaction); the items removed."""
    conn = writer.conn
    wanted = sorted(set(names))
    stored = {row[0]: row[1] for row in conn.execute("SELECT name, items FROM sources")}
    unknown = [n for n in wanted if n not in stored]
    if unknown:
        raise BadInput(
            f"The collection '{writer.name}' has no file named {', '.join(repr(n) for n in unknown[:5])}: "
            "nothing was removed."
        )
    if not wanted:
        return 0
    marks = ",".join("?" * len(wanted))
    with transaction(conn):
        conn.execute(f"INSERT OR IGNORE INTO dead SELECT row FROM items WHERE source IN ({marks})", wanted)
        conn.execute(f"DELETE FROM items WHERE source IN ({marks})", wanted)
        conn.execute(f"DELETE FROM sources WHERE name IN ({marks})", wanted)
        conn.execute("UPDATE collection SET version = version + 1, updated = ? WHERE id = 1", (now(),))
    return sum(stored[n] for n in wanted)


# --- keeping the index fit -------------------------------------------------------------------------


def maintain(writer: Writer) -> None:
    """After writes: rewrite the vectors without removed rows once they are many, and keep search
    exact below `APPROX_THRESHOLD` live vectors, approximate above it (new rows added to the index,
    which is retrained when the collection has doubled). Commits only when something changed."""
    conn = writer.conn
    state = writer.state()
    _, dead = counts(conn)
    changes: dict[str, Any] = {}
    vectors_file, rows, remap = state.vectors_file, state.rows, None
    if dead and dead >= COMPACT_FRACTION * state.rows:
        vectors_file, remap = _compacted(writer, state)
        rows, dead = len(remap), 0
        changes.update(vectors_file=vectors_file, rows=rows, index_file=None, index_rows=0, trained_rows=0)
    index_file = changes.get("index_file", state.index_file)
    trained = changes.get("trained_rows", state.trained_rows)
    if rows - dead < max(APPROX_THRESHOLD, 2):
        if index_file is not None or state.index_note != "exact" or trained:
            changes.update(index_file=None, index_rows=0, trained_rows=0, nlist=None, nprobe=None, rerank=None)
            changes.update(index_note="exact")
    elif rows > REBUILD_GROWTH * trained:  # no index yet, or the collection has outgrown it
        vectors = map_vectors(writer.path / vectors_file, rows, state.dim or 0)
        changes.update(_built(writer, state, vectors))
    elif index_file is not None and state.index_rows < rows:
        vectors = map_vectors(writer.path / vectors_file, rows, state.dim or 0)
        changes.update(_extended(writer, state, vectors))
    if changes:
        _commit(writer, state, changes, remap)
    sweep(writer)


def _commit(writer: Writer, state: State, changes: dict[str, Any], remap: np.ndarray | None) -> None:
    conn = writer.conn
    with transaction(conn):
        if remap is not None:  # live rows keep their order: row remap[i] becomes row i
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS remap (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
            conn.execute("DELETE FROM remap")
            conn.executemany("INSERT INTO remap VALUES (?, ?)", zip(remap.tolist(), range(len(remap)), strict=True))
            conn.execute("UPDATE items SET row = (SELECT new FROM remap WHERE old = items.row)")
            conn.execute("DELETE FROM dead")
            conn.execute("DROP TABLE remap")
        columns = ", ".join(f"{column} = ?" for column in changes)
        conn.execute(
            f"UPDATE collection SET {columns}, version = version + 1 WHERE id = 1",
            tuple(changes.values()),
        )


def _compacted(writer: Writer, state: State) -> tuple[str, np.ndarray]:
    """A new vectors file holding only the live rows, in order: (its name, the old row of each new row)."""
    dead = np.fromiter((r for (r,) in writer.conn.execute("SELECT row FROM dead")), dtype=np.int64)
    keep = np.setdiff1d(np.arange(state.rows, dtype=np.int64), dead, assume_unique=True)
    vectors = map_vectors(writer.path / state.vectors_file, state.rows, state.dim or 0)
    name = f"vectors-{state.version + 1}.f32"

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            for start in range(0, len(keep), 65_536):
                f.write(np.ascontiguousarray(vectors[keep[start : start + 65_536]], dtype="<f4").tobytes())

    replace_with(writer.path / name, write)
    return name, keep


@contextlib.contextmanager
def one_faiss_thread() -> Iterator[None]:
    """Run this thread's faiss calls on one OpenMP thread (the setting is per calling thread): builds
    run beside the app's requests, and OpenMP threads stall many times over when another process
    holds a core; a single query gains nothing from more."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _built(writer: Writer, state: State, vectors: np.ndarray) -> dict[str, Any]:
    """Index fields for a freshly built index over every row (`build_index` decides whether
    approximate search is worth it; where it is not, search stays exact until the rows double)."""
    with one_faiss_thread():
        built = build_index(vectors, threshold=0)
    fields: dict[str, Any] = {"trained_rows": len(vectors), "index_note": built.name, "index_rows": 0}
    fields.update(index_file=None, nlist=None, nprobe=None, rerank=None)
    if isinstance(built, ApproxIndex):
        codes = _codes(built)
        fields.update(_write_index(writer, state, codes), index_rows=len(vectors))
        fields.update(nlist=built.nlist, nprobe=built.nprobe, rerank=built.rerank)
    return fields


def _codes(index: ApproxIndex) -> Any:
    """The part of an `ApproxIndex` worth storing: its cells and compact codes. Candidates are
    re-scored against the memory-mapped vectors instead of the full copy faiss keeps for that."""
    import faiss

    inner = faiss.downcast_index(index._index)
    return faiss.downcast_index(inner.base_index) if isinstance(inner, faiss.IndexRefine) else inner


def _extended(writer: Writer, state: State, vectors: np.ndarray) -> dict[str, Any]:
    """The stored index with the rows added since, assigned to its existing cells."""
    import faiss

    assert state.index_file is not None
    index = faiss.read_index(str(writer.path / state.index_file))
    with one_faiss_thread():
        index.add(np.ascontiguousarray(vectors[state.index_rows :], dtype=np.float32))
    return {**_write_index(writer, state, index), "index_rows": len(vectors)}


def _write_index(writer: Writer, state: State, index: Any) -> dict[str, Any]:
    import faiss

    name = f"index-{state.version + 1}.faiss"
    replace_with(writer.path / name, lambda tmp: faiss.write_index(index, str(tmp)))
    return {"index_file": name}


def sweep(writer: Writer) -> None:
    """Delete what no committed version points at: superseded vectors and index files, temporary
    files of killed writers, stored images no item uses, bytes past the committed rows."""
    state = writer.state()
    keep = {DB, f"{DB}-wal", f"{DB}-shm", LOCK, IMAGES, state.vectors_file, state.index_file}
    for entry in writer.path.iterdir():
        if entry.name not in keep and (entry.suffix in (".tmp", ".f32", ".faiss")):
            entry.unlink(missing_ok=True)
    vectors = writer.path / state.vectors_file
    committed = state.rows * (state.dim or 0) * 4
    if vectors.stat().st_size > committed:
        os.truncate(vectors, committed)
    images = writer.path / IMAGES
    if images.is_dir():
        used = {row[0] for row in writer.conn.execute("SELECT DISTINCT image FROM items WHERE image IS NOT NULL")}
        for entry in images.iterdir():
            if f"{IMAGES}/{entry.name}" not in used:
                entry.unlink(missing_ok=True)
