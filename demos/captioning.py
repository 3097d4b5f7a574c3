"""Captioning: describe an image in words, optionally steered by a prompt.

API: `/caption(image, prompt, provider, api_key)` returns `(caption, stats)`; the page also shows
the call as a Python program (`demos.widgets.reproduce`).
"""

from __future__ import annotations

from typing import cast

import gradio as gr

from adapters import inputs
from adapters.tasks import Captioner
from adapters.types import Task
from demos.widgets import examples, reproduce, standalone
from demos.widgets import picker as picker_ui
from demos.widgets.image_upload import ImageUpload
from demos.widgets.report import shows_errors, stats
from services import access, run_log, visitors

TASK = Task.CAPTIONING
TAB = "captioning"  # the tab's id in the app and in the run log
TITLE = "Captioning"


@shows_errors
def caption(image, prompt, provider, api_key, request: gr.Request | None = None):
    """(caption, stats, program): the program is the call in Python."""
    with run_log.run(
        tab=TAB, task=TASK, provider=provider, inputs={"image": run_log.Upload(image), "prompt": prompt}
    ) as logged:
        visitor = visitors.current(request)
        logged.by(visitor)
        adapter = cast(Captioner, access.adapter(TASK, provider, api_key=api_key))  # the adapter for TASK
        logged.uses(adapter)
        access.check(visitor, adapter)  # an over-quota visitor's image is not decoded
        picture, prompt = inputs.load_image(image), inputs.check_optional_prompt(prompt)  # before any charge
        work = access.Work(input_chars=len(prompt or "") + 500, output_tokens=300, images_in=1)
        with access.call(visitor, adapter, work):
            result = adapter.caption(picture, prompt)
        logged.done(result, output=result.text)
    return result.text, stats(result), reproduce.of(TASK, adapter, {"prompt": prompt}, {})


def reopen(run: dict) -> list:
    """Values for `reopen_inputs` from a logged run: its image (kept in the log folder), prompt, provider."""
    inputs = run.get("inputs") or {}
    return [run_log.open_image(inputs.get("image")), inputs.get("prompt") or "", run.get("provider")]


def layout(root: gr.Blocks) -> list:
    """This tab's components and events, built inside the open `root` Blocks (a tab of the app, or
    `build()`'s page of its own); returns the inputs that `reopen` fills."""
    gr.Markdown("Turn an image into text. Local models (BLIP, ViT-GPT2) caption; vision chat models follow a prompt.")
    picker = picker_ui.build(TASK)
    with gr.Row():
        with gr.Column():
            image = ImageUpload(label="Image", height=300)
            prompt = gr.Textbox(label="Prompt (optional)", placeholder="a photograph of")
            run = gr.Button("Caption", variant="primary")
        with gr.Column():
            text = gr.Textbox(label="Caption", lines=3, buttons=["copy"])
            info = gr.Markdown()
            program = reproduce.box()
    samples = examples.images()
    if samples:
        gr.Examples([[path] for path, _ in samples], inputs=[image])
    program.after(
        run.click(
            caption,
            [image, prompt, *picker.inputs],
            [text, info, program.state],
            api_name="caption",
            concurrency_limit=16,
        )
    )
    picker_ui.attach_refresh(root, picker)
    return [image, prompt, picker.provider]


if __name__ == "__main__":
    standalone.main(__name__)
