"""Opening a GGUF model with llama.cpp without letting a CPU's AMX kill the process.

llama.cpp built for the machine (`-march=native`, what a plain `pip install llama-cpp-python`
does) moves the weights of a model with AMX kernels into AMX tiles when the CPU says it has
AMX. Some virtual machines say so, grant the permission, and still trap on the first tile
instruction: the process dies with SIGILL (Illegal instruction) on the first prompt of two or
more tokens, the whole app with it, and nothing in Python can catch that.

So where the CPU reports AMX, a child process first runs a short prompt on the same file; only
if it survives does the model keep llama.cpp's extra buffer types (AMX, weight repacking),
otherwise it is opened with them off (`use_extra_bufts = False`, llama.cpp's `--no-repack`):
plain AVX kernels, a few percent slower on prompts and as fast at generating. The check costs
about a second, once per model file and process, and only on such CPUs.
`FMG_LLAMA_EXTRA_BUFFERS=on|off` skips it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import compat

# A child that opens the model as llama.cpp would by default and evaluates a few tokens at once.
_PROBE = """
import sys
from llama_cpp import Llama
llama = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, verbose=False)
llama.eval(llama.tokenize(b"The quick brown fox jumps over the lazy dog.")[:8])
"""
PROBE_TIMEOUT_S = 120

_verdicts: dict[str, bool] = {}  # model file -> may it keep the extra buffer types
_verdicts_lock = threading.Lock()


def open_llama(path: str | Path, **settings: Any):
    """`llama_cpp.Llama(model_path=path, **settings)`, with the extra buffer types off where they would crash."""
    from llama_cpp import Llama

    if extra_buffers_are_safe(path):
        return Llama(model_path=str(path), **settings)
    with compat.llama_without_extra_buffers():
        return Llama(model_path=str(path), **settings)


def extra_buffers_are_safe(path: str | Path) -> bool:
    """May llama.cpp use its extra buffer types (AMX tiles, repacked weights) for this model here?"""
    choice = os.environ.get("FMG_LLAMA_EXTRA_BUFFERS", "auto").strip().lower()
    if choice in ("on", "off"):
        return choice == "on"
    if not cpu_reports_amx():
        return True
    key = str(Path(path).resolve())
    with _verdicts_lock:  # one probe per file, however many callers load it at once
        if key not in _verdicts:
            _verdicts[key] = _probe_survives(key)
        return _verdicts[key]


def cpu_reports_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Does the CPU claim AMX tiles (the only extra buffer type that has been seen to trap)?"""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def _probe_survives(path: str) -> bool:
    """Run a short prompt on `path` in a child process; True only if it exits cleanly."""
    try:
        child = subprocess.run(
            [sys.executable, "-c", _PROBE, path],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            env={**os.environ, "PYTHONFAULTHANDLER": ""},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return child.returncode == 0
