"""fm-gallery: one tab per demo, every demo routed through the adapter layer.

`demo` is what Hugging Face Spaces serves; `python app.py` serves it on 127.0.0.1:7860
(`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` override host and port). Nothing heavy is imported
or loaded here: models load on first use; the SDKs of vendors whose keys are set load in a
background thread once the page is built (`adapters.registry.warm_up`), others on first call.
"""

from __future__ import annotations

import sys

from demos.widgets.body_limit import MB, BodyLimit, body_caps

MAX_FILE_MB = 25  # per uploaded file: Gradio's max_file_size (checked as the file streams in)
MAX_UPLOAD = f"{MAX_FILE_MB}mb"


def largest_body() -> str:
    """The largest request body the app accepts (an upload of several files): nginx's cap too."""
    return f"{body_caps(MAX_FILE_MB).upload // MB}mb"


if __name__ == "__main__":  # `--workers N`: the launcher, which serves nothing itself, skips Gradio's import
    from launcher import cli

    if cli.workers_wanted(sys.argv[1:]) is not None:
        sys.exit(cli.main(sys.argv[1:], largest_body()))

import logging
import os

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

import compat
from adapters import inputs, registry
from adapters.keys import install_log_redaction
from demos import (
    captioning,
    collections,
    compare,
    completion,
    embeddings_search,
    evaluate,
    history,
    image_generation,
    zero_shot,
)
from demos.widgets import guard
from demos.widgets.standalone import Tab
from demos.widgets.unknown_sessions import UnknownSessions
from demos.widgets.upload_budget import UploadBudget
from demos.widgets.visitor_cookie import VisitorCookie
from services import public, visitors

# each is a `demos.widgets.standalone.Tab`; History comes last
TABS: tuple[Tab, ...] = (  # type: ignore[assignment]
    completion,
    zero_shot,
    captioning,
    image_generation,
    embeddings_search,
    collections,
    compare,
    evaluate,
)  # type: ignore[assignment]
MAX_THREADS = 64  # Gradio's default 40 worker threads would cap concurrent streams below the chat limit
PUBLIC_SESSIONS = 1000
DELETE_CACHE = (900, 3600)  # every 15 minutes, remove uploads and outputs older than an hour
HEADER = """# fm-gallery
Try foundation models side by side: on this machine or at hosted vendors, through one adapter layer."""


def limit_image_decoding() -> None:
    """No code in the process decodes more pixels than the app accepts (Pillow refuses at twice
    its limit and warns above it; `adapters.inputs` refuses above it)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = inputs.MAX_IMAGE_PIXELS


def build() -> gr.Blocks:
    limit_image_decoding()
    # Gradio recomputes its monitoring summary in pandas after every event, over up to 10,000 of
    # them, on the event loop's thread pool: once every few hundred events is enough.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "500")
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
        # "Open in" from a collection's hits: each tab's image input (image generation: its edit image)
        image_inputs = {
            "zero-shot": reopeners["zero-shot"][1][0],
            "captioning": reopeners["captioning"][1][0],
            "image-generation": reopeners["image-generation"][1][-1],
        }
        collections.attach(blocks.fmg_send, tabs, image_inputs)
    # Local models serialise themselves on one device slot (adapters.local); vendor calls and
    # queued local calls may wait concurrently, up to each listener's concurrency_limit.
    blocks.queue(max_size=256, default_concurrency_limit=16)
    guard.install(blocks)
    compat.install()  # patches to Gradio, each for the versions it was written for (compat.py)
    registry.warm_up()  # usable vendors' SDKs and clients, in a daemon thread: no first call waits for them
    return blocks


demo = build()


def launch_options() -> dict:
    """How `python app.py` launches `demo` (read when called, so a benchmark can vary them)."""
    options = {"max_file_size": MAX_UPLOAD, "show_error": False, "max_threads": MAX_THREADS}
    # request bodies are capped before Gradio parses them (a Space has no proxy in front),
    # and a GET of an unknown queue session costs no traceback (`unknown_sessions`)
    middleware = [
        Middleware(BodyLimit, caps=body_caps(MAX_FILE_MB)),
        Middleware(UploadBudget, folder=gradio_utils.get_upload_folder),  # public mode: bytes per visitor
        Middleware(UnknownSessions, known=guard.known_session(demo)),
        Middleware(VisitorCookie),  # public mode: who is not logged in is their browser, not their address
    ]
    options["app_kwargs"] = {"middleware": middleware}
    if public.enabled():  # each session keeps a copy of the page's state (~0.5 MB): keep fewer
        options["state_session_capacity"] = PUBLIC_SESSIONS
    return options


def main(argv: list[str] | None = None) -> None:
    from launcher import cli

    argv = sys.argv[1:] if argv is None else argv
    cli.parser().parse_args(argv)  # --help; unknown arguments refused
    if cli.workers_wanted(argv) is not None:  # `--workers N`: N of these processes behind nginx
        sys.exit(cli.main(argv, largest_body()))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    demo.launch(**launch_options())


if __name__ == "__main__":
    main()
