"""Metrics over many items or vectors: embedding similarity, classification accuracy and confusion,
and search recall@k and reciprocal rank."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from adapters.errors import BadInput
from services.evaluation.scoring.result import Score


def similarity(output_vector: ArrayLike, reference_vector: ArrayLike) -> Score:
    """The cosine similarity of two embeddings, clipped to 0..1 (vectors are L2-normalised first)."""
    a = np.asarray(output_vector, dtype=np.float64).ravel()
    b = np.asarray(reference_vector, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise BadInput(f"The embeddings have different sizes ({a.size} and {b.size}): embed both with the same model.")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if not (na > 0 and nb > 0 and math.isfinite(na) and math.isfinite(nb)):
        return Score(0.0, "an embedding is empty")
    cos = float(np.clip(np.dot(a / na, b / nb), 0.0, 1.0))
    return Score(cos, f"cosine similarity {cos:.2f}")


def accuracy(predicted: Sequence[str | None], actual: Sequence[str]) -> float:
    """The share of predictions equal to the actual label (None counts as wrong); NaN for no items."""
    if len(predicted) != len(actual):
        raise ValueError(f"{len(predicted)} predictions for {len(actual)} labels")
    if not actual:
        return math.nan
    return sum(p == a for p, a in zip(predicted, actual, strict=True)) / len(actual)


def confusion(predicted: Sequence[str | None], actual: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Counts with rows = actual label and columns = predicted label, in `labels` order; other labels are left out."""
    if len(predicted) != len(actual):
        raise ValueError(f"{len(predicted)} predictions for {len(actual)} labels")
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for p, a in zip(predicted, actual, strict=True):
        if a in index and p is not None and p in index:
            matrix[index[a]][index[p]] += 1
    return matrix


def recall_at_k(ranked_ids: Sequence[str], relevant_ids: Sequence[str] | set[str], k: int) -> float:
    """The share of the relevant ids found in the first k results."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    relevant = set(relevant_ids)
    if not relevant:
        raise BadInput("A search query has no relevant passages: give each query at least one relevant passage id.")
    return len(relevant.intersection(ranked_ids[:k])) / len(relevant)


def reciprocal_rank(ranked_ids: Sequence[str], relevant_ids: Sequence[str] | set[str]) -> float:
    """1 / the rank of the first relevant result (0 when none is found); MRR is its mean over queries."""
    relevant = set(relevant_ids)
    return next((1.0 / rank for rank, rid in enumerate(ranked_ids, 1) if rid in relevant), 0.0)
