"""fm-gallery: one tab per demo, every demo routed through the adapter layer.

`demo` is what Hugging Face Spaces serves; `python app.py` serves it on 127.0.0.1:7860
(`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` override host and port). Nothing heavy is imported
or loaded here: models load on first use, vendor SDKs on first call.
"""

from __future__ import annotations

import logging

import gradio as gr

from adapters.keys import install_log_redaction
from demos import captioning, completion, embeddings_search, image_generation, zero_shot

TABS = (completion, zero_shot, captioning, image_generation, embeddings_search)
MAX_UPLOAD = "25mb"
HEADER = """# fm-gallery
Try foundation models side by side: on this machine or at hosted vendors, through one adapter layer."""


def build() -> gr.Blocks:
    tabs = [(tab.TITLE, tab.build()) for tab in TABS]  # built outside: a Blocks made inside renders twice
    with gr.Blocks(title="fm-gallery") as blocks:
        gr.Markdown(HEADER)
        for title, tab_blocks in tabs:
            with gr.Tab(title):
                tab_blocks.render()
    # Local models serialise themselves on one device slot (adapters.local); vendor calls and
    # queued local calls may wait concurrently, up to each listener's concurrency_limit.
    blocks.queue(max_size=256, default_concurrency_limit=16)
    return blocks


demo = build()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    demo.launch(max_file_size=MAX_UPLOAD, show_error=False)


if __name__ == "__main__":
    main()
