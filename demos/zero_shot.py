"""Zero-shot image classification: score an image against labels the user makes up (CLIP-style).

API: `/classify(image, labels, provider, api_key)` returns `(label scores, stats)`; the page also
shows the call as a Python program (`demos.widgets.reproduce`).
"""

from __future__ import annotations

from typing import cast

import gradio as gr

from adapters import inputs
from adapters.tasks import ZeroShotClassifier
from adapters.types import Task
from demos.widgets import examples, reproduce, standalone
from demos.widgets import picker as picker_ui
from demos.widgets.image_upload import ImageUpload
from demos.widgets.report import shows_errors, stats
from services import access, run_log, visitors

TASK = Task.ZERO_SHOT
TAB = "zero-shot"  # the tab's id in the app and in the run log
TITLE = "Zero-shot classification"
UNCALIBRATED = "⚠️ These scores are the model's own estimate, not calibrated probabilities."


@shows_errors
def classify(image, labels, provider, api_key, request: gr.Request | None = None):
    """(label scores, stats, program): the program is the call in Python."""
    given = {"image": run_log.Upload(image), "labels": labels}
    with run_log.run(tab=TAB, task=TASK, provider=provider, inputs=given) as logged:
        visitor = visitors.current(request)
        logged.by(visitor)
        adapter = cast(ZeroShotClassifier, access.adapter(TASK, provider, api_key=api_key))  # the adapter for TASK
        logged.uses(adapter)
        access.check(visitor, adapter)  # an over-quota visitor's image is not decoded
        picture, labels = inputs.load_image(image), inputs.check_labels(labels)  # checked before any charge
        work = access.Work(input_chars=sum(map(len, labels)) + 500, output_tokens=300, images_in=1)
        with access.call(visitor, adapter, work):
            result = adapter.classify(picture, labels)
        logged.done(result, output=dict(result.scores))
    note = stats(result) if result.calibrated else f"{stats(result)}\n\n{UNCALIBRATED}"
    return dict(result.scores), note, reproduce.of(TASK, adapter, {"labels": labels}, {})


def reopen(run: dict) -> list:
    """Values for `reopen_inputs` from a logged run: its image (kept in the log folder), labels, provider."""
    inputs = run.get("inputs") or {}
    return [run_log.open_image(inputs.get("image")), inputs.get("labels", ""), run.get("provider")]


def layout(root: gr.Blocks) -> list:
    """This tab's components and events, built inside the open `root` Blocks (a tab of the app, or
    `build()`'s page of its own); returns the inputs that `reopen` fills."""
    gr.Markdown(
        "No training, no fixed classes: a contrastive image-text model embeds the image and each label, "
        'and the closest label wins. Write labels as short captions ("a photo of a cat") for better scores.'
    )
    picker = picker_ui.build(TASK)
    with gr.Row():
        with gr.Column():
            image = ImageUpload(label="Image", height=300)
            labels = gr.Textbox(label="Candidate labels (comma separated)", value="a cat, a dog, a car")
            run = gr.Button("Classify", variant="primary")
        with gr.Column():
            scores = gr.Label(label="Scores", num_top_classes=10)
            info = gr.Markdown()
            program = reproduce.box()
    samples = examples.images()
    if samples:
        gr.Examples([list(s) for s in samples], inputs=[image, labels])
    program.after(
        run.click(
            classify,
            [image, labels, *picker.inputs],
            [scores, info, program.state],
            api_name="classify",
            concurrency_limit=16,
        )
    )
    picker_ui.attach_refresh(root, picker)
    return [image, labels, picker.provider]


if __name__ == "__main__":
    standalone.main(__name__)
