"""How many CPU threads a local model call may use: all the cores this process may run on but one,
which is left to the web server, so that a page load or a hosted chat never waits behind a model.

One rule for every local runtime: llama.cpp's `n_threads` and `n_threads_batch` (in this process
and in the llama.cpp server the launcher starts), and torch's intra-op and inter-op threads.
`FMG_LOCAL_THREADS=N` overrides it (N >= 1; on a machine that serves nothing else, all its cores).
"""

from __future__ import annotations

import contextlib
import os
import threading

ENV = "FMG_LOCAL_THREADS"

_torch_done = False
_torch_lock = threading.Lock()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset), else all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def count() -> int:
    """Threads for one local model call: `FMG_LOCAL_THREADS`, else the usable cores less one (at least 1)."""
    wanted = os.environ.get(ENV, "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            raise ValueError(f"{ENV} must be a whole number of threads, 1 or more (got {wanted!r}).") from None
    return max(1, usable_cores() - 1)


def apply_to_torch() -> None:
    """Give torch `count()` intra-op and inter-op threads; once per process, before its first parallel
    work (torch refuses to change the inter-op count after that)."""
    global _torch_done
    with _torch_lock:
        if _torch_done:
            return
        import torch

        n = count()
        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # parallel work already ran here: the inter-op pool is fixed
            torch.set_num_interop_threads(n)
        _torch_done = True
