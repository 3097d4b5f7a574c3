"""Nearest-neighbour search over L2-normalised vectors (cosine similarity = dot product).

`build_index(vectors)` picks the index for a corpus: `ExactIndex` (brute force, exact) below
`APPROX_THRESHOLD` vectors, where it answers in a few milliseconds, and `ApproxIndex` (faiss
inverted lists) above, where brute force costs tens to hundreds of milliseconds a query. Both
answer `search(queries, k) -> (scores, ids)`, best first, and say what they are in `name`.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

APPROX_THRESHOLD = 50_000  # vectors; below it exact search is fast enough
TARGET_RECALL = 0.97  # recall@10 that ApproxIndex calibrates its search breadth for
CALIBRATION_QUERIES = 200
FEW_QUERIES = 4  # searches of at most this many queries run on one thread


class ExactIndex:
    """Brute-force inner product: exact top-k, fast enough for tens of thousands of passages."""

    name = "exact"

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k), best first."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = max(1, min(k, len(self.vectors)))
        sims = queries @ self.vectors.T
        if k < sims.shape[1]:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        return np.take_along_axis(top_sims, order, axis=1), np.take_along_axis(top, order, axis=1)


class ApproxIndex:
    """Inverted lists with compact codes and exact re-scoring (faiss IVF, 4-bit PQ fast scan, refine).

    k-means groups the vectors into about sqrt(n) cells; a query visits only the `nprobe` cells
    whose centroids are nearest to it. There each vector is first scored from a 4-bit product-
    quantised code (one byte per 8 dimensions instead of 32, compared with SIMD table lookups), and
    the best `rerank` x k candidates are then scored exactly against the full vectors, which are
    kept for that. Scores returned are exact; only the candidate set is approximate.
    (`codes="flat"`, or a dimension that is not a multiple of 8, scans the full vectors instead.)

    Breadth is calibrated when the index is built: the smallest `nprobe` (and, where codes alone
    cannot reach it, a larger `rerank`) that finds `target_recall` of the exact top 10 for sample
    vectors of the corpus itself, each left out of its own results. So the recall holds for the
    data at hand rather than for an assumed distribution; on data without structure (uniform
    noise) that means scanning most cells. Searches may run concurrently.
    """

    RERANKS = (4, 16, 64, 256)  # candidates re-scored exactly per result, tried in turn by the calibration

    def __init__(
        self,
        vectors: np.ndarray,
        nlist: int | None = None,
        target_recall: float = TARGET_RECALL,
        codes: str = "pq",
        seed: int = 0,
    ):
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) < 2:
            raise ValueError(f"vectors must be a 2-D array of at least 2 rows, got shape {vectors.shape}")
        if not 0 < target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        if codes not in ("pq", "flat"):
            raise ValueError(f"codes must be 'pq' or 'flat', got {codes!r}")
        n, dim = vectors.shape
        self.nlist = nlist or max(1, min(n // 39, round(math.sqrt(n))))  # faiss wants >= 39 vectors per cell
        self.target_recall = target_recall
        self.codes = codes if dim % 8 == 0 else "flat"
        spec = f"IVF{self.nlist},PQ{dim // 4}x4fs,RFlat" if self.codes == "pq" else f"IVF{self.nlist},Flat"
        self._faiss = faiss
        self._index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(self._index)
        ivf.cp.spherical = True  # unit-length centroids: cells by cosine
        ivf.cp.niter = 10
        ivf.cp.seed = seed
        rng = np.random.default_rng(seed)
        size = 40 * self.nlist
        self._index.train(vectors if n <= size else vectors[np.sort(rng.choice(n, size, replace=False))])
        self._index.add(vectors)
        self.nprobe, self.rerank, self.calibrated_recall = self._calibrate(vectors, rng)
        self._params = self._search_params(self.nprobe, self.rerank)

    @property
    def name(self) -> str:
        return f"approximate (IVF, {self.nprobe} of {self.nlist} cells scanned)"

    def __len__(self) -> int:
        return self._index.ntotal

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k), best first."""
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        k = max(1, min(k, len(self)))
        params = self._params if nprobe is None else self._search_params(nprobe, self.rerank)
        with self._threads(1 if len(queries) <= FEW_QUERIES else None):
            scores, ids = self._index.search(queries, k, params=params)
            short = (ids < 0).any(axis=1)  # the cells scanned held fewer than k vectors: scan them all
            if short.any():
                everything = self._search_params(self.nlist, self.rerank)
                scores[short], ids[short] = self._index.search(queries[short], k, params=everything)
        return scores, ids

    @contextlib.contextmanager
    def _threads(self, n: int | None):
        """faiss's OpenMP threads for this thread's searches (its setting is per thread): one for a
        few queries, which gain nothing from more and stall when another process has the cores."""
        if n is None:
            yield
            return
        before = self._faiss.omp_get_max_threads()
        self._faiss.omp_set_num_threads(n)
        try:
            yield
        finally:
            self._faiss.omp_set_num_threads(before)

    def _search_params(self, nprobe: int, rerank: int | None):
        # faiss's SWIG classes take their fields as keyword arguments; its stubs do not say so
        cells = self._faiss.SearchParametersIVF(nprobe=max(1, min(nprobe, self.nlist)))  # type: ignore[call-arg]
        if rerank is None:
            return cells
        return self._faiss.IndexRefineSearchParameters(k_factor=rerank, base_index_params=cells)  # type: ignore[call-arg]

    def _calibrate(self, vectors: np.ndarray, rng: np.random.Generator, k: int = 10) -> tuple[int, int | None, float]:
        """(nprobe, rerank, their recall@k): the least breadth whose recall on sample vectors reaches the target."""
        k = min(k, len(vectors) - 1)
        sample = rng.choice(len(vectors), min(CALIBRATION_QUERIES, len(vectors)), replace=False)
        queries = vectors[sample]
        truth = [set(row) - {i} for i, row in zip(sample, exact_top_k(vectors, queries, k + 1), strict=False)]

        def recall(nprobe: int, rerank: int | None) -> float:
            _, ids = self._index.search(queries, k + 1, params=self._search_params(nprobe, rerank))
            return float(np.mean([len(t & set(row)) / len(t) for t, row in zip(truth, ids, strict=False) if t]))

        for rerank in self.RERANKS if self.codes == "pq" else (None,):
            if recall(self.nlist, rerank) < self.target_recall:
                continue  # the codes miss too many even with every cell scanned: re-score more candidates
            low, high = 0, 1  # recall(low) is below the target (no cell finds nothing), recall(high) unknown
            while high < self.nlist and recall(high, rerank) < self.target_recall:
                low, high = high, min(2 * high, self.nlist)
            while high - low > 1:  # the smallest passing nprobe between the last failing and first passing
                middle = (low + high) // 2
                low, high = (low, middle) if recall(middle, rerank) >= self.target_recall else (middle, high)
            return high, rerank, recall(high, rerank)
        return self.nlist, rerank, recall(self.nlist, rerank)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 65_536) -> np.ndarray:
    """Ids of the exact top k of each query (in no order), a block of vectors at a time."""
    best = np.empty((len(queries), 0), dtype=np.float32)
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block):
        sims = queries @ vectors[start : start + block].T
        top = _top_unordered(sims, k)
        sims = np.concatenate([best, np.take_along_axis(sims, top, axis=1)], axis=1)
        ids = np.concatenate([best_ids, top + start], axis=1)
        keep = _top_unordered(sims, k)
        best, best_ids = np.take_along_axis(sims, keep, axis=1), np.take_along_axis(ids, keep, axis=1)
    return best_ids


def _top_unordered(sims: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sims.shape[1])
    return np.argpartition(-sims, k - 1, axis=1)[:, :k]


def build_index(vectors: np.ndarray, threshold: int = APPROX_THRESHOLD) -> ExactIndex | ApproxIndex:
    """Exact search below `threshold` vectors, approximate (recall calibrated) at or above it.

    The index stays exact, and its name says why, where faiss is not installed or where no
    approximate breadth reaches the target recall on this data (vectors with no structure, such
    as uniform noise: there any approximate search costs about as much as exact search).
    """
    if len(vectors) < threshold:
        return ExactIndex(vectors)
    try:
        import faiss  # noqa: F401
    except ImportError:
        return _exact_because(vectors, "pip install faiss-cpu for fast approximate search over large corpora")
    index = ApproxIndex(vectors)
    if index.calibrated_recall < index.target_recall:
        return _exact_because(
            vectors, f"approximate search reached only {index.calibrated_recall:.0%} recall on this data"
        )
    return index


def _exact_because(vectors: np.ndarray, reason: str) -> ExactIndex:
    index = ExactIndex(vectors)
    index.name = f"exact ({reason})"
    return index
