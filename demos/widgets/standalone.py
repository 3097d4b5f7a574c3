"""One tab as a page of its own (`python -m demos.<tab>`, and tests that launch a single tab).

A tab module's `layout(root)` builds its components and events inside whatever Blocks is open:
the app renders every tab into one `gr.Blocks` (one Blocks per tab would make Gradio build a
server app for each at start), and `standalone` opens a Blocks for one tab alone.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr


def standalone(title: str, layout: Callable[[gr.Blocks], list]) -> gr.Blocks:
    """`layout` built into a page of its own; `.reopen_inputs` holds what it returned."""
    with gr.Blocks(title=title) as page:
        page.reopen_inputs = layout(page)
    return page
