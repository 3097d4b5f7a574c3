"""Writing a collection: creating and deleting it, committing a source file's items and vectors,
removing sources, and the upkeep after writes. Where the parts live: `layout` (folders and names),
`metadata` and `tables` (the collection's own SQLite file, or the shared database), `files` (the
vectors file and stored images), `lock` (the writer lock), and the vector backends, `embedded`
(the folder's own files) and `qdrant`.

A commit is one metadata transaction; every vector and file it points at is durable before it runs:
- vectors are written past the committed `rows` (appended to the vectors file and fsynced, or
  upserted into Qdrant and acknowledged), then the transaction that inserts their items advances
  `rows`: a killed writer leaves only rows past `rows`, which no reader looks at and the next
  writer overwrites or sweeps;
- a rewritten file (compacted vectors, a new index, a stored image) goes to a temporary name, is
  fsynced and `os.replace`d to a name no committed version uses yet, then committed.
Writers take the writer lock in turn (`lock`); readers never wait (read transactions over files
that are never changed in place below `rows`). Superseded files are deleted after the commit, so a reader
that loses that race loads again (see `reader`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from adapters.errors import BadInput
from services.collections import embedded, metadata, qdrant, tables
from services.collections.files import file_hash, store_image
from services.collections.layout import DB, IMAGES, KINDS, LOCK, MAX_NAME_CHARS, STALE_S, check_name, folder, now, root
from services.collections.lock import Writer, ensure_folder, writing
from services.collections.metadata import EMBEDDED, QDRANT, CollectionError, State
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
    "create",
    "delete",
    "file_hash",
    "folder",
    "maintain",
    "remove_sources",
    "root",
    "writing",
]

CREATING_LOCK = ".creating.lock"  # in the root: one creation at a time per machine (shared database)


def create(name: str, kind: str, provider: str, model: str) -> State:
    """A new empty collection. Its vectors go to Qdrant where `FMG_VECTOR_URL` is set now, else
    into its folder; for good either way. Its metadata goes to the shared database, or to its own
    file, made in a hidden folder and renamed into place whole."""
    name = check_name(name)
    base = root()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    _clear_leftovers(base)
    uid = uuid.uuid4().hex
    backend, backend_name = (QDRANT, qdrant.point_collection(uid)) if qdrant.configured() else (EMBEDDED, None)
    stamp = now()
    state = State(
        uid, name, kind, provider, model, None, stamp, stamp, 1, "vectors-1.f32", 0, None, 0, 0, None, None, None,
        "exact", backend, backend_name,
    )  # fmt: skip
    if metadata.shared() is not None:
        _create_shared(base, state)
        return state
    target = base / name
    if target.exists():
        raise _exists(name)
    staging = base / f".creating-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    try:
        conn, _mode = open_wal(staging / DB, metadata.BUSY_TIMEOUT_S)
        conn.close()
        engine = metadata.new_file_engine(staging / DB, name)
        with metadata.writing(engine) as c:
            c.execute(sa.insert(tables.collections).values(**vars(state)))
        engine.dispose()
        (staging / state.vectors_file).touch()
        (staging / LOCK).touch()
        try:
            staging.rename(target)  # fails when another session created it meanwhile
        except OSError:
            raise _exists(name) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return state


def _exists(name: str) -> BadInput:
    return BadInput(f"A collection named '{name}' exists already: pick another name, or add files to it.")


def _create_shared(base: Path, state: State) -> None:
    """The collection's row in the shared database, then its folder here. A folder of that name
    found here first belongs to a collection deleted on another machine: it is cleared."""
    target = base / state.name
    engine = metadata.engine_for(target, state.name)
    with _creating(base):
        with metadata.reading(engine) as c:
            taken = c.execute(sa.select(tables.collections.c.uid).where(tables.collections.c.name == state.name))
            if taken.first() is not None:
                raise _exists(state.name)
        if target.exists():
            target.rename(base / f".deleted-{uuid.uuid4().hex}")
        try:
            with metadata.writing(engine) as c:
                c.execute(sa.insert(tables.collections).values(**vars(state)))
        except sa.exc.IntegrityError:  # created on another machine meanwhile
            raise _exists(state.name) from None
        ensure_folder(target)
        (target / state.vectors_file).touch()


@contextlib.contextmanager
def _creating(base: Path) -> Iterator[None]:
    fd = os.open(base / CREATING_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _clear_leftovers(base: Path) -> None:
    """Folders of deletions and creations a killed process left (a creation in progress is young)."""
    for entry in base.iterdir():
        young = entry.name.startswith(".creating-") and time.time() - entry.stat().st_mtime < STALE_S
        if entry.name.startswith((".creating-", ".deleted-")) and not young:
            if entry.name.startswith(".deleted-") and metadata.shared() is None:
                _drop_vectors(_own_state(entry))
            shutil.rmtree(entry, ignore_errors=True)


def _own_state(path: Path) -> State | None:
    """The collection row in a folder's own metadata file, if it has a readable one."""
    if not (path / DB).is_file():
        return None
    engine = metadata.new_file_engine(path / DB, path.name)
    try:
        with metadata.reading(engine) as c:
            return metadata.all_states(c)[0]
    except (BadInput, IndexError, sa.exc.SQLAlchemyError, sqlite3.Error):
        return None
    finally:
        engine.dispose()


def _drop_vectors(state: State | None) -> None:
    """The Qdrant collection of a deleted collection, if it has one and Qdrant is reachable."""
    if state is not None and state.backend == QDRANT:
        with contextlib.suppress(BadInput):  # FMG_VECTOR_URL unset here: the points stay in Qdrant
            qdrant.drop(state.backend_name)


def delete(name: str) -> None:
    """Remove a collection under the writer lock: its rows deleted from the shared database, or its
    folder renamed away (readers then find it gone); then its Qdrant collection dropped and its
    folder erased (a delete killed after that commit is finished by the next create)."""
    with writing(name) as writer:
        state = writer.state()
        if metadata.shared() is not None:
            with writer.transaction() as c:
                for table in (tables.dead, tables.items, tables.sources):
                    c.execute(sa.delete(table).where(table.c.collection == state.uid))
                c.execute(sa.delete(tables.collections).where(tables.collections.c.uid == state.uid))
        trash = writer.path.with_name(f".deleted-{uuid.uuid4().hex}")
        writer.path.rename(trash)
    _drop_vectors(state)
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
    state = writer.state()
    uid, s, i, d = state.uid, tables.sources, tables.items, tables.dead
    with writer.read() as c:
        stored = c.execute(sa.select(s.c.hash).where(s.c.collection == uid, s.c.name == source.name)).scalar()
    if stored is not None and stored == source.hash:
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
    with writer.transaction() as c:
        if stored is not None:
            mine = (i.c.collection == uid) & (i.c.source == source.name)
            c.execute(sa.insert(d).from_select(["collection", "row"], sa.select(i.c.collection, i.c.row).where(mine)))
            c.execute(sa.delete(i).where(mine))
            c.execute(sa.delete(s).where(s.c.collection == uid, s.c.name == source.name))
        c.execute(
            sa.insert(i),
            [
                {"collection": uid, "source": source.name, "hash": source.hash, "text": text, "image": image,
                 "row": state.rows + n}
                for n, (text, image) in enumerate(rows)
            ],
        )  # fmt: skip
        stamp = now()
        c.execute(sa.insert(s).values(collection=uid, name=source.name, hash=source.hash, items=len(rows), added=stamp))
        _bump(c, uid, rows=tables.collections.c.rows + len(rows), dim=int(vectors.shape[1]), updated=stamp)
    return "replaced" if stored is not None else "added"


def _bump(c: Any, uid: str, **changes: Any) -> None:
    """Change the collection row, as a new committed version."""
    row = tables.collections
    c.execute(sa.update(row).where(row.c.uid == uid).values(**changes, version=row.c.version + 1))


def remove_sources(writer: Writer, names: Sequence[str]) -> int:
    """Drop the named files' items (their rows wait as dead for compaction); the items removed."""
    wanted = sorted(set(names))
    uid, s, i, d = writer.uid, tables.sources, tables.items, tables.dead
    with writer.read() as c:
        stored = metadata.source_items(c, uid)
    unknown = [n for n in wanted if n not in stored]
    if unknown:
        raise BadInput(
            f"The collection '{writer.name}' has no file named {', '.join(repr(n) for n in unknown[:5])}: "
            "nothing was removed."
        )
    if not wanted:
        return 0
    with writer.transaction() as c:
        mine = (i.c.collection == uid) & i.c.source.in_(wanted)
        c.execute(sa.insert(d).from_select(["collection", "row"], sa.select(i.c.collection, i.c.row).where(mine)))
        c.execute(sa.delete(i).where(mine))
        c.execute(sa.delete(s).where(s.c.collection == uid, s.c.name.in_(wanted)))
        _bump(c, uid, updated=now())
    return sum(stored[n] for n in wanted)


# --- upkeep ----------------------------------------------------------------------------------------


def maintain(writer: Writer) -> None:
    """After writes, on the collection's own backend: removed rows compacted away (embedded: the
    vectors file rewritten once they are many; Qdrant: their points deleted), search kept exact
    below `embedded.APPROX_THRESHOLD` live vectors and approximate above it; then `sweep`."""
    state = writer.state()
    if state.backend == QDRANT:
        with writer.read() as c:
            (items, _), dead = metadata.counts(c, state.uid), metadata.dead_rows(c, state.uid)
        changes = qdrant.maintain(state, dead, embedded.APPROX_THRESHOLD, items)
        if changes:
            with writer.transaction() as c:
                if changes.pop("dead", False):
                    c.execute(sa.delete(tables.dead).where(tables.dead.c.collection == state.uid))
                _bump(c, state.uid, index_note=changes.get("index_note", state.index_note))
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
        with writer.read() as c:
            used = metadata.used_images(c, state.uid)
        for entry in images.iterdir():
            if f"{IMAGES}/{entry.name}" not in used:
                entry.unlink(missing_ok=True)
