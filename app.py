"""fm-gallery: one tab per demo, every demo routed through the adapter layer.

`demo` is what Hugging Face Spaces serves; `python app.py` serves it on 127.0.0.1:7860
(`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` override host and port). Nothing heavy is imported
or loaded here: models load on first use, vendor SDKs on first call.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import os
import sys

import gradio as gr

import compat
from adapters import inputs
from adapters.keys import install_log_redaction
from demos import captioning, compare, completion, embeddings_search, history, image_generation, zero_shot
from demos.widgets import guard
from services import public, visitors

# each has TAB, TITLE, layout(root) and reopen(run); History comes last
TABS = (completion, zero_shot, captioning, image_generation, embeddings_search, compare)
MAX_UPLOAD = "25mb"
MAX_THREADS = 64  # Gradio's default 40 worker threads would cap concurrent streams below the chat limit
DELETE_CACHE = (900, 3600)  # every 15 minutes, remove uploads and outputs older than an hour
HEADER = """# fm-gallery
Try foundation models side by side: on this machine or at hosted vendors, through one adapter layer."""


def spare_gradio_a_failed_import() -> None:
    """Gradio imports matplotlib around every event, on the server's event loop, to set its
    backend. Where matplotlib is not installed, each of those imports fails only after searching
    sys.path again, and each stat of that search lets the worker threads take the GIL from the
    loop: with 50 chats streaming, a fifth of the loop's sampled time was in that search. Marked
    missing once, the import fails at once; it is not installed, so nothing can miss it."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None


def spare_gradio_signature_lookups(blocks: gr.Blocks) -> None:
    """Gradio describes every component of the page to each new session (and to each page load)
    through `Block.get_config`, which calls `inspect.signature(cls.__init__)` for every block,
    every time: 57% of the 38 ms a new session cost this app's 269 blocks. A function's
    `__signature__` is where `inspect.signature` looks first (PEP 362), so each component class's
    `__init__` is given the signature it has, computed once: the same answer, 2.5x sooner."""
    for cls in {type(block) for block in blocks.blocks.values()}:
        for ancestor in cls.__mro__:
            init = ancestor.__dict__.get("__init__")
            if inspect.isfunction(init) and "__signature__" not in init.__dict__:
                with contextlib.suppress(TypeError, ValueError):
                    init.__signature__ = inspect.signature(init)


def limit_image_decoding() -> None:
    """No code in the process decodes more pixels than the app accepts (Pillow refuses at twice
    its limit and warns above it; `adapters.inputs` refuses above it)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = inputs.MAX_IMAGE_PIXELS


def build() -> gr.Blocks:
    limit_image_decoding()
    visitors.trust_proxies()
    # One Blocks for the whole page: Gradio builds a server app for every Blocks it creates, so a
    # Blocks per tab would cost about a fifth of the start time.
    with gr.Blocks(title="fm-gallery", delete_cache=DELETE_CACHE) as blocks:
        gr.Markdown(HEADER)
        if public.enabled() and os.environ.get("OAUTH_CLIENT_ID"):  # Spaces' OAuth: a login is a visitor
            gr.LoginButton()
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
    guard.install(blocks)
    compat.install()  # patches to Gradio, each for the versions it was written for (compat.py)
    spare_gradio_signature_lookups(blocks)
    return blocks


spare_gradio_a_failed_import()
demo = build()


def launch_options() -> dict:
    """How `python app.py` launches `demo` (read when called, so a benchmark can vary them)."""
    return {"max_file_size": MAX_UPLOAD, "show_error": False, "max_threads": MAX_THREADS}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    demo.launch(**launch_options())


if __name__ == "__main__":
    main()
