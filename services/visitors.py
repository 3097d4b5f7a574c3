"""Who is asking: the Hugging Face user when logged in, otherwise the client address.

The address is the one uvicorn reports, which honours `X-Forwarded-For` only from the proxies in
its `forwarded_allow_ips` (`trust_proxies` sets it from the public-mode settings). What the run
log stores is a salted hash, so the log holds no address.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import public

SALT_ENV = "FMG_VISITOR_SALT"
_salt_lock = threading.Lock()
_salt: dict[str, str] = {}


@dataclass(frozen=True)
class Visitor:
    """One visitor: `id` is "user:<name>" or "addr:<address>"; `session` is Gradio's session hash."""

    id: str
    session: str = ""
    admin: bool = False

    @property
    def key(self) -> str:
        """A stable pseudonym for the run log and the rate limiter: never the address itself."""
        return hashlib.sha256(f"{_salt_value()}\0{self.id}".encode()).hexdigest()[:24]

    @property
    def logged_in(self) -> bool:
        return self.id.startswith("user:")


OWNER = Visitor("owner", admin=True)  # the machine's own user, when the app is not public


def of(request: Any, username: str | None = None) -> Visitor:
    """The visitor behind a `gr.Request` or a Starlette request (duck-typed: no Gradio here)."""
    name = username if username is not None else getattr(request, "username", None)
    session = str(getattr(request, "session_hash", None) or "")
    if isinstance(name, str) and name.strip():
        name = name.strip()
        admins = {a.strip().lower() for a in public.limits().admins.split(",") if a.strip()}
        return Visitor(f"user:{name}", session, admin=name.lower() in admins)
    client = getattr(request, "client", None)
    host = getattr(client, "host", None) if client is not None else None
    return Visitor(f"addr:{host or 'unknown'}", session)


def current(request: Any) -> Visitor:
    """The visitor in public mode; in private mode everyone is the owner (sees and spends all)."""
    if not public.enabled():
        return OWNER
    if request is None:
        return Visitor("addr:unknown")
    return of(request)


def trust_proxies() -> None:
    """Tell uvicorn which proxies may set X-Forwarded-For (public mode; an explicit
    FORWARDED_ALLOW_IPS wins). Without it uvicorn trusts any client on 127.0.0.1."""
    if public.enabled() and "FORWARDED_ALLOW_IPS" not in os.environ:
        os.environ["FORWARDED_ALLOW_IPS"] = public.limits().trusted_proxies


def _salt_value() -> str:
    """`FMG_VISITOR_SALT`, else a random salt kept next to the run log (made once, owner-only)."""
    given = os.environ.get(SALT_ENV, "").strip()
    if given:
        return given
    log = os.environ.get("FMG_RUN_LOG", "").strip()
    if log.lower() in {"off", "0", "false", "no", "none"}:
        log = ""
    folder = Path(log or "~/.fm-gallery/runs.sqlite3").expanduser().parent
    path = str(folder / "visitor-salt")
    with _salt_lock:
        if path not in _salt:
            _salt[path] = _read_or_make(Path(path))
        return _salt[path]


def _read_or_make(path: Path) -> str:
    try:
        return path.read_text().strip() or _make(path)
    except FileNotFoundError:
        return _make(path)
    except OSError:
        return secrets.token_hex(16)  # an unwritable folder: pseudonyms last as long as the process


def _make(path: Path) -> str:
    value = secrets.token_hex(16)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
    except FileExistsError:
        return path.read_text().strip() or value
    except OSError:
        pass
    return value
