"""Uploaded files as a collection's sources: a text file cut into passages, an image as one item."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters import inputs
from adapters.errors import BadInput
from services.collections.store import Prepared, file_hash
from services.search import corpus

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def prepare(kind: str, files: Sequence[Any]) -> list[Prepared]:
    """Each uploaded file read, checked and cut into items, in order; one name may come once."""
    paths = [_path(f) for f in files or ()]
    if not paths:
        raise BadInput(
            "No files were given: upload .txt, .md or .csv files"
            if kind == "text"
            else "No files were given: upload PNG, JPEG, WebP or GIF images."
        )
    names = [p.name for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadInput(f"Two files are named {twice[0]!r}: a collection keeps one file per name, rename one.")
    return [_text(p) if kind == "text" else _image(p) for p in paths]


def _path(f: Any) -> Path:
    """The uploaded file's path, from a path or a Gradio file object (as `corpus.read_sources` reads them)."""
    raw = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None) or getattr(f, "path", None)
    if not raw:
        raise BadInput("A file could not be read: upload it again.")
    return Path(os.fspath(raw))


def _text(path: Path) -> Prepared:
    read = corpus.read_sources(None, [str(path)])  # its checks: suffix, size, binary, encoding
    passages = corpus.chunk(read)
    return Prepared(path.name, path, file_hash(path), tuple(p.text for p in passages))


def _image(path: Path) -> Prepared:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadInput(f"'{path.name}' is not an image this collection can hold: upload PNG, JPEG, WebP or GIF files.")
    inputs.load_image(str(path)).close()  # decodes it once: size, pixel limits, corruption
    return Prepared(path.name, path, file_hash(path), ())
