"""llama.cpp's own OpenAI-compatible server for the local chat model, shared by every worker.

With `--workers N`, the launcher starts `command(port)` once (when it is not None), waits for
`health_path` to answer 200 (the server loads the model before it listens), and gives every worker
`ENV=http://127.0.0.1:<port>`; the workers' local chat then goes there (`adapters.local_chat_server`),
so the machine holds one copy of the model instead of one per worker.

The server runs `python -m llama_cpp.server` (from `pip install "llama-cpp-python[server]"`) with
the app's own settings: the packaged or configured GGUF file, its context size, and the local
threads rule (`local_models.threads`: the usable cores less one, `FMG_LOCAL_THREADS` to override),
under `nice -n 10` so the web workers' threads run first. `interrupt_requests` is off: llama.cpp's
server would otherwise end a streaming reply early whenever another request waits.

Where this CPU reports AMX and llama.cpp's AMX kernels crashed in the app's check
(`local_models.llama_open`), the server is started through this module
(`python -m launcher.llama_server ARGS`), which opens the model without the extra buffer types,
as the app does, then runs the same server.
"""

from __future__ import annotations

import importlib.util
import runpy
import shutil
import sys

ENV = "FMG_LOCAL_CHAT_URL"  # what the workers read (adapters.local_chat_server.ENV)
health_path = "/v1/models"  # 200 once the model is loaded and the server listens
NICE = 10
SERVER_MODULE = "llama_cpp.server"
# what `llama_cpp.server` imports besides llama_cpp: the `[server]` extra of llama-cpp-python
NEEDS = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
INSTALL = 'pip install "llama-cpp-python[server]"'


def missing() -> list[str]:
    """The modules `python -m llama_cpp.server` needs that are not installed (INSTALL installs them)."""
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


def command(port: int) -> list[str] | None:
    """The argv that starts the server on 127.0.0.1:`port` for the configured local chat model, or None
    where that model is not a GGUF file on this machine or llama.cpp's server is not installed."""
    if missing():
        return None
    from adapters import local
    from local_models import llama_open, recipe, threads

    found = local.gguf_chat_file()
    if found is None:
        return None
    model, path = found
    n = str(threads.count())
    module = SERVER_MODULE if llama_open.extra_buffers_are_safe(path) else __name__
    argv = [sys.executable, "-m", module]
    argv += ["--model", str(path), "--model_alias", model, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--n_ctx", str(recipe.GGUF_N_CTX), "--n_threads", n, "--n_threads_batch", n]
    argv += ["--interrupt_requests", "False", "--verbose", "False"]
    nice = shutil.which("nice")
    return [nice, "-n", str(NICE), *argv] if nice else argv


def main() -> None:
    """`python -m launcher.llama_server ARGS`: llama.cpp's server, the model opened without extra buffer types."""
    import compat

    with compat.llama_without_extra_buffers():  # the model is opened while the server module starts
        sys.argv[0] = SERVER_MODULE
        runpy.run_module(SERVER_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
