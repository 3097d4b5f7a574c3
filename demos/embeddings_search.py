"""Embeddings search: embed a corpus once, then find the passages closest in meaning to a query.

API: `/search(query, corpus, files, top_k, passage_words, provider, api_key)` returns
`(hits table, stats)`; the page also shows the calls as a Python program (`demos.widgets.reproduce`).
The index of a corpus is kept (a few, least recently used dropped), so
repeated queries on the same corpus only embed the query.
"""

from __future__ import annotations

import os
from typing import Any, cast

import gradio as gr

from adapters import registry
from adapters.errors import BadInput
from adapters.tasks import Embedder
from adapters.types import Task
from demos.widgets import picker as picker_ui
from demos.widgets import reproduce, standalone
from demos.widgets.report import shows_errors, stats
from services import access, boundary, run_log, visitors
from services import search as search_index
from services.search import SAMPLE_CORPUS, corpus, corpus_index

TASK = Task.EMBEDDINGS
TAB = "embeddings-search"  # the tab's id in the app and in the run log
TITLE = "Embeddings search"
MAX_TOP_K = 50
RERANK_POOL = 4  # with rerank, the embedding search proposes this many candidates per hit wanted
COLUMNS = ["rank", "score", "source", "passage"]


@shows_errors
def search(
    query, corpus_text, files, top_k, passage_words, provider, api_key, rerank=False, request: gr.Request | None = None
):
    """(hits, stats, program): the program embeds the same passages and query in Python.

    With `rerank`, the embedding search proposes candidates and Cohere's reranker orders them."""
    # Uploaded files are logged by name only: the pasted corpus is kept (cut if long), files are not.
    inputs = {"query": query, "corpus": corpus_text, "files": _file_names(files)}
    logged = run_log.run(
        tab=TAB,
        task=TASK,
        provider=provider,
        inputs=inputs,
        params={"top_k": top_k, "passage_words": passage_words, "rerank": bool(rerank)},
    )
    with logged:
        if not isinstance(query, str) or not query.strip():
            raise BadInput("The query is empty: type what you are looking for.")
        sources = corpus.read_sources(corpus_text, files)
        boundary.capped("The corpus (characters)", sum(len(text) for _, text in sources), "corpus_chars")
        passages = corpus.chunk(sources, max_words=int(passage_words or 120))
        visitor = visitors.current(request)
        logged.by(visitor)
        embedder = cast(Embedder, access.adapter(TASK, provider, api_key=api_key))  # the adapter for TASK
        logged.uses(embedder)
        reranker: Any = _reranker(provider, api_key) if rerank else None  # before any call: no embedding wasted
        built_already = search_index.cached(embedder, passages)
        work = access.Work(
            input_chars=len(query) + (0 if built_already else sum(len(p.text) for p in passages)),
            requests=1 + (0 if built_already else -(-len(passages) // embedder.max_batch)),
        )
        with access.call(visitor, embedder, work):  # the corpus and the query, charged once
            built, cached = corpus_index(embedder, passages)
            result = embedder.embed([query.strip()], kind="query")
        k = _top_k(top_k)
        scores, ids = built.index.search(result.vectors, max(k * RERANK_POOL, 20) if rerank else k)
        hits = list(zip(ids[0].tolist(), scores[0].tolist(), strict=False))
        if rerank:
            hits = _reranked(query.strip(), built.passages, [i for i, _ in hits], k, reranker, visitor)
        rows = [
            [rank + 1, round(float(score), 4), built.passages[i].source, built.passages[i].text]
            for rank, (i, score) in enumerate(hits)
        ]
        logged.done(result, output=[dict(zip(COLUMNS, row, strict=False)) for row in rows])
    n_sources = len({p.source for p in passages})
    how = "reused the index" if cached else f"indexed in {built.build_s:.2f} s"
    plural = "s" if n_sources > 1 else ""
    note = f"{len(passages)} passages from {n_sources} source{plural} ({how}) · query: {stats(result)}"
    if rerank:
        note += " · scores are Cohere rerank relevance"
    params = {"top_k": k}
    if rerank:
        params["rerank_model"] = reranker.model
    program = reproduce.of(TASK, embedder, {"query": query.strip(), "documents": [p.text for p in passages]}, params)
    return rows, note, program


def _top_k(value) -> int:
    if value is None:
        return 5
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_TOP_K:
        raise BadInput(f"Top k must be a whole number from 1 to {MAX_TOP_K} (got {str(value)[:20]}).")
    return int(value)


def _reranker(provider: str, api_key: str | None):
    """Cohere's reranker, or the `FMError` that says why it cannot run (raised before any call).
    A key typed for this session is used only when the session's provider is Cohere itself."""
    return registry.reranker(provider, api_key)


def _reranked(
    query: str, passages: list, candidates: list[int], k: int, reranker, visitor: visitors.Visitor
) -> list[tuple[int, float]]:
    """The best `k` of the candidate passages by Cohere's reranker, as (passage index, relevance)."""
    access.charge(
        visitor, reranker, access.Work(input_chars=len(query) + sum(len(passages[i].text) for i in candidates))
    )
    order = reranker.rerank(query, [passages[i].text for i in candidates], top_n=k)
    return [(candidates[j], score) for j, score in order]


def _file_names(files) -> list[str]:
    paths = [f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None) for f in files or []]
    return [os.path.basename(p) for p in paths if p]


def reopen(run: dict) -> list:
    """Values for `reopen_inputs` from a logged run. Uploaded files were not kept, so the file box
    is emptied; the pasted corpus comes back (cut, with a note, if it was very long)."""
    inputs, params = run.get("inputs") or {}, run.get("params") or {}
    return [
        inputs.get("query", ""),
        inputs.get("corpus") or "",
        None,
        params.get("top_k", gr.skip()),
        params.get("passage_words", gr.skip()),
        run.get("provider"),
        bool(params.get("rerank", False)),
    ]


def layout(root: gr.Blocks) -> list:
    """This tab's components and events, built inside the open `root` Blocks (a tab of the app, or
    `build()`'s page of its own); returns the inputs that `reopen` fills."""
    gr.Markdown(
        "Semantic search: passages and query become vectors, and the nearest vectors are the closest in "
        "meaning, even without shared words. Offline, the packaged all-MiniLM-L6-v2 embeds."
    )
    picker = picker_ui.build(TASK)
    with gr.Row():
        with gr.Column():
            corpus_text = gr.Textbox(
                label="Corpus (paste text; blank lines separate passages)", lines=10, value=SAMPLE_CORPUS
            )
            files = gr.File(
                label="…or upload .txt, .md, .csv files",
                file_count="multiple",
                file_types=[".txt", ".md", ".csv"],
                type="filepath",
            )
            with gr.Row():
                top_k = gr.Slider(1, 20, value=5, step=1, label="Top k")
                passage_words = gr.Slider(20, 400, value=120, step=10, label="Passage size (words)")
        with gr.Column():
            query = gr.Textbox(label="Query", placeholder="a baby cat")
            rerank = gr.Checkbox(label="Rerank the hits with Cohere (needs CO_API_KEY)", value=False)
            run = gr.Button("Search", variant="primary")
            hits = gr.Dataframe(headers=COLUMNS, label="Closest passages", wrap=True, interactive=False)
            info = gr.Markdown()
            program = reproduce.box()
    gr.Examples([["a young cat"], ["how do image generators work?"], ["famous landmarks in France"]], inputs=[query])
    program.after(
        gr.on(
            [run.click, query.submit],
            search,
            [query, corpus_text, files, top_k, passage_words, *picker.inputs, rerank],
            [hits, info, program.state],
            api_name="search",
            concurrency_limit=16,
        )
    )
    picker_ui.attach_refresh(root, picker)
    return [query, corpus_text, files, top_k, passage_words, picker.provider, rerank]


if __name__ == "__main__":
    standalone.main(__name__)
