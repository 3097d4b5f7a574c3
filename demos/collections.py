"""Collections: index text or images once, keep them on disk, search them by text, by example image,
or by embedding arithmetic ("image A + text B - text C").

Text collections embed with an embeddings provider; image collections with a zero-shot provider
that hands out embeddings (local CLIP, Cohere), whose text and image vectors share one space, so
a sentence finds pictures. A collection remembers its embedder and is searched only with it.
On a public Space only the owner (an admin) builds and changes collections; visitors search them.

API: `/collection_search(name, query, image, plus, minus, k)` returns the hits.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gradio as gr
import numpy as np

from adapters import registry
from adapters.errors import BadInput
from adapters.tasks import Embedder, ZeroShotClassifier
from adapters.types import Task
from demos.widgets import standalone
from demos.widgets.report import shows_errors
from services import access, public, visitors
from services import collections as store
from services.collections import archives
from services.evaluation import captioned, image_sets
from services.visitors import Visitor

TAB = "collections"
TITLE = "Collections"
HIT_COLUMNS = ["rank", "score", "source", "passage"]
TASK_OF = {"text": Task.EMBEDDINGS, "image": Task.ZERO_SHOT}


def _owner_only(visitor: Visitor) -> None:
    if public.enabled() and not visitor.admin:
        raise BadInput("On this public Space only its owner builds and changes collections: search the ones listed.")


def _adapter(kind: str, target: str, api_key: str | None = None) -> Any:
    """The embedder for a collection kind: an embeddings provider, or a zero-shot one that embeds images."""
    provider, _, model = str(target or "").strip().partition(":")
    task = TASK_OF[kind]
    known = registry.providers().get(provider.strip())
    if known is not None and model.strip() and known.model(task) == model.strip():
        model = ""  # the provider's configured model: never send a configured path back through the boundary
    adapter = access.adapter(task, provider.strip(), model.strip() or None, api_key)
    if kind == "image" and not cast(ZeroShotClassifier, adapter).embeds:
        raise BadInput(
            f"{adapter.provider} has no image embeddings: build image collections with local CLIP or Cohere."
        )
    return adapter


def _embed_fn(kind: str, adapter: Any, visitor: Visitor):
    def embed(items: list[str]) -> Any:
        if kind == "text":
            with access.call(visitor, adapter, access.Work(input_chars=sum(map(len, items)))):
                return cast(Embedder, adapter).embed(items, kind="document")
        with access.call(visitor, adapter, access.Work(images_in=len(items))):
            return cast(ZeroShotClassifier, adapter).embed_images(items)

    return embed


def _choices() -> dict:
    return gr.update(choices=store.names())


def _describe(name: str | None) -> str:
    if not name:
        return "No collection chosen: create one, or pick one from the list."
    info = store.open(name)
    files = ", ".join(info.sources[:12]) + (" …" if len(info.sources) > 12 else "")
    return (
        f"**{info.name}**: {info.kind}, {info.items:,} items from {len(info.sources)} files, embedded by "
        f"`{info.embedder}`, search: {info.search}. Files: {files or 'none yet'}"
    )


@shows_errors
def create(name, kind, embedder, api_key="", request: gr.Request | None = None):
    """A new empty collection, with the embedder that will build and search it."""
    visitor = visitors.current(request)
    _owner_only(visitor)
    if kind not in TASK_OF:
        raise BadInput("A collection holds text or images.")
    adapter = _adapter(kind, embedder, access.session_key(api_key))
    info = store.create(str(name or "").strip(), kind, f"{adapter.provider}:{adapter.model}")
    return gr.update(choices=store.names(), value=info.name), _describe(info.name)


@shows_errors
def add(name, files, api_key="", progress=gr.Progress(), request: gr.Request | None = None):  # noqa: B008
    """Embed and store the uploaded files (unchanged ones are skipped), with a progress bar."""
    visitor = visitors.current(request)
    _owner_only(visitor)
    info = store.open(_name(name))
    adapter = _adapter(info.kind, info.embedder, access.session_key(api_key))
    scratch = Path(tempfile.mkdtemp(prefix="fmg-unzipped-"))
    try:
        report = store.add(
            info.name,
            archives.expand(files or [], info.kind, scratch),  # a zip counts as the files it holds
            _embed_fn(info.kind, adapter, visitor),
            progress=lambda done, total: progress((done, max(total, 1)), desc="Embedding"),
            embedder_target=f"{adapter.provider}:{adapter.model}",
        )
    finally:
        archives.remove(scratch)
    said = f"Added {len(report.added)}, replaced {len(report.replaced)}, unchanged {len(report.unchanged)}: "
    return said + f"{report.items:,} items embedded.\n\n" + _describe(info.name), _sources(info.name)


@shows_errors
def add_samples(name, api_key="", progress=gr.Progress(), request: gr.Request | None = None):  # noqa: B008
    """Add the images scikit-image and scikit-learn ship (an image collection's built-in sample)."""
    folder = Path(tempfile.mkdtemp(prefix="fmg-samples-"))
    try:
        paths = []
        for sample in captioned.samples(size=512):
            path = folder / f"{sample.name}.png"
            sample.image.save(path)
            paths.append(str(path))
        digits = image_sets.digits(size=64, per_class=3)  # scikit-learn's handwritten digits
        for n, (image, label) in enumerate(zip(digits.images, digits.labels, strict=True)):
            path = folder / f"digit-{label}-{n}.png"
            image.save(path)
            paths.append(str(path))
        return add(name, paths, api_key, progress, request)
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


@shows_errors
def add_folder(name, folder, api_key="", progress=gr.Progress(), request: gr.Request | None = None):  # noqa: B008
    """Add the files of a server folder the owner allows (`FMG_COLLECTION_FOLDERS`)."""
    _owner_only(visitors.current(request))
    info = store.open(_name(name))
    return add(name, archives.folder_files(str(folder or ""), info.kind), api_key, progress, request)


@shows_errors
def remove(name, sources, request: gr.Request | None = None):
    """Remove files and their items."""
    _owner_only(visitors.current(request))
    removed = store.remove(_name(name), list(sources or []))
    return f"Removed {removed:,} items.\n\n" + _describe(name), _sources(name)


@shows_errors
def delete(name, request: gr.Request | None = None):
    _owner_only(visitors.current(request))
    store.delete(_name(name))
    return gr.update(choices=store.names(), value=None), f"Deleted {name}."


def _sources(name: str | None) -> dict:
    return gr.update(choices=list(store.open(name).sources) if name else [], value=[])


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadInput("Pick a collection first.")
    return name.strip()


@shows_errors
def search(name, query, image, plus, minus, k, api_key="", request: gr.Request | None = None):
    """Hits as (gallery, table): text finds passages or pictures; an example image finds similar ones;
    image + plus - minus moves the example's vector towards one text and away from another."""
    visitor = visitors.current(request)
    info = store.open(_name(name))
    adapter = _adapter(info.kind, info.embedder, access.session_key(api_key))
    vector = _query_vector(info.kind, adapter, query, image, plus, minus, visitor)
    hits = store.search(info.name, vector, int(k or 8), f"{adapter.provider}:{adapter.model}")
    # images are handed over decoded: Gradio serves files only from its own folders, never the data folder
    found = [(_opened(info.name, h.image), h) for h in hits if h.image]
    gallery = [(image, f"{h.score:.3f} · {h.source}") for image, h in found if image is not None]
    table = [[n + 1, round(h.score, 4), h.source, h.text or ""] for n, h in enumerate(hits)]
    return gallery, table, [image for image, _ in gallery]


def _opened(name: str, relative: str | None) -> Any:
    from PIL import Image as PILImage

    path = store.image_file(name, relative)
    if path is None:
        return None
    with PILImage.open(path) as image:
        return image.convert("RGB")


def send(found: list | None, index: int | None, where: str) -> list:
    """The picked hit's image for the tab `where` names, and the switch to that tab (see `attach`)."""
    if not found or index is None or not 0 <= index < len(found):
        raise gr.Error("Pick an image among the results first.")
    image = found[index]
    values = {TAB_OF[w]: gr.skip() for w in TAB_OF}
    values[TAB_OF[where]] = {"background": image, "layers": [], "composite": image} if where == GENERATE else image
    return [gr.Tabs(selected=TAB_OF[where]), *values.values()]


GENERATE = "image generation (to edit it)"
TAB_OF = {"zero-shot classification": "zero-shot", "captioning": "captioning", GENERATE: "image-generation"}


@dataclass
class Send:
    """The components `attach` wires to other tabs: what was found, which one is picked, where to."""

    found: gr.State
    picked: gr.State
    where: gr.Radio
    button: gr.Button


def attach(send_to: Send, tabs: gr.Tabs, targets: dict[str, gr.components.Component]) -> None:
    """ "Open in": put the picked image into another tab's image input and switch to it.
    `targets` maps a tab id ("zero-shot", "captioning", "image-generation") to that input."""
    outputs = [tabs, *(targets[TAB_OF[w]] for w in TAB_OF)]
    send_to.button.click(send, [send_to.found, send_to.picked, send_to.where], outputs, api_visibility="private")


def _query_vector(kind: str, adapter: Any, query: Any, image: Any, plus: Any, minus: Any, visitor: Visitor) -> Any:
    texts = {
        name: str(v).strip() for name, v in (("query", query), ("plus", plus), ("minus", minus)) if v and str(v).strip()
    }
    if kind == "text":
        if image is not None or "plus" in texts or "minus" in texts:
            raise BadInput("A text collection is searched with a sentence: example images and arithmetic need images.")
        if "query" not in texts:
            raise BadInput("Type what you are looking for.")
        with access.call(visitor, adapter, access.Work(input_chars=len(texts["query"]))):
            return adapter.embed([texts["query"]], kind="query").vectors[0]
    if image is None and "query" not in texts:
        raise BadInput("Type what you are looking for, or give an example image.")
    parts: list[Any] = []
    if image is not None:
        with access.call(visitor, adapter, access.Work(images_in=1)):
            parts.append(adapter.embed_images([image]).vectors[0])
    words = [texts[n] for n in ("query", "plus", "minus") if n in texts]
    if words:
        with access.call(visitor, adapter, access.Work(input_chars=sum(map(len, words)))):
            vectors = dict(zip(words, adapter.embed_labels(list(dict.fromkeys(words))).vectors, strict=False))
        parts += [vectors[texts[n]] for n in ("query", "plus") if n in texts]
        if "minus" in texts:
            parts.append(-vectors[texts["minus"]])
    total = np.sum(parts, axis=0)
    norm = float(np.linalg.norm(total))
    if norm == 0:
        raise BadInput("The query vectors cancel out: change the texts.")
    return total / norm


def layout(root: gr.Blocks) -> list:
    """This tab's components and events inside the open `root`; returns no reopen inputs."""
    gr.Markdown(
        "A collection is embedded once and kept on disk. CLIP puts images and sentences in one space, so a "
        "sentence finds pictures and a picture finds similar ones; *image + text - text* moves a query in that space."
    )
    with gr.Row():
        name = gr.Dropdown([], label="Collection", allow_custom_value=True, scale=3)  # names checked by the service
        refresh = gr.Button("Refresh", scale=1)
    about = gr.Markdown()
    with gr.Accordion("Build (the owner)", open=False):
        with gr.Row():
            new_name = gr.Textbox(label="New collection name")
            kind = gr.Radio(["text", "image"], value="image", label="Holds")
            embedder = gr.Textbox("local", label="Embedder: provider or provider:model")
            create_button = gr.Button("Create")
        files = gr.File(
            label="Files to add (.txt/.md/.csv, images, or a .zip of them)", file_count="multiple", type="filepath"
        )
        with gr.Row():
            add_button = gr.Button("Add files", variant="primary")
            samples_button = gr.Button("Add the sample images (scikit-image, scikit-learn digits)")
        with gr.Row(visible=bool(archives.folders())):
            folder = gr.Dropdown(archives.folders(), label=f"A server folder ({archives.FOLDERS_VAR})", scale=3)
            folder_button = gr.Button("Add the folder", scale=1)
        sources = gr.CheckboxGroup([], label="Files in the collection")
        with gr.Row():
            remove_button = gr.Button("Remove the checked files")
            delete_button = gr.Button("Delete the collection", variant="stop")
        api_key = gr.Textbox(label="API key for this session (optional)", type="password")
    with gr.Row():
        with gr.Column():
            query = gr.Textbox(label="Search for", placeholder="a cup of coffee")
            image = gr.Image(label="…or like this image", type="pil", height=200)
            with gr.Row():
                plus = gr.Textbox(label="+ text", placeholder="at night")
                minus = gr.Textbox(label="- text", placeholder="daytime")
            k = gr.Slider(1, 50, value=8, step=1, label="Results")
            search_button = gr.Button("Search", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="Images found (click one to open it in another tab)", columns=4, height=420)
            with gr.Row():
                where = gr.Radio(list(TAB_OF), value=next(iter(TAB_OF)), label="Open the picked image in", scale=3)
                open_button = gr.Button("Open", scale=1)
            hits = gr.Dataframe(headers=HIT_COLUMNS, label="Hits", interactive=False, wrap=True)
    found, picked = gr.State([]), gr.State(None)
    root.load(_choices, None, name, api_visibility="private")
    refresh.click(_choices, None, name, api_visibility="private")
    name.change(shows_errors(_describe), name, about, api_visibility="private").then(
        shows_errors(_sources), name, sources, api_visibility="private"
    )
    create_button.click(create, [new_name, kind, embedder, api_key], [name, about], api_name="collection_create")
    add_button.click(add, [name, files, api_key], [about, sources], api_name="collection_add", concurrency_limit=2)
    samples_button.click(add_samples, [name, api_key], [about, sources], api_visibility="private", concurrency_limit=2)
    folder_button.click(
        add_folder, [name, folder, api_key], [about, sources], api_visibility="private", concurrency_limit=2
    )
    remove_button.click(remove, [name, sources], [about, sources], api_name="collection_remove")
    delete_button.click(delete, name, [name, about], api_name="collection_delete")
    gr.on(
        [search_button.click, query.submit],
        search,
        [name, query, image, plus, minus, k, api_key],
        [gallery, hits, found],
        api_name="collection_search",
        concurrency_limit=16,
    )
    gallery.select(_picked, None, picked, api_visibility="private")
    root.fmg_send = Send(found, picked, where, open_button)  # type: ignore[attr-defined]  # app.py wires it
    return []


def _picked(evt: gr.SelectData) -> int:
    return int(evt.index) if isinstance(evt.index, int) else gr.skip()


def reopen(run: dict[str, Any]) -> list:
    return []


if __name__ == "__main__":
    standalone.main(__name__)
