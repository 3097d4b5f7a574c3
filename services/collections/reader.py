"""Searching a collection: a loaded snapshot of one committed version, kept per process.

A snapshot maps the committed rows of the vectors file (pages are read when a search touches
them) and reads the approximate index's cells and codes, if any. Rows [0, index_rows) are
searched through that index, whose candidates are re-scored exactly against the mapped vectors;
rows added since (a writer killed before it updated the index) are searched exactly; rows of
removed items are skipped until compaction drops them.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from adapters.errors import BadInput
from services.collections import embedded, files, metadata, qdrant
from services.collections.layout import folder
from services.collections.metadata import QDRANT, State, dead_rows, read_state
from services.search.vector_index import ExactIndex

MAX_LOADED = 8  # collections kept loaded in this process
CALIBRATED_K = 10  # ApproxIndex calibrates its breadth for the top 10: fewer results fetch as many candidates
LOAD_ATTEMPTS = 5  # a writer may delete the files of the version just read: read the next one


@dataclass
class Snapshot:
    """One committed version of a collection, ready to search."""

    state: State
    vectors: np.ndarray  # (rows, dim), memory-mapped
    dead: np.ndarray  # bool per row: removed, skipped
    index: Any  # faiss index over rows [0, state.index_rows), or None
    tail: ExactIndex | None = field(default=None)  # rows not in the index, searched exactly
    tail_dead: int = 0
    index_dead: int = 0

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the best k live rows, best first; fewer where fewer are stored."""
        parts = []
        if self.index is not None and self.state.index_rows:
            parts.append(self._approximate(query, k))
        if self.tail is not None and len(self.tail):
            start = self.state.index_rows if self.index is not None else 0
            fetch = min(k + self.tail_dead, len(self.tail))
            scores, ids = self.tail.search(query[None, :], fetch)
            rows = ids[0] + start
            alive = ~self.dead[rows]
            parts.append((scores[0][alive][:k], rows[alive][:k]))
        if not parts:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        scores = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        order = np.argsort(-scores, kind="stable")[:k]
        return scores[order], rows[order]

    def _approximate(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        state, n = self.state, self.state.index_rows
        nprobe, fetch = state.nprobe or 1, min(n, max(k, CALIBRATED_K) * (state.rerank or 1))
        scores, rows = self._candidates(query, nprobe, fetch)
        if len(rows) < min(k, n - self.index_dead):  # the cells scanned held too few live rows: scan them all
            scores, rows = self._candidates(query, state.nlist or nprobe, min(n, fetch + self.index_dead))
        if state.rerank is not None and len(rows):  # the codes' scores are approximate: score exactly
            rows = np.sort(rows)
            scores = np.asarray(self.vectors[rows] @ query, dtype=np.float32)
        best = np.argsort(-scores, kind="stable")[:k]
        return scores[best], rows[best]

    def _candidates(self, query: np.ndarray, nprobe: int, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = faiss.SearchParametersIVF(nprobe=max(1, nprobe))  # type: ignore[call-arg]
        with embedded.one_faiss_thread():
            scores, ids = self.index.search(query[None, :], max(1, fetch), params=params)
        rows = ids[0]
        keep = rows >= 0
        keep[keep] = ~self.dead[rows[keep]]
        return scores[0][keep], rows[keep]


_loaded: OrderedDict[str, Snapshot] = OrderedDict()
_lock = threading.Lock()


def snapshot(path: Path, conn: Connection, state: State) -> Snapshot | qdrant.Snapshot:
    """The loaded form of `state` (read in `conn`'s open read transaction), reusing what this
    process loaded before where the files are the same. A Qdrant collection loads nothing: its
    snapshot is the committed row count and the removed rows, which its searches filter by."""
    if state.backend == QDRANT:
        return qdrant.Snapshot(state, frozenset(dead_rows(conn, state.uid)))
    key = str(path)
    with _lock:
        known = _loaded.get(key)
    if known is not None and known.state.uid == state.uid and known.state.version == state.version:
        with _lock:
            _loaded.move_to_end(key)
        return known
    same = known is not None and known.state.uid == state.uid
    index = known.index if same and known is not None and known.state.index_file == state.index_file else None
    loaded = _load(path, conn, state, index)
    with _lock:
        _loaded[key] = loaded
        _loaded.move_to_end(key)
        while len(_loaded) > MAX_LOADED:
            _loaded.popitem(last=False)
    return loaded


def forget(path: Path) -> None:
    with _lock:
        _loaded.pop(str(path), None)


def _load(path: Path, conn: Connection, state: State, index: Any) -> Snapshot:
    """Raises FileNotFoundError where a writer deleted this version's files meanwhile."""
    dim = state.dim or 0
    vectors = files.map_vectors(path / state.vectors_file, state.rows, dim)
    if index is None and state.index_file is not None:
        index = _read_index(path / state.index_file)
    dead = np.zeros(state.rows, dtype=bool)
    removed = np.array(dead_rows(conn, state.uid), dtype=np.int64)
    dead[removed[removed < state.rows]] = True
    start = state.index_rows if index is not None else 0
    tail = ExactIndex(vectors[start:]) if start < state.rows else None
    return Snapshot(
        state=state,
        vectors=vectors,
        dead=dead,
        index=index,
        tail=tail,
        tail_dead=int(dead[start:].sum()),
        index_dead=int(dead[:start].sum()),
    )


def _read_index(path: Path) -> Any:
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError:
        if not path.exists():
            raise FileNotFoundError(path) from None
        raise


@contextlib.contextmanager
def reading(name: str) -> Iterator[tuple[Connection, State, Snapshot | qdrant.Snapshot]]:
    """A read transaction on the collection, its state and the snapshot of that state: the items
    looked up inside it belong to the same version as the vectors searched."""
    path = folder(name)
    engine = metadata.engine_for(path, name)
    for attempt in range(LOAD_ATTEMPTS):
        with metadata.reading(engine) as conn:
            state = read_state(conn, name=name)
            try:
                loaded = snapshot(path, conn, state)
            except FileNotFoundError:
                if attempt < LOAD_ATTEMPTS - 1:
                    continue
                if metadata.shared() is not None:
                    raise elsewhere(state.name) from None
                raise
            yield conn, state, loaded
            return


def elsewhere(name: str) -> BadInput:
    return BadInput(
        f"The collection '{name}' keeps its vectors on the disk of the machine that built it: build collections "
        "with FMG_VECTOR_URL (a Qdrant server) to search them from every machine."
    )
