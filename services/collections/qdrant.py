"""The Qdrant backend: a collection's vectors in a Qdrant collection, for apps on several machines.

`FMG_VECTOR_URL` names the Qdrant server (`http://qdrant:6333`; `FMG_VECTOR_API_KEY` if it asks
for one), or qdrant-client's local mode (`:memory:`, or a folder): the same API in this process,
for tests and single-machine trials (a local folder is held by one process at a time). A
collection created while it is set keeps its vectors there for good (`metadata.State.backend`).

Each item's vector is the point whose id is the item's row, with the row in its payload too.
Commits keep the embedded store's order: the points are upserted (and acknowledged, `wait=True`)
before the metadata transaction that makes their rows committed. Searches keep only rows below
the committed count and not removed, so the points of a killed writer are never returned;
the next writer overwrites them (rows start at the committed count again) and `sweep` deletes the
rest. Removed items' points are deleted after the commit that removed them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.errors import BadInput
from services.collections.metadata import CollectionError, State

URL_ENV = "FMG_VECTOR_URL"
KEY_ENV = "FMG_VECTOR_API_KEY"
PREFIX = "fmg-"  # + the collection's uid
BATCH = 1024  # points per upsert
HNSW_EF = 128  # candidates an approximate (HNSW) search keeps; Qdrant's default is 100
OVERFETCH = 10  # points fetched past k + the removed rows, for points of uncommitted rows
TIMEOUT_S = 60

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
_local_lock = threading.RLock()  # local mode is plain Python over shared dicts: one call at a time


def configured() -> str | None:
    """Where new collections' vectors go: `FMG_VECTOR_URL`, or None (embedded)."""
    return os.environ.get(URL_ENV, "").strip() or None


def point_collection(uid: str) -> str:
    return f"{PREFIX}{uid}"


def client(url: str | None = None) -> Any:
    """One client per location per process (a local folder admits one client only)."""
    location = url or configured()
    if location is None:
        raise BadInput(
            f"This collection keeps its vectors in Qdrant: set {URL_ENV} to the Qdrant server that holds them."
        )
    with _clients_lock:
        found = _clients.get(location)
        if found is None:
            from qdrant_client import QdrantClient

            if location == ":memory:":
                found = QdrantClient(location=":memory:")
            elif location.startswith(("http://", "https://")):
                found = QdrantClient(url=location, api_key=os.environ.get(KEY_ENV) or None, timeout=TIMEOUT_S)
            else:
                found = QdrantClient(path=os.path.expanduser(location))
            _clients[location] = found
        return found


def close_all() -> None:
    """Close this process's clients (tests, which point `FMG_VECTOR_URL` at a new folder each)."""
    with _clients_lock:
        for found in _clients.values():
            found.close()
        _clients.clear()


def _local(found: Any) -> bool:
    return type(found._client).__name__ == "QdrantLocal"


def _call(method: str, *args: Any, **kwargs: Any) -> Any:
    found = client()
    if _local(found):
        with _local_lock:
            return getattr(found, method)(*args, **kwargs)
    return getattr(found, method)(*args, **kwargs)


def upsert(state: State, vectors: np.ndarray) -> None:
    """The points of rows [state.rows, state.rows + len(vectors)), acknowledged before their commit.
    The first vectors of a collection make its Qdrant collection (again, where a killed writer
    left one: nothing in it was committed)."""
    from qdrant_client import models

    name = state.backend_name
    assert name is not None
    if state.dim is None:
        if _call("collection_exists", name):
            _call("delete_collection", name)
        _call(
            "create_collection",
            name,
            vectors_config=models.VectorParams(size=int(vectors.shape[1]), distance=models.Distance.COSINE),
        )
        if not _local(client()):  # local mode scans every point anyway (and warns about indexes)
            _call("create_payload_index", name, field_name="row", field_schema=models.PayloadSchemaType.INTEGER)
    elif not _call("collection_exists", name):
        raise CollectionError(f"the Qdrant collection {name} holding this collection's vectors is gone")
    data = np.asarray(vectors, dtype=np.float32)
    for start in range(0, len(data), BATCH):
        rows = range(state.rows + start, state.rows + min(len(data), start + BATCH))
        ids: list[models.ExtendedPointId] = list(rows)
        batch = models.Batch(ids=ids, vectors=data[start : start + BATCH].tolist(), payloads=[{"row": r} for r in rows])
        _call("upsert", name, points=batch, wait=True)


def maintain(state: State, dead: Sequence[int], approx_threshold: int, items: int) -> dict[str, Any]:
    """Delete removed items' points (their rows may then leave the `dead` table) and say how the
    collection is searched: exact below `approx_threshold` live items, HNSW above. The changed
    collection fields; the caller commits them."""
    from qdrant_client import models

    changes: dict[str, Any] = {}
    if dead and state.dim is not None:
        ids: list[models.ExtendedPointId] = [int(r) for r in dead]
        _call("delete", state.backend_name, points_selector=models.PointIdsList(points=ids), wait=True)
        changes["dead"] = True
    note = "exact" if items < max(approx_threshold, 2) else f"approximate: Qdrant HNSW, ef {HNSW_EF}"
    if note != state.index_note:
        changes["index_note"] = note
    return changes


def sweep(state: State) -> None:
    """Delete the points of rows at or past the committed count (a killed writer's)."""
    from qdrant_client import models

    if state.dim is None or not _call("collection_exists", state.backend_name):
        return
    past = models.Filter(must=[models.FieldCondition(key="row", range=models.Range(gte=state.rows))])
    _call("delete", state.backend_name, points_selector=models.FilterSelector(filter=past), wait=True)


def drop(name: str | None) -> None:
    """Delete the Qdrant collection of a deleted collection (nothing where it was never made)."""
    if name and _call("collection_exists", name):
        _call("delete_collection", name)


@dataclass
class Snapshot:
    """One committed version of a Qdrant collection: searched on the server, within its rows."""

    state: State
    dead: frozenset[int]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the best k live committed rows, best first. Points past the committed
        rows (a writer's in flight, or a killed one's) and removed rows' points are dropped here,
        fetching more until k are left or none remain: a filter would cost every query a payload
        check per point (seconds in local mode), for points that are rarely there."""
        from qdrant_client import models

        state = self.state
        if state.dim is None or state.rows == 0:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        params: models.SearchParams | None = models.SearchParams(exact=True)
        if state.index_note != "exact":
            params = models.SearchParams(hnsw_ef=max(HNSW_EF, k))
        if _local(client()):
            params = None  # local mode always searches exactly (and warns about parameters)
        vector = np.asarray(query, dtype=np.float32).tolist()
        limit = k + len(self.dead) + OVERFETCH
        while True:
            found = _call(
                "query_points", state.backend_name, query=vector, limit=limit, search_params=params, with_payload=False
            ).points
            kept = [(p.score, int(p.id)) for p in found if int(p.id) < state.rows and int(p.id) not in self.dead]
            if len(kept) >= k or len(found) < limit:
                break
            limit *= 2
        kept = kept[:k]
        return np.array([s for s, _ in kept], dtype=np.float32), np.array([r for _, r in kept], dtype=np.int64)
