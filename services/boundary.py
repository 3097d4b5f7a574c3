"""The trust boundary: every value that comes from the browser is checked here before anything acts
on it. Gradio's side of it (`demos/widgets/guard.py`) calls `check_files` on each event's raw inputs and
`admit_event` on each queue join; tabs call `model`, `capped` and `visitors.current`.

- A model named by a visitor is an id, never a URL, an endpoint or a path, in any mode (only the
  owner's configuration may name those). In public mode it is one the owner lists, unless the
  visitor pays with a key of their own.
- A file is accepted only from Gradio's upload folder or the app's examples: no server path, no
  `data:` URI, no remote URL, and the same sentence whether or not such a file exists.
- In public mode numbers have tighter caps, so one visitor's call stays short.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adapters import config, registry
from adapters.errors import BadInput
from adapters.types import Task
from services import public

MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(?:[/:@][A-Za-z0-9._+-]+)*")
MAX_MODEL_CHARS = 200
NOT_AN_UPLOAD = "Only images uploaded through this page can be used: upload the image file again."


# --- model names ----------------------------------------------------------------------------------


def model(task: Task, provider: str, name: str | None, own_key: bool = False) -> str | None:
    """A model a visitor named for `provider` and `task`: None for the provider's default, or an
    id the server may call. Refuses URLs, paths and, in public mode, unlisted models."""
    text = str(name or "").strip()
    if not text:
        return None
    configured = _configured(provider)
    if text not in configured and (
        len(text) > MAX_MODEL_CHARS or not MODEL_ID.fullmatch(text) or ".." in text or "//" in text
    ):
        raise BadInput(
            f"{_quote(text)} is not a model id: name a model such as gpt-4o-mini or org/model "
            "(never a URL or a file path)."
        )
    if public.enabled() and not (own_key and provider != "local"):
        p = registry.providers().get(provider)
        allowed = public.listed_models(provider, task, p.model(task) if p else None)
        if text not in allowed:
            offer = ", ".join(sorted(allowed)) or "none"
            raise BadInput(
                f"This public Space offers only these {provider} models for {task.title.lower()}: "
                f"{offer}. Pick one of them, or type your own {provider} key to use another."
            )
    return text


def _configured(provider: str) -> set[str]:
    """Every model the owner configured for `provider` (any task): those may be paths or URLs."""
    p = registry.providers().get(provider)
    if p is None:
        return set()
    out = {m for m in (p.model(task) for task in p.adapters) if m}
    for task in p.adapters:
        out |= public.listed_models(provider, task, None)
    return out


def _quote(text: str) -> str:
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


# --- files ------------------------------------------------------------------------------------------


def check_files(values: Iterable[Any], roots: Iterable[str | os.PathLike], file_inputs: Iterable[int] = ()) -> None:
    """Refuse any file reference among an event's raw inputs that is not a file inside `roots`
    (Gradio's upload folder, the app's examples), before Gradio or the app opens or fetches it.
    `file_inputs` are the positions of file components: there a bare string (a path, a URL, a
    `data:` URI) is refused too."""
    values = list(values)
    for i in file_inputs:
        if i < len(values) and values[i] is not None and not isinstance(values[i], (dict, list)):
            raise BadInput(NOT_AN_UPLOAD)
    allowed = _resolved(tuple(str(r) for r in roots))
    for ref in _file_refs(values):
        url, path = ref.get("url"), ref.get("path")
        if isinstance(url, str) and url.strip().lower().startswith("data:"):
            raise BadInput(NOT_AN_UPLOAD)
        if path is None and url is None:
            continue
        if not isinstance(path, str) or not _inside(path, allowed):
            raise BadInput(NOT_AN_UPLOAD)


@functools.lru_cache(maxsize=16)
def _resolved(roots: tuple[str, ...]) -> list[Path]:
    """The roots as real paths, resolved once (each event checks its files against them)."""
    return [Path(r).resolve() for r in roots]


def _file_refs(value: Any) -> Iterator[dict]:
    """Every dict that names a file (a `path` or `url` key), at any depth."""
    if isinstance(value, dict):
        if "path" in value or "url" in value:
            yield value
        for item in value.values():
            yield from _file_refs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _file_refs(item)


def _inside(path: str, roots: list[Path]) -> bool:
    if "\0" in path or "://" in path or path.strip().lower().startswith("data:"):
        return False
    try:
        target = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(target.is_relative_to(root) and target != root for root in roots) and target.is_file()


# --- numbers ----------------------------------------------------------------------------------------


def capped(label: str, value: Any, limit: str) -> Any:
    """`value` unchanged, or a clear refusal where public mode caps it below what was asked."""
    if not public.enabled() or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    cap = getattr(public.limits(), limit)
    if value > cap:
        raise BadInput(f"{label} is at most {cap:,} on this public Space (got {value:,}): ask for less.")
    return value


def ceiling(limit: str, default: int) -> int:
    """The largest value a widget should offer: `default`, or the public-mode cap when lower."""
    return min(default, getattr(public.limits(), limit)) if public.enabled() else default


# --- what a visitor is shown ------------------------------------------------------------------------


def shown_model(model: str | None) -> str | None:
    """A model as a visitor may see it: in public mode, a configured path or URL becomes its last
    part (the owner's folders and endpoints stay on the server); ids are unchanged."""
    if not model or not public.enabled():
        return model
    text = str(model)
    if "://" in text or text.startswith(("/", ".", "~", "pkg:")) or "\\" in text:
        return text.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "model"
    return text


def shown_target(name: str | None) -> str | None:
    """A "provider:model" target name as a visitor may see it (see `shown_model`)."""
    if not name or ":" not in name:
        return name
    provider, _, model = name.partition(":")
    return f"{provider}:{shown_model(model)}"


BASE_URL_VARS = ("OPENAI_BASE_URL", "CO_API_URL", "HF_INFERENCE_ENDPOINT", "HF_HOME", "HF_HUB_CACHE")


def scrub(text: str) -> str:
    """`text` (a message or a note for the page) without the server's configured paths and
    endpoints, in public mode: each becomes its shown form (`shown_model`) or "[server]"."""
    if not text or not public.enabled():
        return text
    for secret, shown in sorted(_configured_places().items(), key=lambda item: -len(item[0])):
        text = text.replace(secret, shown)
    return text


def _configured_places() -> dict[str, str]:
    places: dict[str, str] = {}
    for provider in registry.providers().values():
        for task in provider.adapters:
            model = provider.model(task)
            if model and shown_model(model) != model:
                places[model] = shown_model(model) or "model"
    for var in BASE_URL_VARS:
        value = os.environ.get(var, "").strip()
        if len(value) > 3:
            places[value] = "[server]"
    endpoints = config.config_file().get("openai_compatible", {})
    for table in endpoints.values() if isinstance(endpoints, dict) else []:
        url = table.get("base_url") if isinstance(table, dict) else None
        if isinstance(url, str) and len(url) > 3:
            places[url] = "[server]"
    return places
