"""An image input that hands the handler the uploaded file's path without decoding it.

`gr.Image` opens every upload with PIL before the handler runs, so a corrupt file or a
decompression bomb fails inside Gradio with a generic error. This template of `gr.Image` (same
widget in the page) passes the path through; `adapters.inputs.load_image` then checks size and
pixels before decoding and answers with a clear message.
"""

from __future__ import annotations

import gradio as gr


class ImageUpload(gr.Image):
    is_template = True  # rendered by the page as a plain gr.Image

    def __init__(self, **kwargs):
        kwargs.setdefault("type", "filepath")
        kwargs.setdefault("sources", ["upload", "clipboard"])
        super().__init__(**kwargs)

    def get_config(self, cls=None):
        # Gradio sends the page the props named in `cls.__init__`'s signature; ours is `**kwargs`,
        # which would send none (no `sources`, ...), and the page fails to draw the whole tab.
        return super().get_config(cls or gr.Image)

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 - any decoding failure means an unreadable upload
            raise gr.Error("The image could not be read: upload a PNG, JPEG, WebP or GIF file.") from None
