"""The tab contract, and one tab as a page of its own (`python -m demos.<tab>`, and tests).

A tab module's `layout(root)` builds its components and events inside whatever Blocks is open:
the app renders every tab into one `gr.Blocks` (one Blocks per tab would make Gradio build a
server app for each at start), and `standalone` opens a Blocks for one tab alone.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import gradio as gr


class Tab(Protocol):
    """What a tab module provides: `app.py` renders it and History re-opens its runs in it."""

    TAB: str  # its id in the app and in the run log
    TITLE: str

    def layout(self, root: gr.Blocks) -> list:
        """Build the components and events inside the open `root`; return what `reopen` fills."""
        ...

    def reopen(self, run: dict[str, Any]) -> list:
        """Values for the components `layout` returned, from a logged run."""
        ...


def standalone(tab: Tab) -> gr.Blocks:
    """`tab` built into a page of its own; `.reopen_inputs` holds what its layout returned."""
    with gr.Blocks(title=tab.TITLE) as page:
        page.reopen_inputs = tab.layout(page)  # type: ignore[attr-defined]
    return page


def main(module_name: str) -> None:
    """Serve one tab alone: `if __name__ == "__main__": standalone.main(__name__)`."""
    standalone(sys.modules[module_name]).queue().launch()  # type: ignore[arg-type]
