"""uvicorn's httptools HTTP protocol with bounds on the request head: its size and its time.

uvicorn limits neither with httptools (h11 stops at 16 KiB but has no timer either): a client can
hold a connection forever by sending half a request line, or grow the server's memory by never
ending a header. ``xent serve`` runs this protocol instead, which

* closes a connection whose request head (request line and headers) has not arrived within
  ``XENT_HEADER_TIMEOUT`` seconds, counted from the connection's start or, on a kept-alive
  connection, from the first byte of the next request (408 if part of a head had arrived);
* answers 431 and closes when a head grows past ``XENT_MAX_HEADER_BYTES``.

Bodies are bounded separately (``XENT_MAX_BODY_BYTES``, ``XENT_BODY_TIMEOUT``; see limits.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import get_settings

__all__ = ["GuardedHttpToolsProtocol"]


def _plain_response(status: bytes, message: str) -> bytes:
    body = message.encode("ascii")
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that bounds the size and the arrival time of request heads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.head_limit = settings.max_header_bytes
        self.head_timeout = settings.header_timeout
        self.in_head = False
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self.in_head:  # the first byte of a request on a kept-alive connection
            self._start_head()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.in_head and not self.transport.is_closing():
            self.head_bytes += len(data)
            if self.head_bytes > self.head_limit:
                self._refuse(b"431 Request Header Fields Too Large", "request head too large")

    def _start_head(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        self._stop_head_timer()
        self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        if self.head_bytes:
            self._refuse(b"408 Request Timeout", "request head not received in time")
        else:
            self.transport.close()

    def _refuse(self, status: bytes, message: str) -> None:
        self.in_head = False
        self._stop_head_timer()
        self.transport.write(_plain_response(status, message))
        self.transport.close()
