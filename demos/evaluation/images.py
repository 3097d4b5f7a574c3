"""Evaluate, images: zero-shot accuracy per target, and a linear probe against zero-shot.

The built-in set is scikit-learn's handwritten digits (shipped with the package, upscaled); a zip
of labelled images (subfolder names or a labels.csv) is the user's own. The probe needs a target
whose zero-shot works by embeddings: local CLIP or Cohere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from demos.widgets.report import shows_errors
from services import boundary, heavy, public, quotas, visitors
from services.evaluation import caption_eval, captioned, generation_eval, image_eval, image_sets
from services.evaluation.image_sets import ImageSet

DIGITS = "handwritten digits (scikit-learn)"
UPLOAD = "(uploaded zip)"
PER_CLASS = 20  # digits per class: 200 images, 100 held out for testing


def _image_set(name: str, upload: str | None, per_class: float | None, visitor: visitors.Visitor) -> ImageSet:
    if name == DIGITS:
        return image_sets.digits(size=64, per_class=int(per_class or PER_CLASS))
    if not upload:
        from adapters.errors import BadInput

        raise BadInput("Upload a zip of labelled images (one folder per label), or pick the digits set.")
    path = Path(str(upload))
    with path.open("rb") as f:
        data = f.read(image_sets.MAX_ZIP_BYTES + 1)
    _check_public_count(data)
    return image_sets.from_zip(data, name=path.name, admit=lambda pixels: quotas.decode(visitor, pixels))


def _check_public_count(data: bytes) -> None:
    """On a public Space, refuse a zip with more images than one evaluation may score, before any is decoded."""
    if not public.enabled():
        return
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            images = sum(1 for n in archive.namelist() if n.lower().endswith(image_sets.IMAGE_EXTENSIONS))
    except zipfile.BadZipFile:
        return  # from_zip says what is wrong with it
    boundary.capped("The images in one evaluation", images, "evaluation_calls")


def _targets(text: str) -> list[str]:
    return [line.strip() for line in str(text or "").replace(",", "\n").splitlines() if line.strip()]


@shows_errors
def zero_shot(name, upload, per_class, targets, request: gr.Request | None = None):
    """Accuracy per target on the set, with confusion tables."""
    visitor = visitors.current(request)
    names = image_eval.check_first(_targets(targets), visitor)  # before the set is read or decoded
    with heavy.slot(visitor, "image evaluation"):
        image_set = _image_set(name, upload, per_class, visitor)
        rows = image_eval.zero_shot(image_set, names, visitor)
    tables = []
    for row in rows:
        if row.error or not row.confusion:
            continue
        header = "| actual \\ said | " + " | ".join(image_set.label_names) + " |"
        rule = "|---" * (len(image_set.label_names) + 1) + "|"
        body = "\n".join("| " + " | ".join(str(v) for v in line) + " |" for line in row.confusion)
        tables.append(f"**{row.target}**\n\n{header}\n{rule}\n{body}")
    classes = len(image_set.label_names)
    summary = f"{len(image_set.images)} images, {classes} labels, chance {1 / classes:.2f}."
    return image_eval.zero_shot_table(rows), "\n\n".join([summary, *tables])


@shows_errors
def probe(name, upload, per_class, target, repeats, request: gr.Request | None = None):
    """The probe's accuracy per shots per class, next to zero-shot from the same vectors."""
    visitor = visitors.current(request)
    first = image_eval.check_first((_targets(target) or ["local"])[:1], visitor)[0]
    with heavy.slot(visitor, "image evaluation"):
        image_set = _image_set(name, upload, per_class, visitor)
        curve, cost = image_eval.probe(image_set, first, repeats=int(repeats or 3), visitor=visitor)
    points = _plot(curve)
    notes = " ".join(curve.notes)
    summary = (
        f"{cost['target']}: {curve.images} images embedded in {cost['seconds']:.1f} s; "
        f"{curve.test_images} held out for testing, {curve.repeats} draws of shots per point. {notes}"
    )
    return image_eval.probe_table(curve), points, summary


def _plot(curve: Any) -> Any:
    import pandas as pd

    rows = [{"shots per class": p.k, "accuracy": p.mean, "method": "linear probe"} for p in curve.points]
    if curve.zero_shot is not None:
        rows += [{"shots per class": p.k, "accuracy": curve.zero_shot, "method": "zero-shot"} for p in curve.points]
    rows += [{"shots per class": p.k, "accuracy": curve.chance, "method": "chance"} for p in curve.points]
    return pd.DataFrame(rows)


@shows_errors
def captions(targets, embedder, clip, request: gr.Request | None = None):
    """Each captioner on scikit-image's samples, scored against the reference captions."""
    samples = captioned.samples()
    rows = caption_eval.run(
        samples,
        _targets(targets),
        (embedder or "local").strip(),
        (clip or "").strip() or None,
        visitors.current(request),
    )
    import pandas as pd

    captioners = [r for r in rows if r.target != caption_eval.REFERENCE]
    said = pd.DataFrame(
        [
            [sample.name, sample.caption, *[(r.captions[i] if i < len(r.captions) else None) or "" for r in captioners]]
            for i, sample in enumerate(samples)
        ],
        columns=["image", "reference", *[r.target for r in captioners]],
    )
    return caption_eval.table(rows), said


@shows_errors
def generation(prompts, targets, clip, steps, request: gr.Request | None = None):
    """Each generator draws every prompt (seed 0); CLIPScore of prompt against image."""
    from adapters.types import ImageParams

    rows = generation_eval.run(
        str(prompts or "").splitlines(),
        _targets(targets),
        (clip or "local").strip(),
        ImageParams(steps=int(steps or 1), width=512, height=512, seed=0),
        visitors.current(request),
    )
    gallery = [(image, f"{row.target}") for row in rows for image in row.images]
    return generation_eval.table(rows), gallery


def layout() -> None:
    """The images section's components and events, inside the open Blocks."""
    gr.Markdown(
        "**Zero-shot** names each image's label from text alone. A **linear probe** instead learns from k "
        "labelled images per class on the model's image embeddings (the CLIP paper: zero-shot tends to be "
        "better, but not always). Both are scored on the same held-out images."
    )
    with gr.Row():
        with gr.Column():
            name = gr.Dropdown([DIGITS, UPLOAD], value=DIGITS, label="Image set")
            per_class = gr.Slider(4, 100, value=PER_CLASS, step=1, label="Digits per class")
            upload = gr.File(label="…or a zip: one folder per label", file_types=[".zip"], type="filepath")
        with gr.Column():
            targets = gr.Textbox("local", label="Zero-shot targets, one per line", lines=3)
            zero_button = gr.Button("Zero-shot accuracy", variant="primary")
        with gr.Column():
            probe_target = gr.Textbox("local", label="Probe target (local CLIP or cohere)")
            repeats = gr.Slider(1, 10, value=3, step=1, label="Draws of shots per point")
            probe_button = gr.Button("Linear probe vs zero-shot", variant="primary")
    zero_table = gr.Dataframe(headers=image_eval.ZERO_SHOT_COLUMNS, label="Zero-shot", interactive=False)
    zero_notes = gr.Markdown()
    probe_rows = gr.Dataframe(headers=image_eval.PROBE_COLUMNS, label="Linear probe", interactive=False)
    curve = gr.LinePlot(x="shots per class", y="accuracy", color="method", label="Accuracy against shots per class")
    probe_notes = gr.Markdown()
    with gr.Accordion("Captioning: similarity to reference captions, and CLIPScore", open=False):
        with gr.Row():
            caption_targets = gr.Textbox("local", label="Captioners, one per line", lines=2)
            caption_embedder = gr.Textbox("local", label="Embedder for similarity")
            caption_clip = gr.Textbox("local", label="Image-text model for CLIPScore (blank: none)")
            caption_button = gr.Button("Evaluate captions", variant="primary")
        caption_table = gr.Dataframe(headers=caption_eval.COLUMNS, interactive=False)
        caption_said = gr.Dataframe(label="What each captioner said", interactive=False, wrap=True)
    with gr.Accordion("Image generation: CLIPScore of prompt and image", open=False):
        with gr.Row():
            prompts = gr.Textbox("\n".join(generation_eval.PROMPTS), label="Prompts, one per line", lines=6)
            with gr.Column():
                generators = gr.Textbox("local", label="Generators, one per line", lines=2)
                generation_clip = gr.Textbox("local", label="Image-text model for CLIPScore")
                steps = gr.Slider(1, 8, value=1, step=1, label="Steps")
                generation_button = gr.Button("Evaluate generators", variant="primary")
        generation_table = gr.Dataframe(headers=generation_eval.COLUMNS, interactive=False)
        drawn = gr.Gallery(label="Drawn", columns=6, height=260)
    caption_button.click(
        captions, [caption_targets, caption_embedder, caption_clip], [caption_table, caption_said],
        api_name="evaluate_captions", concurrency_limit=2,
    )  # fmt: skip
    generation_button.click(
        generation, [prompts, generators, generation_clip, steps], [generation_table, drawn],
        api_name="evaluate_generation", concurrency_limit=2,
    )  # fmt: skip
    zero_button.click(
        zero_shot, [name, upload, per_class, targets], [zero_table, zero_notes], api_name="evaluate_zero_shot"
    )
    probe_button.click(
        probe,
        [name, upload, per_class, probe_target, repeats],
        [probe_rows, curve, probe_notes],
        api_name="evaluate_probe",
        concurrency_limit=2,
    )
