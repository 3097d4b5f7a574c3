"""The one way a tab gets an adapter for a visitor and spends a call on it.

`adapter()` passes the visitor's provider, model and key through the trust boundary before the
registry builds anything; `call()` charges the visitor's quotas (public mode) before the call is
made, and holds their one local-model turn while it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from adapters import registry
from adapters.prices import FREE_PROVIDERS
from adapters.tasks import Adapter
from adapters.types import Task
from services import boundary, quotas
from services.quotas import Work
from services.visitors import Visitor

__all__ = ["Work", "adapter", "call", "session_key"]


def session_key(api_key: object) -> str | None:
    """A key typed for this session, or None."""
    return (api_key.strip() or None) if isinstance(api_key, str) else None


def adapter(task: Task, provider: object, model: object = None, api_key: object = None) -> Adapter:
    """The adapter for a visitor's choice: the model checked first (never a URL or a path; in
    public mode one the owner lists unless the visitor's own key pays)."""
    key = session_key(api_key)
    name = str(provider or "").strip()
    checked = boundary.model(task, name, None if model is None else str(model), own_key=key is not None)
    return registry.get(task, name, checked, api_key=key)


def check(visitor: Visitor, adapter: Adapter) -> None:
    """Refuse at once, before the input is checked or decoded, a call the visitor has no quota for."""
    quotas.check(visitor, adapter.provider)


def charge(visitor: Visitor, adapter: Adapter, work: Work) -> None:
    """Count one call against the visitor's quotas, or raise `LimitReached` before it is made."""
    quotas.charge(visitor, adapter.provider, adapter.model, work, own_key=bool(getattr(adapter, "api_key", None)))


@contextmanager
def call(visitor: Visitor, adapter: Adapter, work: Work) -> Iterator[None]:
    """Around one call: charged first; a local call also holds the visitor's local turn."""
    charge(visitor, adapter, work)
    with quotas.local_turn(visitor, adapter.provider in FREE_PROVIDERS):
        yield
