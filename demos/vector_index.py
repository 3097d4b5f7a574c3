"""Nearest-neighbour search over L2-normalised vectors (cosine similarity = dot product)."""

from __future__ import annotations

import numpy as np


class ExactIndex:
    """Brute-force inner product: exact top-k, fast enough for tens of thousands of passages."""

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
