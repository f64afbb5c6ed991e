"""Outermost middleware: request id, metrics, and the 500 answer for unexpected errors."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics

__all__ = ["RequestContextMiddleware", "request_id", "route_template"]

log = logging.getLogger("service.errors")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    """The path template of the route serving ``scope`` (``unmatched`` when none does).

    ``routes`` must be the endpoint routes themselves, not the routers that include them.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in routes:  # requests answered before routing (413, 415, 503)
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is 1-64 of ``A-Za-z0-9._:-``, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if _CLIENT_ID.match(text):
                return text
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


#: Generated request ids: 32 hex digits, a random prefix per process then a counter, unique
#: across the workers of a run without a system call per request.
_ID_PREFIX = ""
_ID_COUNTER = itertools.count()


def _seed_ids() -> None:
    """A new prefix and counter (at import, and in a process forked from this one)."""
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX = os.urandom(8).hex()
    _ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


_seed_ids()
os.register_at_fork(after_in_child=_seed_ids)


class RequestContextMiddleware:
    """Gives every request an id (``X-Request-ID``, the client's if it is sane), counts it, and
    answers an unexpected exception with ``500 {"detail": "internal error", "request_id"}`` after
    logging it in full with that id. Nothing of the exception reaches the client.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        status, started = 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        begin = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error in %s %s (request_id=%s)", scope["method"], scope["path"], rid
            )
            if started:
                raise
            status = 500
            response = JSONResponse(
                {"detail": "internal error", "request_id": rid}, 500, headers={"X-Request-ID": rid}
            )
            await response(scope, receive, send)
        finally:
            self.metrics.observe(
                route_template(scope, self.routes),
                scope["method"],
                status,
                time.perf_counter() - begin,
            )
