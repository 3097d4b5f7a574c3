"""Semantic search over a corpus: reading and chunking it (`corpus`), the vector index
(`vector_index`), and the indexes built so far, kept so a repeated query embeds only itself."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from adapters.tasks import Embedder
from services.search import corpus
from services.search.vector_index import ApproxIndex, ExactIndex, build_index

MAX_INDEXES = 8
SAMPLE_CORPUS = """\
The Eiffel Tower was completed in 1889 and stands on the Champ de Mars in Paris.

Photosynthesis turns sunlight, water and carbon dioxide into glucose and oxygen inside chloroplasts.

A kitten is a juvenile cat; most kittens are weaned by eight weeks of age.

The stock market fell sharply after the central bank raised interest rates by half a point.

CLIP learns a shared embedding space for images and text from 400 million captioned pictures.

Diffusion models generate images by learning to reverse a gradual noising process.

To bake sourdough, feed the starter the night before and let the dough rise slowly in the fridge.

The Great Barrier Reef, off Queensland, is the largest coral reef system in the world.
"""


@dataclass
class CorpusIndex:
    passages: list[corpus.Passage]
    index: ExactIndex | ApproxIndex
    build_s: float


_indexes: OrderedDict[tuple, CorpusIndex] = OrderedDict()
_lock = threading.Lock()


def _fingerprint(passages: list[corpus.Passage]) -> str:
    h = hashlib.sha256()
    for p in passages:
        h.update(p.source.encode() + b"\0" + p.text.encode() + b"\1")
    return h.hexdigest()


def cached(embedder: Embedder, passages: list[corpus.Passage]) -> bool:
    """True if `corpus_index` would reuse an index (no embedding call)."""
    with _lock:
        return (embedder.provider, embedder.model, _fingerprint(passages)) in _indexes


def corpus_index(embedder: Embedder, passages: list[corpus.Passage]) -> tuple[CorpusIndex, bool]:
    """The index of `passages` for this embedder, built once; True if it came from the cache."""
    key = (embedder.provider, embedder.model, _fingerprint(passages))
    with _lock:
        if key in _indexes:
            _indexes.move_to_end(key)
            return _indexes[key], True
    started = time.perf_counter()
    vectors = embedder.embed([p.text for p in passages], kind="document").vectors
    built = CorpusIndex(passages, build_index(vectors), time.perf_counter() - started)
    with _lock:
        _indexes[key] = built
        while len(_indexes) > MAX_INDEXES:
            _indexes.popitem(last=False)
    return built, False
