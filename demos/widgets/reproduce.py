"""The "Reproduce in Python" box under a result: the call that made it, as a short program using the
vendor's SDK (or the local library) with the same model, parameters and seed, never the key.

The programs come from `adapters.snippets`; in public mode they leave out the server's base URLs
and local model paths (`public=True`). A tab's handler returns the program into a `gr.State`
and a chained listener shows it in the box: the State keeps the handler's API return values as
they were (gradio_client leaves States out), while the page still gets the program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from adapters import snippets
from adapters.errors import BadInput
from adapters.types import Task
from services import public
from services.search import corpus

LABEL = "Reproduce in Python"
HIDDEN = "# The program names the model, so it is shown after the vote.\n"


@dataclass
class Box:
    state: gr.State  # what the handler returns
    code: gr.Code  # what the page shows

    def after(self, event: Any) -> None:
        """Show the program once `event` (the tab's run) has succeeded."""
        event.success(show, self.state, self.code, api_visibility="private", queue=False)


def show(code: str | None) -> str:
    return code or ""


def code_box() -> gr.Code:
    """The accordion and its code viewer (inside the current layout block)."""
    with gr.Accordion(LABEL, open=False):
        return gr.Code(language="python", show_label=False, interactive=False, lines=6, max_lines=40, buttons=["copy"])


def box() -> Box:
    return Box(gr.State(""), code_box())


def of(task: Task, adapter: Any, inputs: dict, params: dict) -> str:
    """The program for a call `adapter` just made (its session key, if any, is scrubbed too)."""
    return snippets.snippet(
        task,
        adapter.provider,
        adapter.model,
        inputs,
        params,
        secrets=[getattr(adapter, "api_key", None)],
        public=public.enabled(),
    )


def for_run(run: dict | None) -> str:
    """The program for a logged run (History): its inputs and parameters, the seed it used, and
    the search corpus cut into passages again, with a note where the log kept only part of it."""
    if not run:
        return ""
    inputs, params, output = dict(run.get("inputs") or {}), dict(run.get("params") or {}), run.get("output")
    notes = []
    if isinstance(output, dict) and output.get("seed") is not None:
        params["seed"] = output["seed"]  # the seed actually used (a -1 in the form picked one)
    text = inputs.get("corpus")
    if isinstance(text, str) and text.strip() and "documents" not in inputs:
        try:
            words = int(params.get("passage_words") or 120)
            inputs["documents"] = [p.text for p in corpus.chunk(corpus.read_sources(text, None), max_words=words)]
        except (BadInput, TypeError, ValueError):
            pass
        if "… [cut:" in text:
            notes.append("The run log kept only the start of the corpus: the passages below are incomplete.")
    if inputs.get("files"):
        notes.append("The run also searched uploaded files, which the run log does not keep.")
    return snippets.snippet(
        run.get("task") or "",
        run.get("provider") or "",
        run.get("model"),
        inputs,
        params,
        notes=notes,
        public=public.enabled(),
    )
