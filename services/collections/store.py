"""Writing a collection: creating and deleting it, committing a source file's items and vectors,
removing sources, and the upkeep after writes. Where the parts live: `layout` (folders and names),
`metadata` (the SQLite database), `files` (the vectors file and stored images), `lock` (the
writer lock), and the vector backends, `embedded` (the folder's own files) and `qdrant`.

A commit is one metadata transaction; every vector and file it points at is durable before it runs:
- vectors are written past the committed `rows` (appended to the vectors file and fsynced, or
  upserted into Qdrant and acknowledged), then the transaction that inserts their items advances
  `rows`: a killed writer leaves only rows past `rows`, which no reader looks at and the next
  writer overwrites or sweeps;
- a rewritten file (compacted vectors, a new index, a stored image) goes to a temporary name, is
  fsynced and `os.replace`d to a name no committed version uses yet, then committed.
Writers take the writer lock in turn (`lock`); readers never wait (WAL snapshots of files that are
never changed in place below `rows`). Superseded files are deleted after the commit, so a reader
that loses that race loads again (see `reader`).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adapters.errors import BadInput
from services.collections import embedded, qdrant
from services.collections.files import file_hash, store_image
from services.collections.layout import (
    DB,
    IMAGES,
    KINDS,
    LOCK,
    MAX_NAME_CHARS,
    STALE_S,
    check_name,
    folder,
    missing,
    now,
    root,
)
from services.collections.lock import Writer, writing
from services.collections.metadata import (
    EMBEDDED,
    QDRANT,
    SCHEMA,
    SCHEMA_VERSION,
    CollectionError,
    State,
    connect,
    counts,
    dead_rows,
    read_state,
    source_hashes,
    transaction,
)
from services.sqlite_wal import open_wal

__all__ = [
    "DB",
    "IMAGES",
    "KINDS",
    "LOCK",
    "MAX_NAME_CHARS",
    "CollectionError",
    "Prepared",
    "State",
    "Writer",
    "check_name",
    "commit_source",
    "connect",
    "counts",
    "create",
    "delete",
    "file_hash",
    "folder",
    "maintain",
    "missing",
    "read_state",
    "remove_sources",
    "root",
    "source_hashes",
    "writing",
]


def create(name: str, kind: str, provider: str, model: str) -> State:
    """A new empty collection, made in a hidden folder and renamed into place whole. Its vectors go
    to Qdrant where `FMG_VECTOR_URL` is set now, else into its folder; for good either way."""
    name = check_name(name)
    base = root()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    _clear_leftovers(base)
    target = base / name
    if target.exists():
        raise BadInput(f"A collection named '{name}' exists already: pick another name, or add files to it.")
    uid = uuid.uuid4().hex
    backend, backend_name = (QDRANT, qdrant.point_collection(uid)) if qdrant.configured() else (EMBEDDED, None)
    staging = base / f".creating-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    try:
        conn, _mode = open_wal(staging / DB, 10.0)
        try:
            conn.executescript(SCHEMA)
            stamp = now()
            conn.execute(
                "INSERT INTO collection (id, uid, name, kind, provider, model, dim, created, updated, version,"
                " vectors_file, rows, index_file, index_rows, trained_rows, index_note, backend, backend_name)"
                " VALUES (1, ?, ?, ?, ?, ?, NULL, ?, ?, 1, 'vectors-1.f32', 0, NULL, 0, 0, 'exact', ?, ?)",
                (uid, name, kind, provider, model, stamp, stamp, backend, backend_name),
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
            if entry.name.startswith(".deleted-"):
                _drop_vectors(entry)
            shutil.rmtree(entry, ignore_errors=True)


def _drop_vectors(path: Path) -> None:
    """The Qdrant collection of a deleted collection's folder, if it has one and Qdrant is reachable."""
    try:
        conn = connect(path, path.name)
        try:
            state = read_state(conn)
        finally:
            conn.close()
    except (BadInput, CollectionError, sqlite3.Error):
        return
    if state.backend == QDRANT:
        with contextlib.suppress(BadInput):  # FMG_VECTOR_URL unset here: the points stay in Qdrant
            qdrant.drop(state.backend_name)


def delete(name: str) -> None:
    """Remove a collection: renamed away under the writer lock (readers then find it gone), its
    Qdrant collection dropped, then its folder erased (a killed delete is finished by the next create)."""
    with writing(name) as writer:
        trash = writer.path.with_name(f".deleted-{uuid.uuid4().hex}")
        writer.path.rename(trash)
    _drop_vectors(trash)
    shutil.rmtree(trash, ignore_errors=True)


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
    if state.backend == QDRANT:
        qdrant.upsert(state, vectors)
    else:
        embedded.append(writer, state, vectors)
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


# --- upkeep ----------------------------------------------------------------------------------------


def maintain(writer: Writer) -> None:
    """After writes, on the collection's own backend: removed rows compacted away (embedded: the
    vectors file rewritten once they are many; Qdrant: their points deleted), search kept exact
    below `embedded.APPROX_THRESHOLD` live vectors and approximate above it; then `sweep`."""
    state = writer.state()
    if state.backend == QDRANT:
        items, _ = counts(writer.conn)
        changes = qdrant.maintain(state, dead_rows(writer.conn), embedded.APPROX_THRESHOLD, items)
        if changes:
            with transaction(writer.conn):
                if changes.pop("dead", False):
                    writer.conn.execute("DELETE FROM dead")
                note = changes.get("index_note", state.index_note)
                writer.conn.execute("UPDATE collection SET index_note = ?, version = version + 1 WHERE id = 1", (note,))
    else:
        embedded.maintain(writer, state)
    sweep(writer)


def sweep(writer: Writer) -> None:
    """Delete what no committed version points at: superseded vectors and index files, temporary
    files of killed writers, rows past the committed ones (file bytes or Qdrant points), stored
    images no item uses."""
    state = writer.state()
    embedded.sweep(writer, state)
    if state.backend == QDRANT:
        qdrant.sweep(state)
    images = writer.path / IMAGES
    if images.is_dir():
        used = {row[0] for row in writer.conn.execute("SELECT DISTINCT image FROM items WHERE image IS NOT NULL")}
        for entry in images.iterdir():
            if f"{IMAGES}/{entry.name}" not in used:
                entry.unlink(missing_ok=True)
