"""Where collections live and what they may be called.

`<root>/<name>/` is one collection's folder: its metadata database (`metadata`), its vectors
(`files`, for the embedded backend), `images/` (an image collection's stored files) and
`writer.lock` (`lock`). The root is `FMG_COLLECTIONS`, else `collections/` beside the run log,
else `~/.fm-gallery/collections`; all the app's workers on one machine share it.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from adapters.errors import BadInput
from services import run_log

ENV = "FMG_COLLECTIONS"
DEFAULT_ROOT = Path("~/.fm-gallery/collections")
DB = "collection.sqlite3"
LOCK = "writer.lock"
IMAGES = "images"
KINDS = ("text", "image")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")
MAX_NAME_CHARS = 64
STALE_S = 3600.0  # a hidden `.creating-*` folder this old belongs to a killed process


def root() -> Path:
    """`FMG_COLLECTIONS`, else `collections/` beside the run log, else `~/.fm-gallery/collections`;
    read at each call, like the run log's location."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    log = run_log.location()
    return log.with_name("collections") if log is not None else DEFAULT_ROOT.expanduser()


def check_name(name: object) -> str:
    """A collection name a folder may carry: no path separator, no leading dot, 64 characters at most."""
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise BadInput("Name the collection (letters, digits, spaces, '.', '_' or '-').")
    if len(text) > MAX_NAME_CHARS or not NAME.fullmatch(text) or text.endswith("."):
        shown = repr(text[:40] + ("…" if len(text) > 40 else ""))
        raise BadInput(
            f"{shown} cannot name a collection: use at most {MAX_NAME_CHARS} letters, digits, spaces, '.', '_' "
            "or '-', starting with a letter or digit."
        )
    return text


def folder(name: str) -> Path:
    return root() / check_name(name)


def missing(name: str) -> BadInput:
    return BadInput(f"There is no collection named '{name}': create it first, or pick one that exists.")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
