"""fm-gallery: one tab per demo, every demo routed through the adapter layer.

`demo` is what Hugging Face Spaces serves; `python app.py` serves it on 127.0.0.1:7860
(`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` override host and port). Nothing heavy is imported
or loaded here: models load on first use, vendor SDKs on first call.
"""

from __future__ import annotations

import logging

import gradio as gr

from adapters.keys import install_log_redaction
from demos import captioning, compare, completion, embeddings_search, history, image_generation, zero_shot

# each has TAB, TITLE, layout(root) and reopen(run); History comes last
TABS = (completion, zero_shot, captioning, image_generation, embeddings_search, compare)
MAX_UPLOAD = "25mb"
MAX_THREADS = 64  # Gradio's default 40 worker threads would cap concurrent streams below the chat limit
HEADER = """# fm-gallery
Try foundation models side by side: on this machine or at hosted vendors, through one adapter layer."""


def build() -> gr.Blocks:
    # One Blocks for the whole page: Gradio builds a server app for every Blocks it creates, so a
    # Blocks per tab would cost about a fifth of the start time.
    with gr.Blocks(title="fm-gallery") as blocks:
        gr.Markdown(HEADER)
        reopeners = {}
        with gr.Tabs() as tabs:  # tab ids let History switch to the tab a run came from
            for tab in TABS:
                with gr.Tab(tab.TITLE, id=tab.TAB):
                    reopeners[tab.TAB] = (tab.reopen, tab.layout(blocks))
            with gr.Tab(history.TITLE, id=history.TAB) as history_tab:
                history_page = history.layout(blocks)
        history.attach(history_page, tabs, history_tab, reopeners)
    # Local models serialise themselves on one device slot (adapters.local); vendor calls and
    # queued local calls may wait concurrently, up to each listener's concurrency_limit.
    blocks.queue(max_size=256, default_concurrency_limit=16)
    return blocks


demo = build()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    demo.launch(max_file_size=MAX_UPLOAD, show_error=False, max_threads=MAX_THREADS)


if __name__ == "__main__":
    main()
