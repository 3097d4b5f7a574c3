"""Which providers serve which task, whether each is usable now, and the adapters themselves.

The registry is a plain dict `{provider name: Provider}`; a `Provider` maps each task it serves
to an adapter class. Provider modules are listed in `PROVIDER_MODULES` and each exposes
`providers()`; importing them is cheap because vendor SDKs and torch are imported only when a
call is made. Tests register fakes with `register()`.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters import config, keys
from adapters.errors import FMError, MissingCredentials, UnknownProvider
from adapters.tasks import Adapter
from adapters.types import EditMode, Task

if TYPE_CHECKING:
    from adapters.snippets import Call

PROVIDER_MODULES = ("adapters.local", "adapters.openai_api", "adapters.cohere_api", "adapters.hf_inference")

Check = Callable[[Task, str], FMError | None]  # why (task, model) cannot run now, or None
log = logging.getLogger("fm_gallery.registry")


@dataclass(frozen=True)
class Provider:
    name: str  # what users and the API pass: "local", "openai", "cohere", "hf", ...
    label: str  # what the UI shows: "Local models", "OpenAI", ...
    adapters: Mapping[Task, Callable[[str, str], Adapter]]  # task -> factory(provider name, model)
    check: Check = field(default=lambda task, model: None)
    models: Callable[[Task], str | None] | None = None  # default model; config.model_for if None
    # Its "Reproduce in Python" templates: task -> template(call) -> program (see adapters/snippets/);
    # None, or a task left out: no program, a comment says so.
    reproduce: Mapping[Task, Callable[[Call], str]] | None = None
    # Reorders search hits (rerank(query, documents, top_n)): factory(api_key, session provider)
    reranker: Callable[[str | None, str | None], Any] | None = None
    # Prepare its adapters in the background at start (`warm_up`): hosted vendors import their
    # SDK and build their client there, so that the first call of a process does not wait for it.
    warm: bool = False

    def model(self, task: Task) -> str | None:
        return self.models(task) if self.models else config.model_for(self.name, task)

    @property
    def edit_modes(self) -> frozenset[EditMode]:
        """What its image generator's `edit` can do (`ImageGenerator.edit_modes`); none without one."""
        factory: object = self.adapters.get(Task.IMAGE_GENERATION)
        while isinstance(factory, functools.partial):  # a factory with bound settings (an OpenAI endpoint)
            factory = factory.func
        return frozenset(getattr(factory, "edit_modes", ()))


@dataclass(frozen=True)
class Option:
    """One provider as a task's picker shows it."""

    provider: str
    label: str
    model: str | None
    reason: str | None  # None when usable now

    @property
    def usable(self) -> bool:
        return self.reason is None


_lock = threading.RLock()
_providers: dict[str, Provider] = {}
_loaded = False
_adapters: dict[tuple[str, Task, str], Adapter] = {}


def register(provider: Provider) -> None:
    with _lock:
        _load_builtins()
        _providers[provider.name] = provider
        for key in [k for k in _adapters if k[0] == provider.name]:
            del _adapters[key]


def unregister(name: str) -> None:
    with _lock:
        _providers.pop(name, None)
        for key in [k for k in _adapters if k[0] == name]:
            del _adapters[key]


def _load_builtins() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        for module in PROVIDER_MODULES:
            try:
                imported = importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:
                    raise
                continue  # a provider module left out of a slim deployment
            for provider in imported.providers():
                _providers.setdefault(provider.name, provider)


def providers() -> dict[str, Provider]:
    _load_builtins()
    return dict(_providers)


def options(task: Task) -> list[Option]:
    """Every provider, usable ones first, each with the reason it cannot serve `task` now."""
    out = []
    for p in providers().values():
        if task not in p.adapters:
            out.append(Option(p.name, p.label, None, f"{p.label} has no {task.title.lower()}."))
            continue
        model = p.model(task)
        problem = p.check(task, model) if model else FMError(f"No model is configured for {task.value}.")
        out.append(Option(p.name, p.label, model, None if problem is None else str(problem)))
    return sorted(out, key=lambda o: not o.usable)


def edit_modes(provider: str) -> frozenset[EditMode]:
    """The image edits a provider serves (none for a provider this registry does not know), for pickers."""
    found = providers().get(provider) if isinstance(provider, str) else None
    return found.edit_modes if found is not None else frozenset()


def editors(mode: EditMode | str) -> list[Provider]:
    """The providers whose image generator can edit in `mode`, in registry order."""
    mode = EditMode(mode)
    return [p for p in providers().values() if mode in p.edit_modes]


def warm_up() -> threading.Thread:
    """Prepare the default adapter of every task a `warm` provider can serve now (its SDK imported,
    its client built: `Adapter._prepare`), in a daemon thread that is returned already started.
    Only providers usable with the environment's keys are warmed; nothing waits for this."""
    thread = threading.Thread(target=_warm_all, name="fmg-warm-up", daemon=True)
    thread.start()
    return thread


def _warm_all() -> None:
    for p in providers().values():
        if not p.warm:
            continue
        for task in p.adapters:
            model = p.model(task)
            try:
                if model and p.check(task, model) is None:
                    get(task, p.name, model)._prepare()
            except Exception:  # warming is an optimisation: the call itself will say what is wrong
                log.warning("warming %s %s failed", p.name, task.value, exc_info=True)


def get(task: Task, provider: str, model: str | None = None, api_key: str | None = None) -> Adapter:
    """The adapter for `provider` on `task`; raises a clear `FMError` if it cannot run now.

    `api_key` (typed in the browser for one session) overrides the environment's key; such an
    adapter is built for this call only and never cached.
    """
    all_providers = providers()
    serving = [name for name, p in all_providers.items() if task in p.adapters]
    p = all_providers.get(str(provider).strip()) if isinstance(provider, str) else None
    if p is None:
        raise UnknownProvider(
            f"Unknown provider {str(provider)[:60]!r} for {task.title.lower()}: choose one of {', '.join(serving)}."
        )
    if task not in p.adapters:
        raise UnknownProvider(f"{p.label} has no {task.title.lower()}: choose one of {', '.join(serving)}.")
    model = (model or "").strip() or p.model(task)
    if not model:
        raise UnknownProvider(f"No model is configured for {p.label} {task.value}: set one in fm-gallery.toml.")
    problem = p.check(task, model)
    if problem is not None and not (api_key and isinstance(problem, MissingCredentials)):
        raise problem
    if api_key:
        adapter = p.adapters[task](p.name, model)
        adapter.api_key = api_key
        keys.remember(adapter)
        return adapter
    key = (p.name, task, model)
    with _lock:
        if key not in _adapters:
            _adapters[key] = p.adapters[task](p.name, model)
        return _adapters[key]


def reranker(session_provider: str | None, api_key: str | None = None) -> Any:
    """The reranker a provider offers (Cohere's today), built for this session: a typed key counts
    only if the session's provider is the one that reranks. Raises a clear `FMError` if none can run."""
    offering = [p.reranker for p in providers().values() if p.reranker is not None]
    if not offering:
        raise UnknownProvider("No provider here offers reranking: search without it.")
    return offering[0](api_key, session_provider)
