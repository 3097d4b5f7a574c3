"""Files a tab hands to the browser (exports): one folder per process, one subfolder per export.

Gradio copies a returned file into its cache and serves the copy (which its `delete_cache`
removes), so the file written here is needed only until then: each new export removes the ones
older than `EXPORT_TTL_S` and all but the newest `KEEP_EXPORTS`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

EXPORT_PREFIX = "fmg-export-"  # this process's folder of exports (`export_dir`)
EXPORT_ENTRY = "export-"  # a folder in it per export; nothing else is ever removed
KEEP_EXPORTS = 32  # exports kept on disk: more than the app's 16 at once, so none in flight is removed
EXPORT_TTL_S = 300  # Gradio copies a returned file into its cache at once; older exports go

_export_dir: tuple[int, Path] | None = None  # (the process that made it, the folder)
_export_dir_lock = threading.Lock()


def export_dir() -> Path:
    """This process's folder of exports: made on first use (again in a forked child, or if
    something removed it), removed when the process exits."""
    global _export_dir
    with _export_dir_lock:
        if _export_dir is None or _export_dir[0] != os.getpid() or not _export_dir[1].is_dir():
            folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _export_dir = (os.getpid(), folder)
        return _export_dir[1]


def new_folder() -> Path:
    """A folder of its own for one export (never shared), after pruning the old ones."""
    folder = Path(tempfile.mkdtemp(prefix=EXPORT_ENTRY, dir=export_dir()))
    _prune(folder)
    return folder


def _prune(keep: Path) -> None:
    """Remove exports older than `EXPORT_TTL_S`, and all but the newest `KEEP_EXPORTS` (never `keep`);
    one another thread removed first is skipped. Only this process's export folders are looked at:
    `export_dir()`'s entries named `EXPORT_ENTRY*`."""
    dated = []
    for entry in export_dir().glob(f"{EXPORT_ENTRY}*"):
        try:
            dated.append((entry.stat().st_mtime, entry))
        except FileNotFoundError:
            continue
    dated.sort(reverse=True)
    oldest_kept = time.time() - EXPORT_TTL_S
    for i, (mtime, entry) in enumerate(dated):
        if entry != keep and (i >= KEEP_EXPORTS or mtime < oldest_kept):
            shutil.rmtree(entry, ignore_errors=True)
