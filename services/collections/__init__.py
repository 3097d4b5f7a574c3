"""Persistent collections: named sets of text passages or images, embedded once, kept on disk,
searchable from any session and after a restart.

Each collection is a folder in the app's data folder (`FMG_COLLECTIONS`, default `collections/`
beside the run log; `~/.fm-gallery/collections` when the run log is off), shared by the app's
workers on one machine (`lock`: the writer lock holds across processes). Its metadata (the
collection, its source files, its items: `metadata`, `tables`) is in its own SQLite file, or in
the shared database with `FMG_DATABASE_URL` (every worker and machine then sees the same
collections). Its vectors are in the folder (`embedded`), or in Qdrant when the collection was
created with `FMG_VECTOR_URL` set (`qdrant`: for apps on several machines). The caller embeds:
`add` takes an `embed_fn` (texts or image file paths -> vectors, one call per batch) so a tab
charges each call through `services.access`; queries come as vectors with the name of their embedder.

Storage choices (embedded):
- vectors in one raw float32 file, memory-mapped: opening costs nothing whatever the size, pages
  are read when searched, and adding a file appends its vectors without rewriting the others;
- from `APPROX_THRESHOLD` live vectors on, the approximate index (`ApproxIndex`, built by
  `build_index`) is kept on disk too, as its cells and 4-bit codes only (1/16 of the vectors):
  building it takes tens of seconds at a million vectors, reading it a fraction of a second, and
  its candidates are re-scored against the mapped vectors instead of a second copy in memory.
Commits are atomic (`store`): a killed `add` keeps every file it had committed, none of the one in
flight, and adding the same files again resumes it (files stored already are skipped).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.errors import BadInput
from services import boundary
from services.collections import metadata, reader, sources, store
from services.collections.embedded import APPROX_THRESHOLD
from services.collections.layout import KINDS, MAX_NAME_CHARS, root

__all__ = [
    "APPROX_THRESHOLD",
    "KINDS",
    "MAX_NAME_CHARS",
    "AddReport",
    "CollectionInfo",
    "EmbedFn",
    "Hit",
    "add",
    "create",
    "delete",
    "image_file",
    "list",
    "names",
    "open",
    "remove",
    "root",
    "search",
]

TEXT_BATCH = 1024  # passages per `embed_fn` call
IMAGE_BATCH = 64  # images per `embed_fn` call (at most `adapters.tasks.MAX_EMBED_IMAGES`)
MAX_K = 100

EmbedFn = Callable[[builtins.list[str]], Any]  # texts or image paths -> (n, dim) array or an `Embeddings`
Progress = Callable[[int, int], None]  # (items embedded so far, items to embed)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    kind: str  # "text" | "image"
    embedder: str  # "provider:model" that built it; queries must come from it
    dim: int | None  # None until the first file is added
    items: int
    sources: tuple[str, ...]  # file names, in the order they were added
    created: str  # ISO 8601 UTC
    updated: str
    search: str  # "exact", or how the approximate index searches


@dataclass(frozen=True)
class AddReport:
    added: tuple[str, ...]  # new file names
    replaced: tuple[str, ...]  # files whose content changed: their items were replaced
    unchanged: tuple[str, ...]  # same content as stored: nothing embedded
    items: int  # items embedded and stored
    collection: CollectionInfo


@dataclass(frozen=True)
class Hit:
    score: float  # cosine similarity
    source: str  # the file it came from
    text: str | None  # the passage (text collections)
    image: str | None  # the stored image, relative to the collection (`image_file` opens it)
    item: int  # the item's id in the collection


def create(name: str, kind: str, embedder_target: str) -> CollectionInfo:
    """A new, empty collection of `kind` ("text" or "image") for the embedder "provider:model"."""
    if kind not in KINDS:
        raise BadInput(f"A collection holds text or images, not {str(kind)[:40]!r}.")
    provider, model = _target(embedder_target)
    store.create(name, kind, provider, model)
    return open(name)


def open(name: str) -> CollectionInfo:
    """The collection's description, with its vectors and index loaded for searching."""
    with reader.reading(name) as (conn, state, _):
        return _info(conn, state)


def names() -> builtins.list[str]:
    """The collections' names: from the folder listing alone (cheap enough for every page load), or
    one query to the shared database (`FMG_DATABASE_URL`), where every worker's and machine's are."""
    shared = metadata.shared_engine()
    if shared is not None:
        with metadata.reading(shared) as conn:
            return sorted((state.name for state in metadata.all_states(conn)), key=str.lower)
    base = root()
    if not base.is_dir():
        return []
    found = [e.name for e in base.iterdir() if not e.name.startswith(".") and (e / store.DB).is_file()]
    return sorted(found, key=str.lower)


def list() -> builtins.list[CollectionInfo]:
    """Every collection (in the data folder, or in the shared database), by name."""
    shared = metadata.shared_engine()
    if shared is not None:
        with metadata.reading(shared) as conn:
            found = [_info(conn, state) for state in metadata.all_states(conn)]
        return sorted(found, key=lambda info: info.name.lower())
    base = root()
    if not base.is_dir():
        return []
    found = []
    for entry in sorted(base.iterdir(), key=lambda p: p.name.lower()):
        if entry.name.startswith(".") or not (entry / store.DB).is_file():
            continue
        try:
            with metadata.reading(metadata.engine_for(entry, entry.name)) as conn:
                found.append(_info(conn, metadata.read_state(conn, name=entry.name)))
        except BadInput:
            continue  # deleted meanwhile, or written by a newer version
    return found


def add(
    name: str,
    files: Sequence[Any],
    embed_fn: EmbedFn,
    progress: Progress | None = None,
    *,
    embedder_target: str | None = None,
) -> AddReport:
    """Embed and store uploaded files (text files cut into passages, or images), each committed
    whole as soon as its vectors are in; a file stored with the same content is skipped, one with
    new content replaces its items. `embedder_target`, when given, is checked against the collection's.
    """
    name = store.check_name(name)
    with reader.reading(name) as (conn, state, _):
        stored = metadata.source_hashes(conn, state.uid)
    if embedder_target is not None:
        _check_embedder(state, embedder_target)
    prepared = sources.prepare(state.kind, files)
    todo = [p for p in prepared if stored.get(p.name) != p.hash]
    outcome: dict[str, str] = {p.name: "unchanged" for p in prepared if stored.get(p.name) == p.hash}
    total = sum(len(p.inputs) for p in todo)
    report = progress or _no_progress
    report(0, total)
    done = stored_items = 0
    batch = TEXT_BATCH if state.kind == "text" else IMAGE_BATCH
    for embedded, complete in _embedded(todo, embed_fn, batch):
        for source, vectors in complete:
            with store.writing(name) as writer:
                outcome[source.name] = store.commit_source(writer, source, vectors)
            stored_items += len(vectors) if outcome[source.name] != "unchanged" else 0
        done += embedded
        report(done, total)
    with store.writing(name) as writer:
        store.maintain(writer)
    return AddReport(
        added=tuple(n for n, what in outcome.items() if what == "added"),
        replaced=tuple(n for n, what in outcome.items() if what == "replaced"),
        unchanged=tuple(n for n, what in outcome.items() if what == "unchanged"),
        items=stored_items,
        collection=open(name),
    )


def _embedded(
    todo: Sequence[store.Prepared], embed_fn: EmbedFn, batch: int
) -> Iterator[tuple[int, builtins.list[tuple[store.Prepared, np.ndarray]]]]:
    """After each `embed_fn` call: (inputs it embedded, the sources whose vectors are now all in).
    A call's batch may span files, so a hundred images are two calls, not a hundred."""
    pending: builtins.list[tuple[int, str]] = []  # (source position, input)
    parts: dict[int, builtins.list[np.ndarray]] = {}
    missing = [len(s.inputs) for s in todo]

    def call() -> tuple[int, builtins.list[tuple[store.Prepared, np.ndarray]]]:
        owners = np.array([i for i, _ in pending])
        vectors = _vectors(embed_fn([x for _, x in pending]), len(pending))
        pending.clear()
        complete = []
        for i in dict.fromkeys(owners.tolist()):
            mine = vectors[owners == i]
            parts.setdefault(i, []).append(mine)
            missing[i] -= len(mine)
            if missing[i] == 0:
                complete.append((todo[i], np.concatenate(parts.pop(i))))
        return len(owners), complete

    for i, source in enumerate(todo):
        for item in source.inputs:
            pending.append((i, item))
            if len(pending) == batch:
                yield call()
    if pending:
        yield call()


def remove(name: str, source_names: Sequence[str]) -> int:
    """Remove files (by name) and their items from the collection; the number of items removed."""
    with store.writing(name) as writer:
        removed = store.remove_sources(writer, [str(n) for n in source_names])
        store.maintain(writer)
    return removed


def search(name: str, query_vector: Any, k: int, embedder_target: str) -> builtins.list[Hit]:
    """The k items nearest to a query vector embedded by `embedder_target` ("provider:model"),
    best first. A query from another embedder is refused: its vectors are not comparable."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise BadInput(f"Ask for between 1 and {MAX_K} results (got {k!r}).")
    with reader.reading(name) as (conn, state, loaded):
        _check_embedder(state, embedder_target)
        if state.dim is None or state.rows == 0:
            return []
        query = _query(query_vector, state)
        scores, rows = loaded.search(query, int(k))
        if not len(rows):
            return []
        found = metadata.items_at(conn, state.uid, rows.tolist())
    return [
        Hit(float(score), found[row][1], found[row][2], found[row][3], found[row][0])
        for score, row in zip(scores.tolist(), rows.tolist(), strict=True)
        if row in found
    ]


def delete(name: str) -> None:
    """Delete the collection and everything stored for it."""
    path = store.folder(name)
    store.delete(name)
    reader.forget(path)


def image_file(name: str, relative: str | None) -> Path | None:
    """The stored image a hit names, if it is a file inside the collection's folder (never outside)."""
    if not relative:
        return None
    path = store.folder(name).resolve()
    target = (path / relative).resolve()
    return target if target.is_relative_to(path / store.IMAGES) and target.is_file() else None


# --- helpers ---------------------------------------------------------------------------------------


def _no_progress(done: int, total: int) -> None:
    pass


def _target(text: object) -> tuple[str, str]:
    provider, _, model = str(text or "").strip().partition(":")
    if not provider.strip() or not model.strip():
        raise BadInput("Name the embedder as 'provider:model', e.g. 'openai:text-embedding-3-small'.")
    return provider.strip(), model.strip()


def _check_embedder(state: store.State, embedder_target: str) -> None:
    provider, model = _target(embedder_target)
    if (provider, model) != (state.provider, state.model):
        raise BadInput(
            f"The collection '{state.name}' was built with {boundary.shown_target(state.embedder)}: search it with "
            f"that embedder (vectors from {boundary.shown_target(f'{provider}:{model}')} are not comparable)."
        )


def _vectors(result: Any, rows: int) -> np.ndarray:
    """The rows an `embed_fn` returned, as unit float32 vectors, checked."""
    value = getattr(result, "vectors", result)
    try:
        vectors = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadInput("The embedder returned something that is not a list of vectors.") from None
    if vectors.ndim != 2 or vectors.shape[0] != rows or vectors.shape[1] == 0:
        raise BadInput(f"The embedder returned vectors of shape {vectors.shape} for {rows} inputs.")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise BadInput("The embedder returned a vector that is zero or not finite.")
    return vectors / norms


def _query(value: Any, state: store.State) -> np.ndarray:
    vector = np.asarray(getattr(value, "vectors", value), dtype=np.float32)
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1 or vector.shape[0] != state.dim:
        raise BadInput(
            f"The query vector has shape {vector.shape}; the collection '{state.name}' holds vectors of "
            f"{state.dim} dimensions."
        )
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise BadInput("The query vector is zero or not finite.")
    return vector / np.float32(norm)


def _info(conn: Any, state: store.State) -> CollectionInfo:
    items, _ = metadata.counts(conn, state.uid)
    names = metadata.source_names(conn, state.uid)
    return CollectionInfo(
        name=state.name,
        kind=state.kind,
        embedder=state.embedder,
        dim=state.dim,
        items=items,
        sources=names,
        created=state.created,
        updated=state.updated,
        search=state.index_note,
    )
