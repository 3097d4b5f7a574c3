"""Who is asking, answered twice: whose work it is, and whose quota it spends.

- Whose work (`Visitor.id`: history, exports, re-open, evaluations, votes): the Hugging Face login
  when there is one (Gradio's password auth, or Spaces OAuth, read from the session the way
  Gradio's own `gr.OAuthProfile` is), else this browser (a random token in a signed cookie the
  page gets on its first request, `demos/widgets/visitor_cookie.py`), else the Gradio session
  (an API client that keeps no cookies). Never the address: two people behind one office NAT or
  mobile carrier see only their own runs.
- Whose quota (`Visitor.counted_as`): the login, else the client address, an IPv6 address
  grouped by its prefix (`ipv6_prefix`, default /64: whoever holds a /64 holds all of it).

The address is the one uvicorn reports, which honours `X-Forwarded-For` only from the proxies in
its `forwarded_allow_ips` (`trust_proxies` sets it from the public-mode settings). What the stores
keep is a salted hash (`key`, `quota_key`), so they hold no address and no browser token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import public

SALT_ENV = "FMG_VISITOR_SALT"
_salt_lock = threading.Lock()
_salt: dict[str, str] = {}


COOKIE = "fmg_visitor"  # the browser token's cookie (set by demos/widgets/visitor_cookie.py)


@dataclass(frozen=True)
class Visitor:
    """One visitor. `id`, whose work: "user:<name>", "browser:<hash of its token>",
    "session:<Gradio session hash>" or "owner". `counted_as`, whose quota: "user:<name>" or
    "addr:<address or IPv6 prefix>" (empty: the same as `id`). `session` is Gradio's session hash."""

    id: str
    session: str = ""
    admin: bool = False
    counted_as: str = ""

    @property
    def key(self) -> str:
        """A stable pseudonym of `id` for the stores: never an address or a token."""
        return _pseudonym(self.id)

    @property
    def quota_id(self) -> str:
        return self.counted_as or self.id

    @property
    def quota_key(self) -> str:
        """A stable pseudonym of `quota_id` for the rate limiter."""
        return _pseudonym(self.quota_id)

    @property
    def logged_in(self) -> bool:
        return self.id.startswith("user:")


OWNER = Visitor("owner", admin=True)  # the machine's own user, when the app is not public


def of(request: Any, username: str | None = None) -> Visitor:
    """The visitor behind a `gr.Request` or a Starlette request (duck-typed: no Gradio here)."""
    session = str(getattr(request, "session_hash", None) or "")
    name = _login(request, username)
    if name:
        user = f"user:{name}"
        return Visitor(user, session, admin=name.lower() in _admins(), counted_as=user)
    address = f"addr:{grouped(_host(request))}"
    browser = browser_of(_cookies(request).get(COOKIE))
    if browser:
        return Visitor(f"browser:{browser}", session, counted_as=address)
    if session:
        return Visitor(f"session:{session}", session, counted_as=address)
    return Visitor(f"request:{secrets.token_hex(12)}", counted_as=address)  # sees nobody's work, not even its own


def current(request: Any) -> Visitor:
    """The visitor in public mode; in private mode everyone is the owner (sees and spends all)."""
    if not public.enabled():
        return OWNER
    if request is None:
        return Visitor("addr:unknown")
    return of(request)


def grouped(host: str | None) -> str:
    """The address quotas count: an IPv4 address as it is, an IPv6 one as its `ipv6_prefix`
    network (an IPv4-mapped IPv6 address as the IPv4 one)."""
    try:
        address = ipaddress.ip_address((host or "").strip())
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        prefix = public.limits().ipv6_prefix
        return str(ipaddress.IPv6Network(f"{address}/{prefix}", strict=False))
    return str(address)


def mint_browser_token() -> str:
    """A new browser token, signed with the salt: `<random>.<signature>`."""
    token = secrets.token_urlsafe(18)
    return f"{token}.{_signature(token)}"


def browser_of(cookie: Any) -> str | None:
    """The browser's pseudonymous id from its cookie, or None when absent or not signed by us."""
    if not isinstance(cookie, str) or cookie.count(".") != 1 or len(cookie) > 100:
        return None
    token, signature = cookie.split(".")
    if not token or not hmac.compare_digest(signature, _signature(token)):
        return None
    return hashlib.sha256(f"browser\0{token}".encode()).hexdigest()[:24]


def _signature(token: str) -> str:
    return hmac.new(_salt_value().encode(), f"browser-token\0{token}".encode(), hashlib.sha256).hexdigest()[:32]


def _pseudonym(identity: str) -> str:
    return hashlib.sha256(f"{_salt_value()}\0{identity}".encode()).hexdigest()[:24]


def _admins() -> set[str]:
    """The listed admins and, on a Space, its owner (`SPACE_AUTHOR_NAME`) in every case."""
    listed = {a.strip().lower() for a in public.limits().admins.split(",") if a.strip()}
    owner = os.environ.get("SPACE_AUTHOR_NAME", "").strip().lower()
    return listed | ({owner} if owner else set())


def _starlette(request: Any) -> Any:
    """The Starlette request inside a `gr.Request` (or the request itself)."""
    inner = getattr(request, "request", None)
    return inner if hasattr(inner, "scope") else request


def _login(request: Any, username: str | None) -> str | None:
    """Gradio's password-auth user, else the Hugging Face OAuth login kept in the session."""
    name = username if username is not None else getattr(request, "username", None)
    if isinstance(name, str) and name.strip():
        return name.strip()
    scope = getattr(_starlette(request), "scope", None)
    session = scope.get("session") if isinstance(scope, dict) else None
    info = session.get("oauth_info") if isinstance(session, dict) else None
    if not isinstance(info, dict):
        return None
    expires = info.get("expires_at")
    if isinstance(expires, (int, float)) and expires < time.time():
        return None
    user = (info.get("userinfo") or {}).get("preferred_username")
    return user.strip() if isinstance(user, str) and user.strip() else None


def _cookies(request: Any) -> dict:
    cookies = getattr(_starlette(request), "cookies", None)
    return dict(cookies) if isinstance(cookies, dict) else {}


def _host(request: Any) -> str | None:
    client = getattr(_starlette(request), "client", None)
    return getattr(client, "host", None) if client is not None else None


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
