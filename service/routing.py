"""Plain routes for the scoring endpoints: the request path an agent calls on every decision.

The scoring endpoints take the raw ``Request`` and parse their body themselves
(``service.parsing``), so FastAPI's per-request machinery (dependency solving, body and
response models) does nothing for them but costs about 70 us a request, a sixth of a small
batch's time. :func:`plain_routes` puts a Starlette route in front of each: it matches first and
calls the same endpoint. The FastAPI route stays behind it for the OpenAPI document (and is the
``route`` the metrics label with), so the schema, the error handlers (installed on the app, not
the route) and every answer are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

__all__ = ["PlainRoute", "plain_routes"]


class PlainRoute(Route):
    """A Starlette route serving an APIRoute's endpoint directly (see the module docstring)."""

    def __init__(self, api_route: APIRoute) -> None:
        super().__init__(
            api_route.path,
            api_route.endpoint,
            methods=sorted(api_route.methods or ()),
            name=api_route.name,
            include_in_schema=False,
        )
        self.api_route = api_route

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self.api_route  # the template the request metrics are labelled by
        return match, child


def plain_routes(routes: Iterable[BaseRoute]) -> list[Any]:
    """A PlainRoute for each APIRoute of ``routes`` (their endpoints must take only the
    ``Request``)."""
    return [PlainRoute(r) for r in routes if isinstance(r, APIRoute)]
