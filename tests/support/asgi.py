"""Calling an ASGI app directly with a hand-made request, for framing the HTTP clients refuse."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["call", "post_scope"]

Receive = Callable[[], Awaitable[dict[str, Any]]]


def post_scope(headers: list[tuple[bytes, bytes]], path: str = "/v1/score") -> dict[str, Any]:
    """An HTTP/1.1 ``POST path`` scope from 127.0.0.1 with the given raw headers."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def call(app: Any, receive: Receive, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """POST through ``app``; the messages it sent back."""
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app(post_scope(headers), receive, send)
    return sent
