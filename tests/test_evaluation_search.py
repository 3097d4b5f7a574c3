"""Evaluate search (`services.evaluation.search_eval`): recall@k and MRR per embedder, through the real
adapter path with the fake bag-of-words embedder, and reranked by Cohere's reranker over real HTTP
against the Cohere wire-format fake."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapters.errors import BadInput
from services import quotas
from services.evaluation import datasets, search_eval
from services.evaluation.datasets import Dataset, Item
from services.visitors import Visitor
from tests.fakes import providers as fake
from tests.fakes.cohere_server import route
from tests.fakes.http_server import FakeServer

PASSAGES = (
    ("fruit", "red apples grow in sunny orchards"),
    ("sea", "the sea is deep and blue"),
    ("cars", "old cars need fuel to run"),
)


def search_set(queries: list[tuple[str, str, list[str]]], passages=PASSAGES) -> Dataset:
    """A hand-made search dataset: (query id, query, relevant passage ids) over `passages`."""
    items = tuple(Item(qid, text, meta={"relevant": tuple(relevant)}) for qid, text, relevant in queries)
    return Dataset("hand-made", "search", items, "a test set", None, passages=passages)


@pytest.fixture
def embedded(monkeypatch):
    """Every (kind, text) the fake embedder is asked to embed."""
    calls: list[tuple[str, str]] = []
    real = fake.FakeEmbedder._embed

    def recording(self, texts, kind):
        calls.extend((kind, t) for t in texts)
        return real(self, texts, kind)

    monkeypatch.setattr(fake.FakeEmbedder, "_embed", recording)
    return calls


@pytest.fixture
def cohere(monkeypatch):
    with FakeServer(route) as server:
        monkeypatch.setenv("CO_API_URL", server.url)
        yield server


def test_shared_words_find_the_relevant_passage_first(fake_provider):
    found = search_set(
        [("q1", "apples orchards", ["fruit"]), ("q2", "deep blue sea", ["sea"]), ("q3", "fuel for cars", ["cars"])]
    )
    [row] = search_eval.run(found, ["fake"], k=1)
    assert row.error is None and row.embedder == "fake" and not row.reranked and row.k == 1
    assert row.recall == 1.0 and row.mrr == 1.0 and row.queries == 3
    assert (row.recall_low, row.recall_high, row.mrr_low, row.mrr_high) == (1.0, 1.0, 1.0, 1.0)
    assert row.latency_s >= 0 and row.cost_usd is None  # the fake has no list price: unknown, never $0


def test_a_query_sharing_no_word_with_its_passage_is_not_found(fake_provider):
    # "deep blue sea" shares words with the sea passage only: the cars passage can at best come second
    lost = search_set([("q1", "deep blue sea", ["cars"])])
    [row] = search_eval.run(lost, ["fake"], k=1)
    assert row.error is None and row.recall == 0.0 and 0 < row.mrr <= 0.5
    [wider] = search_eval.run(lost, ["fake"], k=3)
    assert wider.recall == 1.0 and wider.mrr == row.mrr  # recall@k grows with k; MRR does not depend on it


def test_mixed_results_average_with_an_interval_around_the_mean(fake_provider):
    mixed = search_set([("q1", "apples orchards", ["fruit"]), ("q2", "deep blue sea", ["cars"])])
    [row] = search_eval.run(mixed, ["fake"], k=1)
    assert row.recall == 0.5 and 0.5 < row.mrr <= 0.75
    assert row.recall_low == 0.0 and row.recall_high == 1.0  # two queries, one hit: the interval spans both
    assert row.mrr_low <= row.mrr <= row.mrr_high


def test_the_builtin_search_set_runs_end_to_end_embedding_each_text_once(fake_provider, embedded):
    dataset = datasets.builtin("search")
    [row] = search_eval.run(dataset, ["fake"], k=5)
    assert row.error is None and row.queries == len(dataset.items) == 15
    assert 0.0 <= row.recall_low <= row.recall <= row.recall_high <= 1.0
    assert 0.0 <= row.mrr_low <= row.mrr <= row.mrr_high <= 1.0
    documents = [t for kind, t in embedded if kind == "document"]
    queries = [t for kind, t in embedded if kind == "query"]
    assert sorted(documents) == sorted(text for _, text in dataset.passages)  # each passage once
    assert sorted(queries) == sorted(item.input for item in dataset.items)  # each query once
    # the same scores as ranking by hand, from the fake embedder's own vectors (its hashed bag of words
    # is near chance on these paraphrased questions, so only agreement is a meaningful check)
    embedder = fake.FakeEmbedder(fake.NAME, "fake-1")
    sims = (
        embedder.embed([item.input for item in dataset.items], kind="query").vectors
        @ embedder.embed([text for _, text in dataset.passages]).vectors.T
    )
    ids = [pid for pid, _ in dataset.passages]
    recalls, ranks = [], []
    for item, row_sims in zip(dataset.items, sims, strict=True):
        ranked = [ids[i] for i in np.argsort(-row_sims, kind="stable")]
        relevant = set(item.meta["relevant"])
        recalls.append(len(relevant & set(ranked[:5])) / len(relevant))
        ranks.append(next(1 / rank for rank, pid in enumerate(ranked, 1) if pid in relevant))
    assert row.recall == pytest.approx(np.mean(recalls)) and row.mrr == pytest.approx(np.mean(ranks))
    assert row.recall > 0 and row.mrr > 0


def test_a_failing_target_gets_an_error_row_and_the_others_still_score(fake_provider, embedded):
    found = search_set([("q1", "apples orchards", ["fruit"])])
    rows = search_eval.run(found, ["no-such-provider", "fake:fake-1", "", "fake"], k=1)
    assert [r.embedder for r in rows] == ["no-such-provider", "fake:fake-1", "fake"]  # a blank line is no target
    unknown, with_model, plain = rows
    assert unknown.error is not None and "Unknown provider" in unknown.error
    assert math.isnan(unknown.recall) and math.isnan(unknown.mrr) and unknown.queries == 0
    assert with_model.error is None and with_model.recall == 1.0
    assert plain.error is None and plain.recall == 1.0 and plain.mrr == 1.0
    with pytest.raises(BadInput, match="Pick 1 to 6 targets"):
        search_eval.run(found, ["fake"] * 7, k=1)
    assert len([t for kind, t in embedded if kind == "query"]) == 2  # the failing targets embedded nothing


def test_a_quota_refusal_is_that_targets_error_and_charges_the_visitor_for_all_the_work(
    fake_provider, embedded, monkeypatch
):
    charged = []

    def refuse(visitor, provider, model, work, own_key):
        charged.append((visitor, provider, model, work))
        raise quotas.LimitReached("You have made 30 hosted calls in the last minute.")

    monkeypatch.setattr(quotas, "charge", refuse)
    found = search_set([("q1", "apples orchards", ["fruit"]), ("q2", "fuel for cars", ["cars"])])
    visitor = Visitor("user:ada")
    [row] = search_eval.run(found, ["fake"], k=1, visitor=visitor)
    assert row.error == "You have made 30 hosted calls in the last minute." and embedded == []
    [(who, provider, model, work)] = charged
    assert (who, provider, model) == (visitor, "fake", "fake-1")
    assert work.input_chars == sum(len(t) for _, t in PASSAGES) + len("apples orchards") + len("fuel for cars")
    assert work.requests == 1 + 1  # 3 passages and 2 queries, 4 a batch


def test_rerank_without_a_usable_reranker_is_an_error_row_beside_the_plain_scores(fake_provider, cohere):
    found = search_set([("q1", "apples orchards", ["fruit"])])
    plain, reranked = search_eval.run(found, ["fake"], k=1, rerank=True)
    assert plain.error is None and not plain.reranked and plain.recall == 1.0
    assert reranked.reranked and reranked.embedder == "fake" and math.isnan(reranked.recall)
    assert reranked.error == "Reranking uses Cohere: set CO_API_KEY, or pick Cohere as the provider and type its key."
    assert cohere.requests == []


def test_a_key_typed_for_the_embedder_is_not_sent_to_the_reranker(fake_provider, cohere):
    found = search_set([("q1", "apples orchards", ["fruit"])])
    plain, reranked = search_eval.run(found, ["fake"], k=1, rerank=True, api_key="fake-session-key-123")
    assert plain.error is None and reranked.error is not None and "CO_API_KEY" in reranked.error
    assert cohere.requests == []


# Cosine prefers the short passage that repeats "apple"; the reranker (share of the query's words
# found) prefers the long passage holding both words, which is the relevant one.
RERANK_PASSAGES = (
    ("pie", "apple apple apple pie"),
    ("orchard", "apple orchard rows stretch across the quiet valley near every small farm house today"),
    ("sea", "the sea is deep and blue"),
    ("cars", "old cars need fuel to run"),
    ("rails", "trains run on rails"),
    ("birds", "birds sing at dawn"),
)


def test_rerank_reorders_the_candidates_and_changes_the_scores(fake_provider, cohere, monkeypatch):
    monkeypatch.setenv("CO_API_KEY", "co-test-rerank-123456")
    dataset = search_set(
        [("q1", "apple orchard", ["orchard"]), ("q2", "deep blue sea", ["sea"])], passages=RERANK_PASSAGES
    )
    plain, reranked = search_eval.run(dataset, ["fake"], k=1, rerank=True)
    assert plain.error is None and reranked.error is None and reranked.reranked and not plain.reranked
    assert plain.recall == 0.5 and plain.mrr == 0.75  # q1 finds the pie first, the orchard second
    assert reranked.recall == 1.0 and reranked.mrr == 1.0
    assert reranked.latency_s >= plain.latency_s and reranked.cost_usd is None  # the reranker reports no cost
    calls = [r.json() for r in cohere.requests if r.path == "/v2/rerank"]
    assert [c["query"] for c in calls] == ["apple orchard", "deep blue sea"]  # one call a query
    assert all(len(c["documents"]) == 1 * search_eval.RERANK_POOL for c in calls)  # the top k * 4 candidates
    assert (
        "apple orchard rows stretch across the quiet valley near every small farm house today"
        in (calls[0]["documents"])
    )


def test_a_reranker_failing_mid_run_is_an_error_row(fake_provider, cohere, monkeypatch):
    monkeypatch.setenv("CO_API_KEY", "co-test-rerank-123456")
    monkeypatch.setenv("FMG_COHERE_RERANK_MODEL", "no-such-reranker")
    found = search_set([("q1", "apples orchards", ["fruit"])])
    plain, reranked = search_eval.run(found, ["fake"], k=1, rerank=True)
    assert plain.error is None and plain.recall == 1.0
    assert reranked.error is not None and math.isnan(reranked.recall)
    assert any(r.path == "/v2/rerank" for r in cohere.requests)


def test_table_formats_scores_with_intervals_and_blanks_failed_rows(fake_provider):
    mixed = search_set([("q1", "apples orchards", ["fruit"]), ("q2", "deep blue sea", ["cars"])])
    rows = search_eval.run(mixed, ["fake", "no-such-provider"], k=1)
    shown = search_eval.table(rows)
    assert all(len(r) == len(search_eval.COLUMNS) for r in shown)
    good = dict(zip(search_eval.COLUMNS, shown[0], strict=True))
    assert good["embedder"] == "fake" and good["rerank"] == "no" and good["k"] == 1 and good["queries"] == 2
    assert good["recall@k (95% CI)"] == "0.500 [0.000, 1.000]"
    mrr = rows[0]
    assert good["MRR (95% CI)"] == f"{mrr.mrr:.3f} [{mrr.mrr_low:.3f}, {mrr.mrr_high:.3f}]"
    assert good["cost"] == "unknown" and good["error"] == ""
    bad = dict(zip(search_eval.COLUMNS, shown[1], strict=True))
    assert bad["recall@k (95% CI)"] == bad["MRR (95% CI)"] == bad["latency (s)"] == bad["cost"] == ""
    assert "Unknown provider" in bad["error"]


def test_datasets_and_k_that_cannot_be_scored_are_refused_before_any_call(fake_provider, embedded):
    found = search_set([("q1", "apples orchards", ["fruit"])])
    with pytest.raises(BadInput, match="search dataset"):
        search_eval.run(datasets.builtin("arithmetic"), ["fake"])
    with pytest.raises(BadInput, match="not in the corpus: nowhere"):
        search_eval.run(search_set([("q1", "apples", ["nowhere"])]), ["fake"])
    with pytest.raises(BadInput, match="no relevant passages"):
        search_eval.run(search_set([("q1", "apples", [])]), ["fake"])
    for k in (0, True, 1.5):
        with pytest.raises(BadInput, match="k must be"):
            search_eval.run(found, ["fake"], k=k)  # type: ignore[arg-type]
    assert embedded == []
