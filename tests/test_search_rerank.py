"""The search tab's rerank option: embedding search proposes, Cohere's reranker (over real HTTP
against the Cohere wire-format fake) orders the hits."""

from __future__ import annotations

import gradio as gr
import pytest

from demos import embeddings_search
from tests.fakes.cohere_server import route
from tests.fakes.http_server import FakeServer

CORPUS = "red apples are sweet\n\nthe sea is blue and deep\n\napples grow on trees in orchards\n\ncars need fuel"


@pytest.fixture
def cohere(monkeypatch):
    with FakeServer(route) as server:
        monkeypatch.setenv("CO_API_URL", server.url)
        yield server


def test_rerank_orders_hits_by_the_reranker(fake_provider, cohere, monkeypatch):
    monkeypatch.setenv("CO_API_KEY", "co-test-rerank-123456")
    rows, info, program = embeddings_search.search("apples orchards", CORPUS, None, 2, 120, "fake", "", True)
    rerank_calls = [r for r in cohere.requests if r.path == "/v2/rerank"]
    assert len(rerank_calls) == 1 and len(rerank_calls[0].json()["documents"]) == 4  # all candidates sent
    assert rows[0][3] == "apples grow on trees in orchards" and len(rows) == 2
    assert rows[0][1] >= rows[1][1] and "Cohere rerank" in info
    assert "co-test-rerank-123456" not in program


def test_rerank_without_a_cohere_key_says_what_to_set(fake_provider, cohere):
    with pytest.raises(gr.Error, match="CO_API_KEY"):
        embeddings_search.search("apples", CORPUS, None, 2, 120, "fake", "some-other-vendor-key", True)
    assert cohere.requests == []  # a key typed for another provider is never sent to Cohere


def test_rerank_that_cannot_run_fails_before_any_embedding_with_advice_that_applies(fake_provider, cohere, monkeypatch):
    """A key typed for another provider never goes to Cohere, so "type a key" cannot help there."""
    from tests.fakes import providers as fake

    embedded = []
    real = fake.FakeEmbedder._embed
    monkeypatch.setattr(
        fake.FakeEmbedder, "_embed", lambda self, texts, kind: embedded.append(texts) or real(self, texts, kind)
    )
    with pytest.raises(gr.Error) as info:
        embeddings_search.search("apples", CORPUS, None, 2, 120, "fake", "some-other-vendor-key", True)
    assert embedded == [] and cohere.requests == []  # checked before the corpus or the query was embedded
    assert info.value.message == (
        "Reranking uses Cohere: set CO_API_KEY, or pick Cohere as the provider and type its key."
    )
