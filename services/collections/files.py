"""A collection's files: the raw float32 vectors file (embedded backend), stored images, and
whole-file replacement. Every file a commit points at is complete and fsynced before the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from services.collections.layout import IMAGES
from services.collections.metadata import CollectionError


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fsync_file(path)


def replace_with(target: Path, write: Any) -> None:
    """Write a file whole under a temporary name (`write(tmp_path)`), fsync it, then rename it to `target`."""
    tmp = temporary(target)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def append_vectors(path: Path, at_row: int, vectors: np.ndarray) -> None:
    """Write `vectors` from row `at_row` on (over any uncommitted rows a killed writer left), durably."""
    data = np.ascontiguousarray(vectors, dtype="<f4")
    offset = at_row * data.shape[1] * 4
    with path.open("r+b") as f:
        if os.fstat(f.fileno()).st_size < offset:
            raise CollectionError(f"{path.name} is shorter than its {at_row:,} committed rows")
        f.seek(offset)
        f.write(data.tobytes())
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def map_vectors(path: Path, rows: int, dim: int) -> np.ndarray:
    """The committed rows of a vectors file, memory-mapped read-only (nothing is read until used)."""
    if rows == 0:
        return np.empty((0, dim), dtype=np.float32)
    return np.memmap(path, dtype="<f4", mode="r", shape=(rows, dim))


def store_image(path: Path, source: Path, digest: str) -> str:
    """The uploaded image copied into the collection (once per content), as a path relative to it."""
    suffix = source.suffix.lower()
    relative = f"{IMAGES}/{digest[:40]}{suffix}"
    target = path / relative
    if not target.is_file():
        target.parent.mkdir(mode=0o700, exist_ok=True)
        replace_with(target, lambda tmp: shutil.copyfile(source, tmp))
    return relative
