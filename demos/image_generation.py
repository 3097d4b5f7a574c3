"""Image generation: text to image with a diffusion model, with per-step progress.

API: `/generate(prompt, negative_prompt, steps, width, height, guidance, seed, provider, api_key)`
returns `(image, stats)`; a seed of -1 picks one at random and the stats say which. The page also
shows the call as a Python program with that seed (`demos.widgets.reproduce`).
"""

from __future__ import annotations

from typing import cast

import gradio as gr

from adapters import inputs
from adapters.tasks import ImageGenerator
from adapters.types import ImageParams, Task
from demos.widgets import picker as picker_ui
from demos.widgets import reproduce, standalone
from demos.widgets.report import shows_errors, stats
from services import access, boundary, run_log, visitors

TASK = Task.IMAGE_GENERATION
TAB = "image-generation"  # the tab's id in the app and in the run log
TITLE = "Image generation"
EXAMPLES = [
    ["a watercolor painting of a lighthouse at dawn"],
    ["an astronaut riding a horse, photorealistic"],
    ["a bowl of ramen, studio lighting, 35mm"],
]


@shows_errors
def generate(
    prompt,
    negative_prompt,
    steps,
    width,
    height,
    guidance,
    seed,
    provider,
    api_key,
    progress=gr.Progress(),  # noqa: B008 - Gradio's documented way to receive a progress tracker
    request: gr.Request | None = None,
):
    """(image, stats, program): the program is the call in Python, with the seed it used."""
    logged = run_log.run(
        tab=TAB,
        task=TASK,
        provider=provider,
        inputs={"prompt": prompt, "negative_prompt": negative_prompt},
        params={"steps": steps, "width": width, "height": height, "guidance": guidance, "seed": seed},
    )
    with logged:
        params = ImageParams(
            steps=boundary.capped("steps", steps, "steps"),
            width=boundary.capped("width", width, "image_side"),
            height=boundary.capped("height", height, "image_side"),
            guidance=guidance,
            negative_prompt=negative_prompt or "",
            # a whole-number float from the page passes too: check_image_params checks and converts it
            seed=None if not isinstance(seed, (int, float)) or seed < 0 else cast(int, seed),
        )
        visitor = visitors.current(request)
        logged.by(visitor)
        adapter = cast(ImageGenerator, access.adapter(TASK, provider, api_key=api_key))  # the adapter for TASK
        logged.uses(adapter)
        prompt, params = inputs.check_prompt(prompt), inputs.check_image_params(params)  # before any charge
        progress(0, desc="Starting")
        work = access.Work(input_chars=len(prompt) + len(params.negative_prompt), images_out=1)
        with access.call(visitor, adapter, work):
            result = adapter.generate(
                prompt, params, on_step=lambda step, total: progress((step, total), desc="Denoising")
            )
        logged.done(result, output=result.images[0])
    seed_note = f"seed {result.seed}" if result.seed is not None else "this provider takes no seed"
    used = {
        "steps": params.steps,
        "width": params.width,
        "height": params.height,
        "guidance": params.guidance,
        "seed": params.seed if result.seed is None else result.seed,
    }
    program = reproduce.of(TASK, adapter, {"prompt": prompt, "negative_prompt": params.negative_prompt}, used)
    return result.images[0], f"{stats(result)} · {seed_note}", program


def reopen(run: dict) -> list:
    """Values for `reopen_inputs` from a logged run, with the seed it actually used (so that
    generating again reproduces the image where the provider honours seeds)."""
    inputs, params, output = run.get("inputs") or {}, run.get("params") or {}, run.get("output")
    seed = output["seed"] if isinstance(output, dict) and "seed" in output else params.get("seed", gr.skip())
    return [
        inputs.get("prompt", ""),
        inputs.get("negative_prompt") or "",
        *(params.get(name, gr.skip()) for name in ("steps", "width", "height", "guidance")),
        seed,
        run.get("provider"),
    ]


def layout(root: gr.Blocks) -> list:
    """This tab's components and events, built inside the open `root` Blocks (a tab of the app, or
    `build()`'s page of its own); returns the inputs that `reopen` fills."""
    gr.Markdown(
        "A diffusion model turns noise into an image, one denoising step at a time, guided by your text. "
        "SD-Turbo needs 1-4 steps and no guidance."
    )
    picker = picker_ui.build(TASK)
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a watercolor painting of a lighthouse")
            negative = gr.Textbox(label="Negative prompt (used when guidance > 1)", lines=1)
            # Numbers, not sliders: out-of-range values reach adapters.inputs, whose message names them
            with gr.Row():
                steps = gr.Number(value=1, precision=0, label=f"Steps (1-{boundary.ceiling('steps', 100)})")
                guidance = gr.Number(value=0.0, step=0.5, label="Guidance (0: off)")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
            with gr.Row():
                width = gr.Number(value=512, precision=0, step=64, label="Width (multiple of 8)")
                height = gr.Number(value=512, precision=0, step=64, label="Height (multiple of 8)")
            run = gr.Button("Generate", variant="primary")
        with gr.Column():
            image = gr.Image(label="Result", type="pil", format="png")
            info = gr.Markdown()
            program = reproduce.box()
    gr.Examples(EXAMPLES, inputs=[prompt])
    program.after(
        run.click(
            generate,
            [prompt, negative, steps, width, height, guidance, seed, *picker.inputs],
            [image, info, program.state],
            api_name="generate",
            concurrency_limit=16,
        )
    )
    picker_ui.attach_refresh(root, picker)
    return [prompt, negative, steps, width, height, guidance, seed, picker.provider]


if __name__ == "__main__":
    standalone.main(__name__)
