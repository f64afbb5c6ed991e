"""API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` when ``XENT_API_KEYS`` is set.

Enforced by an ASGI middleware on every ``/v1/`` and ``/dashboard`` path and on ``/metrics``
(stream names and volumes are not public information; ``XENT_METRICS_PUBLIC=true`` opens it for
a scraper that cannot send a key), before the limits and before any body is read, so a request
without a valid key costs nothing and never holds an in-flight slot. ``/healthz``, ``/readyz``,
``/docs`` and ``/openapi.json`` stay open. Without ``XENT_API_KEYS`` every path is open. (A
FastAPI dependency would do the same at a cost of a few hundred microseconds per request; the
OpenAPI document declares the two schemes instead, see :func:`document_security`.)

The given key is compared with every configured key by ``hmac.compare_digest`` with no early
exit, so the time taken does not depend on which key matched or on how many leading characters
were right (only, unavoidably, on the lengths involved).

The dashboard, opened by a browser that cannot add headers, may instead carry the
``xent_session`` cookie (HttpOnly, SameSite=Strict, Secure over https) that
``POST /dashboard/login`` sets. It holds HMAC-SHA256(key, "xent-dashboard-session"), not the key
itself, so a leaked cookie does not reveal a key usable for scoring; it is accepted for GET
requests of ``/dashboard`` and ``/v1/streams`` only (reading the monitoring data, never scoring
or recording), and stops working when its key is removed from ``XENT_API_KEYS``.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.settings import Settings

__all__ = [
    "PROTECTED_PREFIX",
    "SESSION_COOKIE",
    "ApiKeyMiddleware",
    "document_security",
    "given_key",
    "key_matches",
    "session_token",
]

PROTECTED_PREFIX = "/v1/"
METRICS = "/metrics"
DASHBOARD = "/dashboard"
OPEN_ASSETS = "/dashboard/static/"
SESSION_COOKIE = "xent_session"
_SESSION_MESSAGE = b"xent-dashboard-session"
#: GET paths that also accept the dashboard's cookie (read-only monitoring data).
COOKIE_PREFIXES = (DASHBOARD, "/v1/streams")
SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`X-API-Key: <key>`",
    },
}


def key_matches(given: str, keys: list[str]) -> bool:
    """Whether ``given`` equals one of ``keys``, in time independent of which one."""
    candidate = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key.encode())
    return found


def given_key(scope: Scope) -> str | None:
    """The key a request carries: the Bearer token, else the ``X-API-Key`` header."""
    header_key = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = str(value.decode("latin-1")).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key":
            header_key = str(value.decode("latin-1"))
    return header_key


def session_token(key: str) -> str:
    """The dashboard cookie's value for ``key``: an HMAC of a fixed message, never the key."""
    return hmac.new(key.encode(), _SESSION_MESSAGE, hashlib.sha256).hexdigest()


def cookie_token(scope: Scope) -> str | None:
    """The dashboard session cookie's token, if the request carries one."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                return None
            morsel = jar.get(SESSION_COOKIE)
            return morsel.value if morsel is not None else None
    return None


def _wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


def _refusal(scope: Scope) -> Response:
    headers = {"WWW-Authenticate": "Bearer"}
    if scope["path"].startswith(DASHBOARD) and _wants_html(scope):
        page = resources.files("service").joinpath("static", "login.html").read_bytes()
        return HTMLResponse(page, 401, headers=headers)
    return JSONResponse({"detail": "missing or invalid API key"}, 401, headers=headers)


class ApiKeyMiddleware:
    """401 with ``WWW-Authenticate: Bearer`` for a protected path without a valid key."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.keys = list(settings.api_keys)
        self.tokens = [session_token(key) for key in self.keys]
        self.metrics_too = not settings.metrics_public

    def _protected(self, path: str) -> bool:
        if path.startswith(DASHBOARD):
            return not path.startswith(OPEN_ASSETS)
        return path.startswith(PROTECTED_PREFIX) or (self.metrics_too and path == METRICS)

    def _allowed(self, scope: Scope) -> bool:
        given = given_key(scope)
        if given is not None:
            return key_matches(given, self.keys)
        if scope["method"] == "GET" and scope["path"].startswith(COOKIE_PREFIXES):
            token = cookie_token(scope)
            return token is not None and key_matches(token, self.tokens)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys and scope["type"] == "http" and self._protected(scope["path"]):
            if not self._allowed(scope):
                await _refusal(scope)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def document_security(schema: dict[str, Any], *, metrics_too: bool) -> None:
    """Declare the key schemes in an OpenAPI document, on every protected operation: the /v1
    routes, and ``/metrics`` when ``metrics_too`` (that is, unless ``XENT_METRICS_PUBLIC``)."""
    schema.setdefault("components", {})["securitySchemes"] = SCHEMES
    requirement: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(PROTECTED_PREFIX) or (metrics_too and path == METRICS):
            for operation in operations.values():
                operation["security"] = requirement
