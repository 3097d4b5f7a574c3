"""The browser token cookie: in public mode, a page load without a valid one gets a new one.

A visitor who is not logged in is their browser (`services.visitors`): this ASGI middleware gives
the page's first requests (`GET /` and `GET /config`) a `fmg_visitor` cookie holding a random
token signed with the visitor salt, so two people behind one address never see each other's
runs, and a reload keeps one's own. HttpOnly (the page's scripts never read it); on a Space the
app sits in an iframe of huggingface.co, so the cookie is `SameSite=None; Secure` there, as
Gradio's own OAuth session cookie is.
"""

from __future__ import annotations

import os

from demos.widgets.body_limit import ASGIApp, Message, Receive, Scope, Send
from services import public, visitors

MAX_AGE_S = 365 * 24 * 3600
PAGE_PATHS = ("/", "/config")


class VisitorCookie:
    """ASGI middleware: sets the browser token on page loads that lack a valid one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or not _is_page(scope) or not public.enabled():
            await self.app(scope, receive, send)
            return
        if visitors.browser_of(_cookie(scope)) is not None:
            await self.app(scope, receive, send)
            return
        header = _set_cookie(visitors.mint_browser_token(), scope.get("scheme") == "https")

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", header)]
            await send(message)

        await self.app(scope, receive, with_cookie)


def _is_page(scope: Scope) -> bool:
    path = scope.get("path", "")
    root = scope.get("root_path", "").rstrip("/")
    return path in PAGE_PATHS or (bool(root) and path.removeprefix(root) in PAGE_PATHS)


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == visitors.COOKIE:
                    return val
    return None


def _set_cookie(token: str, https: bool) -> bytes:
    on_space = bool(os.environ.get("SPACE_ID", "").strip())
    attributes = ["Path=/", f"Max-Age={MAX_AGE_S}", "HttpOnly"]
    attributes += ["SameSite=None", "Secure"] if on_space else ["SameSite=Lax", *(["Secure"] if https else [])]
    return f"{visitors.COOKIE}={token}; {'; '.join(attributes)}".encode("latin-1")
