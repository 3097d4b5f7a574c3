"""Evaluate: score many inputs the same way on several models, in three sections.

- Chat (`demos.evaluation.chat`): items x prompt variants x targets, scored, with `/evaluate`.
- Images (`demos.evaluation.images`): zero-shot accuracy per target, and a linear probe against
  zero-shot on one embedding model.
- Search (`demos.evaluation.search`): recall@k and MRR per embedder, with and without rerank.

Evaluations keep their own store (`services.evaluation.store`), not History: `reopen` fills nothing.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from demos.evaluation import chat, images, search
from demos.widgets import standalone

TAB = "evaluate"
TITLE = "Evaluate"


def layout(root: gr.Blocks) -> list:
    """The sections as sub-tabs inside the open `root`; no inputs for `reopen`."""
    with gr.Tabs():
        with gr.Tab("Chat"):
            chat.layout()
        with gr.Tab("Images"):
            images.layout()
        with gr.Tab("Search"):
            search.layout()
    return []


def reopen(run: dict[str, Any]) -> list:
    return []


if __name__ == "__main__":
    standalone.main(__name__)
