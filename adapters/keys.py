"""API keys: read from the environment when a call is made, never at import, never logged.

Keys typed in the browser are passed per call (`registry.get(..., api_key=...)`) and live only
in that call's adapter; `redact` scrubs every known key out of any text that may be shown.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

from adapters.errors import MissingCredentials

_session_keys: weakref.WeakSet = weakref.WeakSet()  # adapters holding a browser-given key
_lock = threading.Lock()
KEY_VARS = ("OPENAI_API_KEY", "CO_API_KEY", "COHERE_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
REDACTED = "[redacted]"


def from_env(var: str) -> str | None:
    value = os.environ.get(var, "").strip()
    return value or None


def missing(key_var: str, label: str) -> MissingCredentials:
    """The one sentence every provider gives when it has no key."""
    return MissingCredentials(f"Set {key_var} to use {label}, or type a key for this session.")


def require(session_key: str | None, key_var: str, label: str) -> str:
    """The key a call uses: the one typed for this session, else the environment's; none raises."""
    key = session_key or from_env(key_var)
    if not key:
        raise missing(key_var, label)
    return key


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


_exc_formatter = logging.Formatter()


def scrub_record(record: logging.LogRecord, known: set[str] | None = None) -> logging.LogRecord:
    """Scrub keys from all a formatter prints of `record`: message and args, traceback (as a
    preset `exc_text`, which formatters print instead of formatting `exc_info` again), stack."""
    known = known_keys() if known is None else known
    if not known:
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - unformattable: handleError would print msg and args raw
        message = f"{record.msg} {record.args!r}"
    clean = redact(message, known)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = _exc_formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text, known)
    if record.stack_info:
        record.stack_info = redact(record.stack_info, known)
    return record


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs keys from every record it passes (see `scrub_record`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def _redacting_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Wrap the LogRecord factory `make` so every record is born scrubbed, whatever its handler."""

    def factory(*args, **kwargs) -> logging.LogRecord:
        return scrub_record(make(*args, **kwargs))

    factory.redacting = True  # type: ignore[attr-defined]  # a marker attribute on the function object
    return factory


def install_log_redaction() -> None:
    """Scrub keys from every log record: via the record factory (any logger, any handler, even
    one added later) and a filter on the root handlers (records built by `makeLogRecord`)."""
    if not getattr(logging.getLogRecordFactory(), "redacting", False):
        logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
