"""Who may talk to the daemon: one ASGI middleware in front of every route.

In order, for every HTTP request:

1. ``Host`` must name this daemon (the bind address, ``localhost``, ``127.0.0.1``, ``[::1]``, the
   advertised address, this machine's interface addresses for a wildcard bind, or an
   ``--allowed-host``). A DNS-rebinding page reaches the daemon under its own name: refused.
2. An ``Origin`` header (browsers send one on cross-origin and on every POST) must be the daemon's
   own origin or an ``--allowed-origin``. A page on another origin (CSRF) is refused before its
   body is read, so a "simple" multipart POST never becomes a workspace.
3. Every route but ``/alive`` needs the bearer token (compared in constant time); while a token
   rotation is under way (``PUT /token`` until ``DELETE /token/previous``) the replaced one too. A browser may
   instead open a page with ``?token=...`` once: the daemon answers with an HttpOnly, SameSite=Strict
   cookie, which then stands for the token on GET/HEAD only (so ``/docs`` works, and a forged
   form POST carrying the cookie still needs the header).

Refusals are ``{"detail": ...}`` with 401 (no token) or 403 (naming the header that was refused).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/alive"})
TOKEN_SCOPE_KEY = "jinad.token"
"""Which token a request carried ("current" or "previous"), for the routes that care."""
COOKIE = "jinad-token"
_SAFE = frozenset({"GET", "HEAD"})
_WILDCARD = {"0.0.0.0", "::", ""}


def split_host_header(value: str) -> str:
    """``'127.0.0.1:8000'`` -> ``'127.0.0.1'``; ``'[::1]:8000'`` -> ``'::1'``; lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def _norm(host: str) -> str:
    host = host.strip().lower().strip("[]")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.rstrip(".")


def interface_addresses() -> set[str]:
    import psutil

    out = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                out.add(_norm(a.address.partition("%")[0]))
    return out


class HostPolicy:
    """The names this daemon answers to."""

    def __init__(self, bind: str, extra: Iterable[str] = ()):
        self.any = "*" in extra
        self.wildcard = bind in _WILDCARD
        self.fixed = {_norm(h) for h in ("localhost", "127.0.0.1", "::1", bind, *extra) if h and h != "*"}
        if self.wildcard:
            self.fixed.add(_norm(socket.gethostname()))
            self.fixed.add(_norm(socket.getfqdn()))
        self._ifaces: set[str] = set()
        self._ifaces_at = -1e9

    def allows(self, host: str) -> bool:
        if self.any:
            return True
        h = _norm(host)
        if h in self.fixed:
            return True
        if not self.wildcard:
            return False
        # a wildcard bind answers on every interface; re-read them at most every 5 s
        if h not in self._ifaces and time.monotonic() - self._ifaces_at > 5:
            self._ifaces, self._ifaces_at = interface_addresses(), time.monotonic()
        return h in self._ifaces


def _origin_of(value: str) -> str | None:
    parts = urlsplit(value.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, *, token: Callable[[], str | None], hosts: HostPolicy,
                 origins: Iterable[str] = (), scheme: str = "http",
                 previous: Callable[[], str | None] = lambda: None):
        """``token`` returns the expected token (the app's lifespan sets it up); ``previous`` the one
        it replaced, still accepted while a rotation is under way (``PUT /token``)."""
        self.app = app
        self.token_source = token
        self.previous_source = previous
        self.hosts = hosts
        self.any_origin = "*" in origins
        self.origins = {o for o in (_origin_of(x) for x in origins if x != "*") if o}
        self.scheme = scheme

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the API has none; never let one past the checks
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host_header = headers.get("host", "")
        if not host_header or not self.hosts.allows(split_host_header(host_header)):
            await _refuse(send, 403, f"Host header {host_header!r} is not allowed: this daemon answers to its "
                                     "bind address, localhost, 127.0.0.1 and [::1] (add others with --allowed-host)")
            return
        origin = headers.get("origin")
        if origin is not None and not self._origin_ok(origin, host_header):
            await _refuse(send, 403, f"Origin header {origin!r} is not allowed: browser pages may not call "
                                     "this daemon (add trusted origins with --allowed-origin)")
            return
        if scope.get("path", "") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        supplied, set_cookie = self._supplied_token(scope, headers, method)
        if supplied is None:
            await _refuse(send, 401, "missing bearer token (send 'Authorization: Bearer <token>'; "
                                     "the token is in <jinad home>/token)", {"www-authenticate": "Bearer"})
            return
        expected = (self.token_source() or "").encode()
        previous = (self.previous_source() or "").encode()
        current = bool(expected) and hmac.compare_digest(supplied, expected)
        if not current and not (previous and hmac.compare_digest(supplied, previous)):
            await _refuse(send, 403, "wrong token")
            return
        scope[TOKEN_SCOPE_KEY] = "current" if current else "previous"  # only the current one may rotate
        if set_cookie:
            send = _with_cookie(send, expected.decode(), secure=self.scheme == "https")
        await self.app(scope, receive, send)

    def _origin_ok(self, origin: str, host_header: str) -> bool:
        if self.any_origin:
            return True
        parsed = _origin_of(origin)
        if parsed is None:  # "null" (sandboxed frames, file:) and anything unparsable
            return False
        if parsed in self.origins:
            return True
        # the daemon's own pages (/docs) are same-origin: scheme and Host (already allowed) match
        return parsed == _origin_of(f"{self.scheme}://{host_header}")

    def _supplied_token(self, scope: Scope, headers: dict[str, str], method: str) -> tuple[bytes | None, bool]:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip().encode(), False
        if method not in _SAFE:
            return None, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0].encode(), True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            return None, False
        if COOKIE in cookie and cookie[COOKIE].value:
            return cookie[COOKIE].value.encode(), False
        return None, False


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name = k.decode("latin-1").lower()
        if name in ("host", "origin", "authorization", "cookie") and name not in out:
            out[name] = v.decode("latin-1")
    return out


async def _refuse(send: Send, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _with_cookie(send: Send, token: str, *, secure: bool) -> Send:
    value = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), (b"set-cookie", value.encode())]
        await send(message)

    return wrapped
