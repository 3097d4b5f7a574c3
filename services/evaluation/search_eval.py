"""Evaluate search: recall@k and MRR of each embedder on a search dataset, with and without rerank.

Every passage is embedded once (kind "document") and every query once (kind "query") per target,
charged to the visitor like the search tab; passages are ranked by cosine (the adapter layer
L2-normalises the vectors). With rerank, the registry's reranker reorders each query's top
`k * RERANK_POOL` candidates, and that ranking is scored in a second row for the target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from adapters import registry
from adapters.errors import BadInput, FMError
from adapters.tasks import Embedder
from adapters.types import Task
from services import access
from services.evaluation import report, scoring, stats
from services.evaluation.datasets import Dataset, Item
from services.evaluation.engine import check_targets
from services.search.vector_index import ExactIndex
from services.visitors import OWNER, Visitor

RERANK_POOL = 4  # with rerank, the embedding search proposes this many candidates per result scored
CONFIDENCE = 0.95
COLUMNS = ["embedder", "rerank", "k", "recall@k (95% CI)", "MRR (95% CI)", "queries", "latency (s)", "cost", "error"]


@dataclass(frozen=True)
class SearchRow:
    """One embedder's scores on a search dataset, reranked or not; NaN scores and `error` where it failed."""

    embedder: str  # the target: "provider" or "provider:model"
    reranked: bool
    k: int
    recall: float  # mean recall@k over queries
    recall_low: float
    recall_high: float
    mrr: float  # mean reciprocal rank over queries
    mrr_low: float
    mrr_high: float
    queries: int  # queries scored
    latency_s: float  # wall time of the embedding calls (and, reranked, of the rerank calls)
    cost_usd: float | None  # None where unknown (an unpriced model; the reranker reports no cost)
    error: str | None = None


def run(
    dataset: Dataset,
    targets: Sequence[str],
    k: int = 5,
    rerank: bool = False,
    visitor: Visitor = OWNER,
    api_key: str | None = None,
    seed: int = 0,
) -> list[SearchRow]:
    """Rows for each target (two with `rerank`); a target or reranker that fails gets an error row, the rest run."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BadInput(f"k must be a whole number of at least 1 (got {str(k)[:20]}).")
    _check_dataset(dataset)
    targets = check_targets(targets)
    rows: list[SearchRow] = []
    for target in targets:
        rows.extend(_target_rows(dataset, str(target), k, rerank, visitor, api_key, seed))
    return rows


def _check_dataset(dataset: Dataset) -> None:
    """Refuse, before any call, a dataset that cannot be scored as search."""
    if dataset.kind != "search":
        raise BadInput(f"'{dataset.name}' is a {dataset.kind} dataset: search is evaluated on a search dataset.")
    if not dataset.passages or not dataset.items:
        raise BadInput(f"'{dataset.name}' needs passages and queries to evaluate search.")
    ids = {pid for pid, _ in dataset.passages}
    for item in dataset.items:
        relevant = _relevant(item)
        if not relevant:
            raise BadInput(f"Query {item.id!r} has no relevant passages: list at least one passage id.")
        unknown = [str(r) for r in relevant if r not in ids]
        if unknown:
            raise BadInput(f"Query {item.id!r} lists passages that are not in the corpus: {', '.join(unknown[:5])}.")


def _relevant(item: Item) -> tuple[str, ...]:
    """The ids of the passages relevant to a query (one id given as a string counts as one)."""
    value = item.meta.get("relevant") or ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _parse(target: str) -> tuple[str, str | None]:
    """(provider, model or None) from 'provider' or 'provider:model' (a model id may itself contain ':')."""
    provider, _, model = target.strip().partition(":")
    if not provider.strip():
        raise BadInput("A target is 'provider' or 'provider:model', e.g. 'openai:text-embedding-3-small'.")
    return provider.strip(), model.strip() or None


def _target_rows(
    dataset: Dataset, target: str, k: int, rerank: bool, visitor: Visitor, api_key: str | None, seed: int
) -> list[SearchRow]:
    """The plain row and, with `rerank`, the reranked row of one target; one error row if it cannot embed."""
    name = target.strip()
    try:
        provider, model = _parse(target)
        name = f"{provider}:{model}" if model else provider
        embedder = cast(Embedder, access.adapter(Task.EMBEDDINGS, provider, model, api_key))
        reranker, rerank_error = None, None
        if rerank:
            try:
                reranker = registry.reranker(provider, api_key)
            except FMError as err:
                rerank_error = str(err)
        ranked, embed_s, cost = _embedding_ranking(dataset, embedder, visitor)
    except FMError as err:
        return [_failed(name, False, k, str(err))]
    rows = [_scored(name, False, k, dataset, ranked, embed_s, cost, seed)]
    if rerank:
        if reranker is None:
            rows.append(_failed(name, True, k, rerank_error or "No reranker is available."))
        else:
            try:
                reranked, rerank_s = _reranked(dataset, ranked, k, reranker, visitor)
            except FMError as err:
                rows.append(_failed(name, True, k, str(err)))
            else:
                rows.append(_scored(name, True, k, dataset, reranked, embed_s + rerank_s, None, seed))
    return rows


def _embedding_ranking(
    dataset: Dataset, embedder: Embedder, visitor: Visitor
) -> tuple[list[list[int]], float, float | None]:
    """(every passage's index per query, best first by cosine; wall time of the embeddings; their cost or None)."""
    passages = [text for _, text in dataset.passages]
    queries = [item.input for item in dataset.items]
    batches = -(-len(passages) // embedder.max_batch) + -(-len(queries) // embedder.max_batch)
    work = access.Work(input_chars=sum(map(len, passages)) + sum(map(len, queries)), requests=batches)
    with access.call(visitor, embedder, work):  # the corpus and every query, charged once
        started = time.perf_counter()
        documents = embedder.embed(passages, kind="document")
        asked = embedder.embed(queries, kind="query")
        elapsed = time.perf_counter() - started
    _, order = ExactIndex(documents.vectors).search(asked.vectors, len(passages))
    costs = (documents.cost_usd, asked.cost_usd)
    cost = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    return [row.tolist() for row in order], elapsed, cost


def _reranked(
    dataset: Dataset, ranked: list[list[int]], k: int, reranker: Any, visitor: Visitor
) -> tuple[list[list[int]], float]:
    """Each ranking with its top `k * RERANK_POOL` reordered by the reranker (the rest keep their place),
    and the wall time of the rerank calls."""
    texts = [text for _, text in dataset.passages]
    out, elapsed = [], 0.0
    for item, order in zip(dataset.items, ranked, strict=True):
        pool = order[: k * RERANK_POOL]
        documents = [texts[i] for i in pool]
        access.charge(visitor, reranker, access.Work(input_chars=len(item.input) + sum(map(len, documents))))
        started = time.perf_counter()
        ranking = reranker.rerank(item.input, documents, top_n=len(pool))
        elapsed += time.perf_counter() - started
        first = list(dict.fromkeys(pool[j] for j, _ in ranking))
        placed = set(first)
        out.append(first + [i for i in pool if i not in placed] + order[len(pool) :])
    return out, elapsed


def _scored(
    name: str,
    reranked: bool,
    k: int,
    dataset: Dataset,
    ranked: list[list[int]],
    latency_s: float,
    cost: float | None,
    seed: int,
) -> SearchRow:
    """A row from each query's ranking (passage indices, best first), scored against its relevant ids."""
    ids = [pid for pid, _ in dataset.passages]
    recalls, ranks = [], []
    for item, order in zip(dataset.items, ranked, strict=True):
        ranked_ids = [ids[i] for i in order]
        relevant = _relevant(item)
        recalls.append(scoring.recall_at_k(ranked_ids, relevant, k))
        ranks.append(scoring.reciprocal_rank(ranked_ids, relevant))
    recall, recall_low, recall_high = stats.bootstrap_ci(recalls, CONFIDENCE, seed=seed)
    mrr, mrr_low, mrr_high = stats.bootstrap_ci(ranks, CONFIDENCE, seed=seed)
    return SearchRow(
        name, reranked, k, recall, recall_low, recall_high, mrr, mrr_low, mrr_high, len(ranked), latency_s, cost
    )


def _failed(name: str, reranked: bool, k: int, error: str) -> SearchRow:
    """A row that says why it has no scores."""
    nan = math.nan
    return SearchRow(name, reranked, k, nan, nan, nan, nan, nan, nan, 0, nan, None, error)


def _interval(value: float, low: float, high: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def table(rows: Sequence[SearchRow]) -> list[list]:
    """Rows for `COLUMNS`: scores and their 95% intervals to 3 decimals, blanks where a row failed."""
    out: list[list] = []
    for r in rows:
        cost = "" if r.error else (report.usd(r.cost_usd) or "unknown")
        latency = "" if math.isnan(r.latency_s) else f"{r.latency_s:.2f}"
        out.append(
            [
                r.embedder,
                "yes" if r.reranked else "no",
                r.k,
                _interval(r.recall, r.recall_low, r.recall_high),
                _interval(r.mrr, r.mrr_low, r.mrr_high),
                r.queries,
                latency,
                cost,
                r.error or "",
            ]
        )
    return out
