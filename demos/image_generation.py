"""Image generation: text to image with a diffusion model, with per-step progress.

API: `/generate(prompt, negative_prompt, steps, width, height, guidance, seed, provider, api_key)`
returns `(image, stats)`; a seed of -1 picks one at random and the stats say which. The page also
shows the call as a Python program with that seed (`demos.widgets.reproduce`).

Editing (`/edit`): image-to-image with a strength, inpainting with a mask drawn on the image,
outpainting (a border painted around it) and 2x / 4x upscaling, where the provider can
(`registry.edit_modes`).
"""

from __future__ import annotations

from typing import Any, cast

import gradio as gr

from adapters import inputs, registry
from adapters.errors import BadInput
from adapters.tasks import ImageGenerator
from adapters.types import EditMode, ImageParams, Task
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


@shows_errors
def edit(
    prompt,
    editor,
    mode,
    strength,
    scale,
    border,
    steps,
    guidance,
    seed,
    provider,
    api_key,
    progress=gr.Progress(),  # noqa: B008 - Gradio's documented way to receive a progress tracker
    request: gr.Request | None = None,
):
    """(image, stats, note): `editor` is the ImageEditor's value, its first layer the inpainting mask."""
    mode = inputs.check_edit_mode(mode)
    image, mask = _from_editor(editor, mode)
    logged = run_log.run(
        tab=TAB,
        task=TASK,
        provider=provider,
        inputs={"prompt": prompt, "mode": mode.value, "image": image},
        params={"strength": strength, "scale": scale, "border": border, "steps": steps, "seed": seed},
    )
    with logged:
        params = ImageParams(
            steps=boundary.capped("steps", steps, "steps"),
            guidance=guidance,
            seed=None if not isinstance(seed, (int, float)) or seed < 0 else cast(int, seed),
        )
        visitor = visitors.current(request)
        logged.by(visitor)
        adapter = cast(ImageGenerator, access.adapter(TASK, provider, api_key=api_key))
        logged.uses(adapter)
        problem = adapter.edit_problem(mode, int(scale or 2))
        if problem is not None:  # before any charge
            raise problem
        progress(0, desc="Starting")
        work = access.Work(input_chars=len(prompt or ""), images_in=1, images_out=1)
        with access.call(visitor, adapter, work):
            result = adapter.edit(
                prompt,
                image,
                mode,
                params,
                mask=mask,
                strength=strength,
                scale=int(scale or 2),
                pad=int(border or 0),
                on_step=lambda step, total: progress((step, total), desc=mode.title),
            )
        logged.done(result, output=result.images[0])
    seed_note = f"seed {result.seed}" if result.seed is not None else "this provider takes no seed"
    width, height = result.images[0].size
    return result.images[0], f"{stats(result)} · {mode.title} · {width}x{height} · {seed_note}"


def _from_editor(editor: Any, mode: EditMode) -> tuple[Any, Any]:
    """(image, mask) from an ImageEditor value: the background, and for inpainting the drawn strokes
    (any colour) as white on black."""
    from PIL import Image as PILImage

    value: dict[str, Any] = editor if isinstance(editor, dict) else {"background": editor}
    image = value.get("background") or value.get("composite")
    if image is None:
        raise BadInput("Upload or paste an image to edit first.")
    if mode is not EditMode.INPAINT:
        return image, None
    layers = [layer for layer in value.get("layers") or [] if layer is not None]
    if not layers:
        raise BadInput("Inpainting repaints what you draw: paint over the area to change with the brush.")
    strokes = layers[0]
    if not isinstance(strokes, PILImage.Image):
        raise BadInput("The drawn mask could not be read: draw it again.")
    alpha = strokes.convert("RGBA").getchannel("A")
    return image, alpha.point(lambda a: 255 if a > 0 else 0)


def edit_modes_of(provider: object) -> dict:
    """The mode choices the chosen provider offers (all modes listed; the others say who can)."""
    served = registry.edit_modes(str(provider or ""))
    choices = [(m.title + ("" if m in served else " (not with this provider)"), m.value) for m in EditMode]
    return gr.update(choices=choices)


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
        gr.skip(),  # the edit image: not kept in the log as an editor value
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
    with gr.Accordion("Edit an image: image to image, inpaint, outpaint, upscale", open=False), gr.Row():
        with gr.Column():
            editor = gr.ImageEditor(
                label="Image (for inpainting, paint over what to change)",
                type="pil",
                layers=True,
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                eraser=gr.Eraser(),
                transforms=(),
            )
        with gr.Column():
            mode = gr.Radio([(m.title, m.value) for m in EditMode], value=EditMode.IMAGE_TO_IMAGE.value, label="Mode")
            strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength (image to image)")
            with gr.Row():
                scale = gr.Radio([2, 4], value=2, label="Upscale by")
                border = gr.Number(value=128, precision=0, label="Border to paint, pixels (outpaint)")
            edit_button = gr.Button("Edit", variant="primary")
    edit_button.click(
        edit,
        [prompt, editor, mode, strength, scale, border, steps, guidance, seed, *picker.inputs],
        [image, info],
        api_name="edit",
        concurrency_limit=16,
    )
    picker.provider.change(edit_modes_of, picker.provider, mode, api_visibility="private")
    picker_ui.attach_refresh(root, picker)
    return [prompt, negative, steps, width, height, guidance, seed, picker.provider, editor]


if __name__ == "__main__":
    standalone.main(__name__)
