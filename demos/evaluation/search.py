"""Evaluate, search: recall@k and MRR of each embedder on a set of queries with known relevant
passages, with and without reranking the embedding search's candidates."""

from __future__ import annotations

import gradio as gr

from demos.widgets.report import shows_errors
from services import visitors
from services.evaluation import datasets, search_eval

SEARCH_SETS = [name for name in datasets.BUILTIN if datasets.builtin(name).kind == "search"]


@shows_errors
def evaluate(name, targets, k, rerank, request: gr.Request | None = None):
    """One row per embedder (and per embedder reranked, when asked)."""
    data = datasets.builtin(name)
    chosen = [line.strip() for line in str(targets or "").replace(",", "\n").splitlines() if line.strip()]
    rows = search_eval.run(data, chosen, k=int(k or 5), rerank=bool(rerank), visitor=visitors.current(request))
    summary = f"{len(data.items)} queries over {len(data.passages)} passages; {data.description}"
    return search_eval.table(rows), summary


def layout() -> None:
    """The search section's components and events, inside the open Blocks."""
    gr.Markdown(
        "Each embedder embeds the passages and the queries; **recall@k** is the share of a query's relevant "
        "passages in its top k, **MRR** the mean of 1 / the rank of the first relevant one."
    )
    with gr.Row():
        name = gr.Dropdown(SEARCH_SETS, value=SEARCH_SETS[0] if SEARCH_SETS else None, label="Search set")
        targets = gr.Textbox("local", label="Embedders, one per line", lines=3)
        with gr.Column():
            k = gr.Slider(1, 20, value=5, step=1, label="k")
            rerank = gr.Checkbox(label="Also rerank the top 4k with Cohere (needs CO_API_KEY)")
            button = gr.Button("Evaluate search", variant="primary")
    table = gr.Dataframe(headers=search_eval.COLUMNS, label="Search quality", interactive=False, wrap=True)
    notes = gr.Markdown()
    button.click(evaluate, [name, targets, k, rerank], [table, notes], api_name="evaluate_search")
