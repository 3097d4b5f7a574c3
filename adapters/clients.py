"""One SDK client per adapter, built on first use and rebuilt when its key or base URL changes."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import weakref
from collections.abc import Callable
from typing import Any


class ClientCache:
    """Holds the client `build(key, base_url)` made for the current key and base URL.

    The key is kept only as a hash. A replaced client is closed at once, and the last one when
    the cache is dropped (adapters with a session key are built per call), so no sockets leak.
    """

    def __init__(self, build: Callable[[str, str | None], Any], close: Callable[[Any], None]):
        self._build, self._close = build, close
        self._lock = threading.Lock()
        self._client: Any = None
        self._ident: tuple[str, str | None] | None = None
        self._closer: weakref.finalize | None = None

    def get(self, key: str, base_url: str | None) -> Any:
        ident = (hashlib.sha256(key.encode()).hexdigest(), base_url)
        with self._lock:
            if self._client is None or self._ident != ident:
                if self._closer is not None:
                    self._closer()  # the old client's connections, closed now
                self._client, self._ident = self._build(key, base_url), ident
                self._closer = weakref.finalize(self, _close_quietly, self._close, self._client)
            return self._client

    def reset(self) -> None:
        """Close the current client now; the next `get` builds a new one."""
        with self._lock:
            if self._closer is not None:
                self._closer()
            self._client = self._ident = self._closer = None


def _close_quietly(close: Callable[[Any], None], client: Any) -> None:
    with contextlib.suppress(Exception):  # closing an old client must never fail a call
        close(client)
