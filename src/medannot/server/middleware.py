"""Guards that run before any route (pure ASGI, no body parsing): security headers, the Host allow-list,
request-body limits, and authentication of every ``/api`` call except ``POST /api/login``.

Order, outermost first: :class:`SecurityHeaders` -> :class:`HostCheck` (400) -> :class:`BodyLimit`
(413: the declared ``Content-Length`` at once, streamed and chunked bodies while they arrive) ->
:class:`AuthGate` (401 before any body is read or parsed) -> the routes. JSON bodies are bounded by
``max_json_bytes``, uploads, masks and drafts by ``max_upload_bytes``, the login form by
:data:`LOGIN_BODY_LIMIT`. Every refusal is a short JSON ``{"detail": ...}`` without server paths
(:func:`public_message`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from medannot.errors import MedannotError
from medannot.server.settings import is_loopback

LOGIN_BODY_LIMIT = 16 * 1024
"""Largest ``POST /api/login`` body (bytes): a user name and a password of at most a few hundred characters."""
AUTH_STATE_KEY = "medannot_user"
"""Where :class:`AuthGate` leaves the authenticated user in the request scope's ``state``."""
PUBLIC_API = frozenset({("POST", "/api/login")})
UPLOAD_ROUTES = (
    ("POST", re.compile(r"^/api/projects/[^/]+/cases/?$")),
    ("POST", re.compile(r"^/api/cases/[^/]+/versions/?$")),
    ("PUT", re.compile(r"^/api/cases/[^/]+/draft/?$")),
    ("PUT", re.compile(r"^/monailabel/[^/]+/datastore/label/?$")),  # MONAI Label label upload (server.monailabel)
)
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; worker-src 'self' blob:; font-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def public_message(error: BaseException | str, limit: int = 300) -> str:
    """A one-line message for a client: the first line, absolute paths cut to their last part, at most ``limit`` characters."""
    if isinstance(error, MedannotError):
        text = f"{error.path.name}: {error.reason}" if error.path is not None else error.reason
    else:
        text = str(error)
    line = (text.strip().splitlines() or [""])[0]
    line = _ABSOLUTE_PATH.sub(lambda m: re.split(r"[\\/]", m.group(0).rstrip("\\/"))[-1], line)
    return line[:limit] or type(error).__name__


async def send_json(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a whole JSON response."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value
    return None


class SecurityHeaders:
    """Add ``nosniff``, a strict CSP, ``no-referrer``, ``DENY`` framing, ``no-store`` on ``/api`` and HSTS over TLS."""

    def __init__(self, app: Any, csp_for: Callable[[str], str] | None = None) -> None:
        self.app = app
        self.csp_for = csp_for or (lambda _path: CSP)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        extra = [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", self.csp_for(path).encode()),
                 (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
        if path.startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def decorated(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *((k, v) for k, v in extra if k not in present)]}
            await send(message)

        await self.app(scope, receive, decorated)


def host_allowed(host: str, allowed: list[str]) -> bool:
    """True when the ``Host`` header value (port removed) matches an allowed name (``*``, ``*.domain``, exact)."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    for pattern in allowed:
        p = pattern.strip().lower().strip("[]")
        if p == "*" or p == name or (p.startswith("*.") and name.endswith(p[1:]) and len(name) > len(p) - 1):
            return True
    return False


class HostCheck:
    """Answer 400 when the ``Host`` header is not an allowed name (blocks DNS rebinding of a loopback server)."""

    def __init__(self, app: Any, allowed: list[str]) -> None:
        self.app, self.allowed = app, list(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            return await self.app(scope, receive, send)
        host = (_header(scope, b"host") or b"").decode("latin-1")
        if not host or not host_allowed(host, self.allowed):
            return await send_json(send, 400, {"detail": "host not allowed; use the server's configured name (--allowed-host)"})
        return await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Answer 413 when a request body passes its route's limit, declared (``Content-Length``) or streamed (chunked).

    Args:
        app: The wrapped ASGI app.
        json_limit: Bytes allowed for every route but uploads, masks, drafts and login.
        upload_limit: Bytes allowed for uploads, masks and drafts.
    """

    def __init__(self, app: Any, json_limit: int, upload_limit: int) -> None:
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    def limit_for(self, method: str, path: str) -> int:
        """The body limit of one route (bytes)."""
        if (method, path.rstrip("/")) in PUBLIC_API:
            return LOGIN_BODY_LIMIT
        if any(method == m and rx.match(path) for m, rx in UPLOAD_ROUTES):
            return self.upload_limit
        return self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("method", "GET"), scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None:
            text = declared.decode("latin-1").strip()
            if not text.isdigit():
                return await send_json(send, 400, {"detail": "Content-Length must be a number of bytes"})
            if int(text) > limit:
                return await self._too_large(send, limit)
        state = {"seen": 0, "over": False, "started": False}

        async def limited_receive() -> dict:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    raise _TooLarge
            return message

        async def guarded_send(message: dict) -> None:
            if state["over"]:
                return  # the app's answer to a body we cut short is dropped: the client gets the 413
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:  # noqa: BLE001 - _TooLarge, possibly wrapped (ExceptionGroup) or turned into another error
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._too_large(send, limit)

    @staticmethod
    async def _too_large(send: Send, limit: int) -> None:
        await send_json(send, 413, {"detail": f"request body larger than {limit} bytes; send less (the server's limit)"})


class AuthGate:
    """Refuse ``/api`` calls without a valid bearer token (401) before any body is read.

    The user found is left in ``scope["state"][AUTH_STATE_KEY]`` for :func:`medannot.server.deps.current_user`.

    Args:
        app: The wrapped ASGI app.
        lookup: ``lookup(token) -> User | None`` (run in a worker thread; it opens its own session).
    """

    def __init__(self, app: Any, lookup: Callable[[str], Any]) -> None:
        self.app, self.lookup = app, lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or (scope.get("method"), path.rstrip("/")) in PUBLIC_API:
            return await self.app(scope, receive, send)
        header = (_header(scope, b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        user = None
        if scheme.lower() == "bearer" and token and len(token) <= 200:
            user = await anyio.to_thread.run_sync(self.lookup, token)
        if user is None:
            return await send_json(send, 401, {"detail": "log in first: send 'Authorization: Bearer <token>' from POST /api/login"},
                                   [(b"www-authenticate", b"Bearer")])
        scope.setdefault("state", {})[AUTH_STATE_KEY] = user
        return await self.app(scope, receive, send)


def client_is_loopback(scope_or_host: Mapping[str, Any] | str | None) -> bool:
    """True when the request comes from a loopback address (a scope's ``client``, or an address)."""
    if scope_or_host is None or isinstance(scope_or_host, str):
        host = scope_or_host
    else:
        client = scope_or_host.get("client")
        host = client[0] if client else None
    return bool(host) and is_loopback(str(host))
