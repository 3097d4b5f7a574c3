"""The embedded backend's upkeep: the vectors file compacted once many rows are removed, and the
approximate index (faiss) built, extended and retrained as the collection grows. Each change is
written to new files first, then committed; superseded files are deleted after the commit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from services.collections import metadata, tables
from services.collections.files import append_vectors, map_vectors, replace_with
from services.collections.layout import DB, IMAGES, LOCK
from services.collections.lock import Writer
from services.collections.metadata import State
from services.search.vector_index import APPROX_THRESHOLD as SEARCH_APPROX_THRESHOLD
from services.search.vector_index import ApproxIndex, build_index

APPROX_THRESHOLD = SEARCH_APPROX_THRESHOLD  # live vectors from which search is approximate
COMPACT_FRACTION = 0.2  # removed rows, as a share of all rows, that make the vectors file rewritten
REBUILD_GROWTH = 2.0  # the approximate index is retrained when the rows have grown this much since


def append(writer: Writer, state: State, vectors: np.ndarray) -> None:
    """The vectors of rows [state.rows, state.rows + len(vectors)), durable before their commit."""
    append_vectors(writer.path / state.vectors_file, state.rows, vectors)


def maintain(writer: Writer, state: State) -> None:
    """After writes: rewrite the vectors without removed rows once they are many, and keep search
    exact below `APPROX_THRESHOLD` live vectors, approximate above it (new rows added to the index,
    which is retrained when the collection has doubled). Commits only when something changed."""
    with writer.read() as c:
        _, dead = metadata.counts(c, state.uid)
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
        _commit(writer, state.uid, changes, remap)


def _commit(writer: Writer, uid: str, changes: dict[str, Any], remap: np.ndarray | None) -> None:
    items, row = tables.items, tables.collections
    with writer.transaction() as c:
        if remap is not None:  # live rows keep their order: row remap[i] becomes row i
            # ascending: an item moves down to a row no item holds any more (old rows below it moved first)
            moves = [{"old": old, "new": new} for new, old in enumerate(remap.tolist()) if old != new]
            if moves:
                moved = items.c.row == sa.bindparam("old")
                c.execute(
                    sa.update(items).where(items.c.collection == uid, moved).values(row=sa.bindparam("new")), moves
                )
            c.execute(sa.delete(tables.dead).where(tables.dead.c.collection == uid))
        c.execute(sa.update(row).where(row.c.uid == uid).values(**changes, version=row.c.version + 1))


def _compacted(writer: Writer, state: State) -> tuple[str, np.ndarray]:
    """A new vectors file holding only the live rows, in order: (its name, the old row of each new row)."""
    with writer.read() as c:
        dead = np.array(metadata.dead_rows(c, state.uid), dtype=np.int64)
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
        fields.update(write_index(writer, state, codes), index_rows=len(vectors))
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
    return {**write_index(writer, state, index), "index_rows": len(vectors)}


def write_index(writer: Writer, state: State, index: Any) -> dict[str, Any]:
    import faiss

    name = f"index-{state.version + 1}.faiss"
    replace_with(writer.path / name, lambda tmp: faiss.write_index(index, str(tmp)))
    return {"index_file": name}


def sweep(writer: Writer, state: State) -> None:
    """Delete the vectors and index files no committed version points at, temporary files of
    killed writers, and the bytes past the committed rows."""
    keep = {DB, f"{DB}-wal", f"{DB}-shm", LOCK, IMAGES, state.vectors_file, state.index_file}
    for entry in writer.path.iterdir():
        if entry.name not in keep and (entry.suffix in (".tmp", ".f32", ".faiss")):
            entry.unlink(missing_ok=True)
    vectors = writer.path / state.vectors_file
    committed = state.rows * (state.dim or 0) * 4
    if vectors.is_file() and vectors.stat().st_size > committed:  # (none: a Qdrant collection made elsewhere)
        os.truncate(vectors, committed)
