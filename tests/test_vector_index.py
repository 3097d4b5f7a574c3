"""The vector indexes behind embeddings search: exact top-k, approximate recall, and which one
`build_index` picks."""

from __future__ import annotations

import numpy as np
import pytest

from services.search.vector_index import ApproxIndex, ExactIndex, build_index, exact_top_k


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int, dim: int = 32, topics: int = 40) -> np.ndarray:
    """Unit vectors around a few topics, the shape embeddings have (same topics for any seed)."""
    centers = unit(np.random.default_rng(0).standard_normal((topics, dim)))
    rng = np.random.default_rng(seed)
    return unit(centers[rng.integers(0, topics, n)] + 0.25 * rng.standard_normal((n, dim)))


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries.astype(np.float64) @ vectors.astype(np.float64).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found, strict=False)]))


def test_exact_index_returns_the_exact_top_k_best_first():
    vectors, queries = clustered(3000, 1), clustered(25, 2)
    scores, ids = ExactIndex(vectors).search(queries, 10)
    assert ids.shape == scores.shape == (25, 10)
    assert np.array_equal(ids, brute_force(vectors, queries, 10))
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, ids, axis=1))


def test_exact_top_k_in_blocks_matches_brute_force():
    vectors, queries = clustered(1000, 1), clustered(7, 2)
    found = exact_top_k(vectors, queries, 5, block=64)  # many blocks, and a short last one
    assert [set(row) for row in found] == [set(row) for row in brute_force(vectors, queries, 5)]


def test_approx_index_recall_on_clustered_vectors():
    vectors, queries = clustered(20_000, 1), clustered(200, 2)
    index = ApproxIndex(vectors)
    scores, ids = index.search(queries, 10)
    assert ids.shape == (200, 10) and len(index) == 20_000
    assert recall(brute_force(vectors, queries, 10), ids) >= 0.95
    assert index.nprobe < index.nlist  # it did not have to scan everything to get there
    assert index.calibrated_recall >= index.target_recall
    # the scores returned are the exact inner products of the ids returned, best first
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, ids, axis=1), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert "approximate" in index.name


def test_approx_index_can_be_asked_to_scan_everything():
    vectors, queries = clustered(5000, 1), clustered(20, 2)
    truth = brute_force(vectors, queries, 10)
    flat = ApproxIndex(vectors, codes="flat")  # full vectors in every cell: scanning all of them is exact
    assert recall(truth, flat.search(queries, 10, nprobe=flat.nlist)[1]) == 1.0
    compact = ApproxIndex(vectors)  # codes pick the candidates: all cells reach at least the calibrated recall
    assert recall(truth, compact.search(queries, 10, nprobe=compact.nlist)[1]) >= compact.target_recall


def test_approx_index_rescores_more_candidates_where_codes_alone_fall_short():
    rng = np.random.default_rng(1)
    vectors = unit(rng.standard_normal((4000, 32)))  # no structure at all: the hardest case
    index = ApproxIndex(vectors, nlist=50)
    queries = unit(rng.standard_normal((100, 32)))
    assert recall(brute_force(vectors, queries, 10), index.search(queries, 10)[1]) >= 0.9
    assert index.calibrated_recall >= index.target_recall
    assert index.rerank in ApproxIndex.RERANKS


def test_approx_index_never_returns_missing_ids():
    vectors = clustered(4000, 1)
    index = ApproxIndex(vectors, nlist=100, target_recall=0.5)
    _, ids = index.search(clustered(10, 2), 500, nprobe=1)  # one cell holds fewer than 500 vectors
    assert ids.shape == (10, 500) and (ids >= 0).all()
    assert all(len(set(row)) == 500 for row in ids)


def test_approx_index_names_bad_arguments():
    with pytest.raises(ValueError, match="target_recall"):
        ApproxIndex(clustered(100, 1), target_recall=1.5)
    with pytest.raises(ValueError, match="2-D array"):
        ApproxIndex(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="codes must be 'pq' or 'flat'"):
        ApproxIndex(clustered(100, 1), codes="sq8")


def test_build_index_is_exact_below_the_threshold_and_approximate_above():
    vectors = clustered(3000, 1)
    assert isinstance(build_index(vectors, threshold=5000), ExactIndex)
    assert build_index(vectors, threshold=5000).name == "exact"
    assert isinstance(build_index(vectors, threshold=3000), ApproxIndex)


def test_build_index_stays_exact_where_no_approximate_breadth_reaches_the_target(monkeypatch):
    monkeypatch.setattr(ApproxIndex, "RERANKS", (1,))  # codes alone, re-scoring nothing more: too coarse here
    rng = np.random.default_rng(3)
    index = build_index(unit(rng.standard_normal((3000, 64))), threshold=1000)
    assert isinstance(index, ExactIndex) and "recall on this data" in index.name


def test_build_index_without_faiss_stays_exact_and_says_so(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    index = build_index(clustered(300, 1), threshold=100)
    assert isinstance(index, ExactIndex) and "faiss-cpu" in index.name
    assert ExactIndex.name == "exact"  # the note is on that index only
