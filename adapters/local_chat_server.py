"""The local provider's chat through one llama.cpp server shared by the app's worker processes.

With `python app.py --workers N` the launcher starts llama.cpp's own OpenAI-compatible server
(`python -m llama_cpp.server`, see `launcher.llama_server`) for the configured local chat model and
gives each worker its address in `FMG_LOCAL_CHAT_URL`. A worker's local chat with that model then
goes there through the OpenAI-compatible adapter (`adapters.openai_api`: the same streaming, usage,
errors and retries as any such server), so N workers hold one copy of the model instead of N. It
is still the "local" provider, labelled "Local models", for the visitor, the run log and quotas.
Other local models (and a local chat model other than the one served) stay in the worker.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from adapters import config
from adapters.types import Task

if TYPE_CHECKING:
    from adapters.openai_api import OpenAICompleter

ENV = "FMG_LOCAL_CHAT_URL"
PROVIDER = "local"
LABEL = "Local models"

_completers: dict[tuple[str, str], OpenAICompleter] = {}
_lock = threading.Lock()


def url() -> str | None:
    """The server's OpenAI base URL (ending in /v1), or None where no server is configured."""
    base = os.environ.get(ENV, "").strip().rstrip("/")
    if not base:
        return None
    return base if base.endswith("/v1") else base + "/v1"


def served_model() -> str | None:
    """The local chat model the server serves: the configured one (the launcher starts it with it)."""
    return config.model_for(PROVIDER, Task.COMPLETION)


def completer(model: str) -> OpenAICompleter | None:
    """The adapter that sends local chat with `model` to the shared server, or None to run it here."""
    base = url()
    if base is None or model != served_model():
        return None
    from adapters.openai_api import Endpoint, OpenAICompleter

    with _lock:
        found = _completers.get((base, model))
        if found is None:
            endpoint = Endpoint(PROVIDER, LABEL, key_var=None, base_url=base, token_param="max_tokens")
            found = _completers[(base, model)] = OpenAICompleter(PROVIDER, model, endpoint)
        return found
