"""The run log's image files, kept within a size budget: when they outgrow it, the oldest go.

A public demo that generates and receives images all day would otherwise fill its disk with
them (a Space's disk, then its database, then every write). `FMG_RUN_LOG_IMAGES_MB` caps
`images/` and `uploads/` beside the database together (default 2048 MB; `0` keeps them all).
When a new file takes them past the cap, files are removed oldest first (by modification time;
an upload used again is touched, so it counts as new) until they fill 90% of it, so that the
folders are listed again only after another tenth of the budget has been written. The runs
stay: a run whose image is gone re-opens without it.

The running total is kept per folder in this process, from one listing at its first write;
another process writing the same log is only seen at the next listing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("fm_gallery.run_log")

ENV = "FMG_RUN_LOG_IMAGES_MB"
DEFAULT_MB = 2048.0
KEEP_AFTER_PRUNING = 0.9  # of the budget
SUBFOLDERS = ("images", "uploads")

_totals: dict[Path, int] = {}  # log folder -> bytes its image files hold, as this process counts them
_lock = threading.Lock()


def limit_bytes() -> int | None:
    """The budget in bytes, or None for no limit (read at each write, like the log's own path)."""
    raw = os.environ.get(ENV, "").strip()
    try:
        megabytes = float(raw) if raw else DEFAULT_MB
    except ValueError:
        log.warning("%s=%r is not a number of megabytes: using %g", ENV, raw, DEFAULT_MB)
        megabytes = DEFAULT_MB
    return int(megabytes * 1024 * 1024) if megabytes > 0 else None


def added(folder: Path, size: int) -> None:
    """A new image file of `size` bytes was written under `folder` (the log folder): prune if over budget."""
    limit = limit_bytes()
    if limit is None:
        return
    with _lock:
        if folder not in _totals:
            _totals[folder] = sum(size for _, size, _ in _files(folder))
        else:
            _totals[folder] += size
        if _totals[folder] > limit:
            _totals[folder] = _prune(folder, int(limit * KEEP_AFTER_PRUNING))


def _files(folder: Path) -> list[tuple[float, int, Path]]:
    """(modified, bytes, path) of every image file; temporary files being written are not counted."""
    found = []
    for sub in SUBFOLDERS:
        with contextlib.suppress(FileNotFoundError), os.scandir(folder / sub) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat(follow_symlinks=False)
                    found.append((st.st_mtime, st.st_size, Path(entry.path)))
    return found


def _prune(folder: Path, keep: int) -> int:
    """Remove the oldest files until at most `keep` bytes remain; the bytes that remain."""
    files = sorted(_files(folder), key=lambda f: (f[0], f[2].name))
    total = sum(size for _, size, _ in files)
    removed = 0
    for _, size, path in files:
        if total <= keep:
            break
        try:
            path.unlink()
        except FileNotFoundError:
            pass  # removed meanwhile by another process pruning the same folder
        except OSError as err:
            log.warning("run log: could not remove old image %s: %s", path.name, err)
            continue
        total -= size
        removed += 1
    if removed:
        log.info("run log: removed the %d oldest image files to stay within %s", removed, ENV)
    return total
