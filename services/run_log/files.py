"""The run log's files: images live as files in the log's folder, never in the database.

Generated images are `images/<run id>.png`, the user's own uploads `uploads/<content hash>.<ext>`
(Gradio would delete its upload files later); rows store only paths relative to that folder.
With `FMG_DATABASE_URL` the rows are shared by every worker, and the folder is shared by the
workers of one machine (point `FMG_RUN_LOG` of every worker at the same folder). Each file is
written to a temporary name and renamed, so a half-written PNG never exists under its final name;
the row that points at it is committed after the rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from services.run_log import image_budget
from services.run_log.schema import location

log = logging.getLogger("fm_gallery.run_log")

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the image size limit of adapters.inputs
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})


def resolve(relative: str | None) -> Path | None:
    """The file a stored relative path names, if it exists inside the log folder (never outside)."""
    path = location()
    if path is None or not relative:
        return None
    folder = path.parent.resolve()
    target = (folder / relative).resolve()
    return target if target.is_relative_to(folder) and target.is_file() else None


def open_image(relative: str | None):
    """A stored image as a PIL image (so Gradio can show it from anywhere), or None if it is gone."""
    target = resolve(relative)
    if target is None:
        return None
    from PIL import Image

    try:
        with Image.open(target) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError) as err:
        log.warning("stored image %s could not be read: %s", target.name, err)
        return None


def is_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size")


def write_atomically(target: Path, write) -> None:
    """Call `write(file)` on a temporary file beside `target`, flush it to disk, then rename it:
    readers (and a restart after a kill) see the whole file or none."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_png(image: Any, target: Path) -> None:
    write_atomically(target, lambda f: image.save(f, format="PNG"))


def keep_upload(image: Any, folder: Path) -> str | None:
    """Copy the user's image into `uploads/`, named by its content (the same picture used in
    many runs is kept once); the relative path, or None when there is nothing to keep."""
    if is_image(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, suffix = buffer.getvalue(), ".png"
    elif isinstance(image, (str, os.PathLike)) and os.path.isfile(image):
        if os.path.getsize(image) > MAX_UPLOAD_BYTES:
            return None
        data = Path(image).read_bytes()
        suffix = Path(image).suffix.lower()
        suffix = suffix if suffix in IMAGE_SUFFIXES else ".bin"
    else:
        return None
    relative = f"uploads/{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    target = folder / relative
    if target.exists():
        with contextlib.suppress(OSError):
            os.utime(target)  # used again: the image budget removes it last
    else:
        write_atomically(target, lambda f: f.write(data))
        image_budget.added(folder, len(data))
    return relative
