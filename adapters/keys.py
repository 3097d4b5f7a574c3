"""API keys: read from the environment when a call is made, never at import, never logged.

Keys typed in the browser are passed per call (`registry.get(..., api_key=...)`) and live only
in that call's adapter; `redact` scrubs every known key out of any text that may be shown.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

_session_keys: weakref.WeakSet = weakref.WeakSet()  # adapters holding a browser-given key
_lock = threading.Lock()
KEY_VARS = ("OPENAI_API_KEY", "CO_API_KEY", "COHERE_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
REDACTED = "[redacted]"


def from_env(var: str) -> str | None:
    value = os.environ.get(var, "").strip()
    return value or None


def remember(holder: object) -> None:
    """Track an object with an `api_key` attribute so that `redact` can scrub its key."""
    with _lock:
        _session_keys.add(holder)


def known_keys() -> set[str]:
    """Every key this process knows now: the environment's and those typed in live sessions."""
    keys = {os.environ.get(var, "").strip() for var in KEY_VARS}
    with _lock:
        keys |= {getattr(h, "api_key", None) or "" for h in list(_session_keys)}
    return {k for k in keys if len(k) >= 6}


def redact(text: str, known: set[str] | None = None) -> str:
    """`text` with every key in `known` (default: `known_keys()`) replaced; a caller scrubbing
    many strings at once passes the set it took once."""
    for key in known_keys() if known is None else known:
        text = text.replace(key, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs keys from every record (installed on the root handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction() -> None:
    root = logging.getLogger()
    for handler in root.handlers or []:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
