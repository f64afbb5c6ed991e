"""Request limits, enforced before any parsing: body size, content type, time.

* 415 for a POST whose ``Content-Type`` is neither JSON nor ``application/octet-stream`` (the
  binary-tensor form); a missing type is read as JSON.
* 413 as soon as the body is known to exceed ``max_body_bytes``: at once from a
  ``Content-Length``, or while the body streams in (chunked uploads have no length), so no more
  than the limit is ever held in memory.
* 408 when the body has not fully arrived ``body_timeout`` seconds after the request started
  (uvicorn itself has no body timeout).

Scoring capacity (503 with ``Retry-After``) is not decided here but once a body has arrived
(``service.slots``), so slow senders cost connections, not capacity.
"""

from __future__ import annotations

import math

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings

__all__ = ["DEADLINE", "JSON_TYPES", "LimitsMiddleware", "json_like"]

JSON_TYPES = frozenset({"application/json", "application/octet-stream"})
#: Scope key of a body deadline set before this middleware (event-loop time): the fast lane,
#: which read the body first, hands its own deadline on (``service.fastlane``).
DEADLINE = "xent.body_deadline"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def json_like(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` (None: none given) is one the scoring routes read."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


class LimitsMiddleware:
    """Pure ASGI middleware applying the limits above (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.body_timeout = settings.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        deadline = scope.get(DEADLINE)
        if deadline is None:
            deadline = anyio.current_time() + self.body_timeout
        await self.app(scope, self._limited(receive, deadline), send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        """A 415 / 413 / 400 decided from the headers alone, or None."""
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None
        content_type = _header(scope, b"content-type")
        if not json_like(content_type):
            return JSONResponse(
                {
                    "detail": "unsupported content type: send application/json "
                    "(or application/octet-stream binary tensors)"
                },
                415,
            )
        encoding = _header(scope, b"content-encoding")
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            return JSONResponse(
                {
                    "detail": f"unsupported content encoding {encoding.strip()[:32]!r}: send the "
                    "body uncompressed"
                },
                415,
                headers={"Accept-Encoding": "identity"},
            )
        length = _header(scope, b"content-length")
        if length is not None:
            if not (length.strip().isascii() and length.strip().isdigit()):
                return JSONResponse({"detail": "invalid Content-Length"}, 400)
            if int(length) > self.max_body:
                return JSONResponse({"detail": self._too_large()}, 413)
        return None

    def _too_large(self) -> str:
        return f"request body exceeds XENT_MAX_BODY_BYTES = {self.max_body} bytes"

    def _limited(self, receive: Receive, deadline: float) -> Receive:
        """``receive`` that counts body bytes (413) and ends the wait for them at ``deadline``
        (408)."""
        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # body done: later calls only wait for a disconnect, no deadline
                return await receive()
            remaining = deadline - anyio.current_time()
            with anyio.move_on_after(max(remaining, 0.0)) as scope:
                message = await receive()
            if scope.cancelled_caught:
                raise HTTPException(
                    408, detail=f"request body not received within {math.ceil(self.body_timeout)} s"
                )
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPException(413, detail=self._too_large())
                complete = not message.get("more_body", False)
            return message

        return limited_receive
