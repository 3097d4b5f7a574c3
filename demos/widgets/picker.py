"""The provider picker every tab shares: what can serve this task now, and why the rest cannot.

Providers that need a key stay in the list even without one, because a key typed for this
session makes them usable; the note under the list says what each unusable one needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from adapters import registry
from adapters.types import Task
from services import boundary


@dataclass
class Picker:
    task: Task
    provider: gr.Dropdown
    notes: gr.Markdown
    api_key: gr.Textbox

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.provider, self.api_key]

    def refresh(self) -> tuple[dict, str]:
        choices, value, notes = _state(self.task)
        return gr.update(choices=choices, value=value), notes


def _state(task: Task) -> tuple[list[tuple[str, str]], str | None, str]:
    options = registry.options(task)
    serving = [o for o in options if o.model is not None]
    choices = [
        (f"{o.label} · {_short(boundary.shown_model(o.model))}" if o.usable else f"{o.label} (not ready)", o.provider)
        for o in serving
    ]
    value = next((o.provider for o in serving if o.usable), serving[0].provider if serving else None)
    unusable = [o for o in options if not o.usable]
    notes = boundary.scrub("\n".join(f"- **{o.label}**: {o.reason}" for o in unusable))
    return (
        choices,
        value,
        (f"<details><summary>Why some providers are not ready</summary>\n\n{notes}\n</details>" if notes else ""),
    )


def _short(model: str | None) -> str:
    """A readable model name: the file or repo name without the path or package prefix."""
    name = (model or "").removeprefix("pkg:").rstrip("/")
    if name.endswith("/model"):
        name = name[: -len("/model")]
    return name.rsplit("/", 1)[-1]


def build(task: Task) -> Picker:
    choices, value, notes = _state(task)
    with gr.Row():
        provider = gr.Dropdown(
            choices=choices,
            value=value,
            label="Provider",
            allow_custom_value=True,
            scale=2,
            info="Where the model runs: on this machine, or at a hosted vendor.",
        )
        api_key = gr.Textbox(
            label="API key for this session (optional)",
            type="password",
            scale=2,
            max_lines=1,
            placeholder="Used only for your calls; never stored or logged",
        )
    note_box = gr.Markdown(notes)
    return Picker(task, provider, note_box, api_key)


def attach_refresh(demo: gr.Blocks, picker: Picker) -> None:
    """Re-check availability when the page loads (keys or weights may have appeared)."""
    demo.load(picker.refresh, outputs=[picker.provider, picker.notes], api_visibility="private", queue=False)
