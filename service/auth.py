"""API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` when ``XENT_API_KEYS`` is set.

Enforced by an ASGI middleware on every ``/v1/`` path (and ``/metrics`` with
``XENT_METRICS_REQUIRE_KEY``), before the limits and before any body is read, so a request
without a valid key costs nothing and never holds an in-flight slot. ``/healthz``, ``/readyz``,
``/docs`` and ``/openapi.json`` stay open. (A FastAPI dependency would do the same at a cost of
a few hundred microseconds per request; the OpenAPI document declares the two schemes instead,
see :func:`document_security`.)

The given key is compared with every configured key by ``hmac.compare_digest`` with no early
exit, so the time taken does not depend on which key matched or on how many leading characters
were right (only, unavoidably, on the lengths involved).
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.settings import Settings

__all__ = ["PROTECTED_PREFIX", "ApiKeyMiddleware", "document_security", "key_matches"]

PROTECTED_PREFIX = "/v1/"
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


class ApiKeyMiddleware:
    """401 with ``WWW-Authenticate: Bearer`` for a protected path without a valid key."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.keys = list(settings.api_keys)
        self.metrics_too = settings.metrics_require_key

    def _protected(self, path: str) -> bool:
        return path.startswith(PROTECTED_PREFIX) or (self.metrics_too and path == "/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys and scope["type"] == "http" and self._protected(scope["path"]):
            given = given_key(scope)
            if given is None or not key_matches(given, self.keys):
                refusal = JSONResponse(
                    {"detail": "missing or invalid API key"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def document_security(schema: dict[str, Any], *, metrics_too: bool) -> None:
    """Declare the key schemes in an OpenAPI document, on every protected operation."""
    schema.setdefault("components", {})["securitySchemes"] = SCHEMES
    requirement: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(PROTECTED_PREFIX) or (metrics_too and path == "/metrics"):
            for operation in operations.values():
                operation["security"] = requirement
