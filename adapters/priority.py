"""Background work: threads that run an evaluation's calls mark themselves here, so that local
model calls from a visitor's chat or search go first.

`lower_this_thread()` does two things for the calling thread, which must be one made for the
background work (a pool's worker), since neither can be undone:
- its local model calls wait at the device slot while any interactive call waits
  (`background()` says so to `adapters.local`);
- on Linux, its scheduling priority drops to nice `NICE` (the thread alone: Linux keeps a nice
  value per thread). Threads it then creates inherit that value, which covers the threads
  llama.cpp and torch start for its calls, so the web server's thread runs first when cores are short.
"""

from __future__ import annotations

import contextlib
import os
import threading

NICE = 10  # how far below the web server's threads (Unix nice: 0 is normal, 19 the lowest)

_marks = threading.local()


def lower_this_thread() -> None:
    """Mark the calling thread as background work and lower its scheduling priority (see above)."""
    _marks.background = True
    get_native_id = getattr(threading, "get_native_id", None)
    if hasattr(os, "setpriority") and get_native_id is not None:
        tid = get_native_id()
        with contextlib.suppress(OSError):  # not permitted: the turn order alone applies
            os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), NICE))


def background() -> bool:
    """Is the calling thread doing background work?"""
    return getattr(_marks, "background", False)
