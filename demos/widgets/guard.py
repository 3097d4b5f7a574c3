"""Gradio's side of the trust boundary (`services.boundary`), installed on the app's Blocks:

- before Gradio preprocesses an event's inputs (where it would copy a server file, fetch a URL or
  decode a `data:` URI), every file reference must be an upload of this page or an example;
- in public mode, a queue join is refused while the visitor already has `events_per_visitor`
  events waiting or running, so no client can fill the queue for everyone else.
"""

from __future__ import annotations

import functools
import logging

import gradio as gr
from gradio import utils as gradio_utils
from gradio.components.image_editor import EditorData
from gradio.data_classes import FileData, ImageData, ListFiles

from adapters.errors import BadInput
from demos.widgets import examples
from services import boundary, public, quotas, visitors

log = logging.getLogger("fm_gallery.guard")


def install(blocks: gr.Blocks) -> None:
    """Wrap this Blocks' preprocessing and its queue's admission (this instance only)."""
    if getattr(blocks, "_fmg_guarded", False):
        return
    # monkey patches on this Gradio instance (a marker and two wrapped methods)
    blocks._fmg_guarded = True  # type: ignore[attr-defined]  # our marker, not a Gradio attribute
    blocks.preprocess_data = _checked_preprocess(blocks, blocks.preprocess_data)  # type: ignore[method-assign]  # patched
    queue = blocks._queue
    queue.push = _fair_push(queue, queue.push)  # type: ignore[method-assign]  # patched on this instance


def upload_roots(blocks: gr.Blocks) -> list[str]:
    return [gradio_utils.get_upload_folder(), str(blocks.GRADIO_CACHE), str(examples.example_dir())]


def _file_positions(blocks: gr.Blocks, block_fn) -> list[int]:
    out = []
    for i, block in enumerate(block_fn.inputs):
        model = getattr(block, "data_model", None)
        # gr.Image's ImageData is not a FileData subclass, yet it is a file reference all the same;
        # an ImageEditor's EditorData holds them (background, layers): a bare string is no upload either
        if isinstance(model, type) and (
            issubclass(model, (FileData, ImageData, ListFiles, EditorData))
            or "path" in getattr(model, "model_fields", {})
        ):
            out.append(i)
    return out


def _checked_preprocess(blocks: gr.Blocks, original):
    @functools.wraps(original)
    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        try:
            boundary.check_files(inputs or [], upload_roots(blocks), _file_positions(blocks, block_fn))
        except BadInput as err:
            raise gr.Error(str(err), print_exception=False) from None
        return await original(block_fn, inputs, state, explicit_call)

    return preprocess_data


def _fair_push(queue, original):
    @functools.wraps(original)
    async def push(body, request, username):
        if public.enabled():
            limit = public.limits().events_per_visitor
            who = visitors.of(request, username).quota_id
            mine = sum(
                1
                for event in list(queue.event_ids_to_events.values())
                if visitors.of(event.request, event.username).quota_id == who
            )
            if mine >= limit:
                return (
                    False,
                    f"You already have {mine} requests waiting or running, the most this public Space "
                    "takes from one visitor at a time: wait for them to finish.",
                    "queue_full",
                )
            too_many = quotas.quotas().join(visitors.of(request, username))
            if too_many:  # refused before Gradio makes an event (and a session) for it
                return (False, too_many, "queue_full")
        return await original(body=body, request=request, username=username)

    return push


def known_session(blocks: gr.Blocks):
    """A test of whether this Blocks' queue holds a session (for `unknown_sessions`)."""

    def known(session_hash: str) -> bool:
        return session_hash in blocks._queue.pending_messages_per_session

    return known
