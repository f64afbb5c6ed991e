"""uvicorn's httptools HTTP protocol with bounds on the request head: its size and its time.

uvicorn limits neither with httptools (h11 stops at 16 KiB but has no timer either): a client can
hold a connection forever by sending half a request line, or grow the server's memory by never
ending a header. ``xent serve`` runs this protocol instead, which

* closes a connection whose request head (request line and headers) has not arrived within
  ``XENT_HEADER_TIMEOUT`` seconds, counted from the connection's start or, on a kept-alive
  connection, from the first byte of the next request (408 if part of a request had arrived);
* answers 431 and closes when a head grows past ``XENT_MAX_HEADER_BYTES``, however its bytes
  were split into reads: the whole head in one read, a byte per read, or a head that starts in
  the middle of a read after a pipelined request.

How the size is counted: while a head is (or may be) arriving, the bytes read are handed to the
parser in pieces no longer than what the head may still grow by, so a head never reaches the
parser past the limit whether it came in one read or in many; a head still incomplete after
``XENT_MAX_HEADER_BYTES`` bytes is refused. A head that begins in the middle of a piece (a
request pipelined behind another one in the same read) is also counted as the parser reports
it (the request target and every header name and value): past the limit, parsing stops and the
connection gets its 431.

Bodies are bounded separately (``XENT_MAX_BODY_BYTES``, ``XENT_BODY_TIMEOUT``; see limits.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import get_settings

__all__ = ["GuardedHttpToolsProtocol"]


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head that outgrew the limit."""


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
        #: a head is (or, on a new connection, may be) arriving: its timer runs
        self.in_head = False
        #: the parser is inside a request: from its first byte to the end of its body
        self.in_message = False
        #: bytes of the current head read so far (from its first byte when head_from_start)
        self.head_bytes = 0
        #: the current head's request target and header names and values, as parsed
        self.head_fields = 0
        self.head_from_start = True
        self.head_too_large = False
        self.head_timer: asyncio.TimerHandle | None = None
        #: the piece being parsed starts between two requests (a head starting in it starts
        #: at its first byte)
        self._piece_at_boundary = False
        #: a request began in the piece being parsed
        self._began_in_piece = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    # -- reading ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; while a head is or may be arriving, in pieces that end where the head
        would outgrow the limit (the limit then holds however the bytes were split)."""
        view = memoryview(data)
        while view and self._parsing():
            size = len(view)
            if self.in_head or not self.in_message:
                size = min(size, max(self.head_limit - self.head_bytes, 1))
            self._parse_piece(view[:size])
            view = view[size:]

    def _parsing(self) -> bool:
        """False once the connection is closing, upgraded or paused on an upgrade (the rest of
        the read is then dropped, as uvicorn does)."""
        return (
            self.parser is not None
            and not self.transport.is_closing()
            and self.transport.get_protocol() is self
            and not self.parser.should_upgrade()
        )

    def _parse_piece(self, piece: memoryview) -> None:
        self._piece_at_boundary = not self.in_message
        self._began_in_piece = False
        super().data_received(piece)  # type: ignore[arg-type]  # httptools reads any buffer
        if not self.in_head or self.transport.is_closing():
            return
        if self._began_in_piece and not self.head_from_start:
            return  # the head began mid-piece: on_url / on_header count this piece's part
        self.head_bytes += len(piece)
        if self.head_bytes >= self.head_limit:  # and the head has not ended: over the limit
            self._refuse_too_large()

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_message = True
        self.head_fields = 0
        self.head_from_start = self._piece_at_boundary
        self._piece_at_boundary = False  # a second request in this piece starts mid-piece
        self._began_in_piece = True
        if not self.in_head:  # the first byte of a request on a kept-alive connection
            self._start_head()

    def on_url(self, url: bytes) -> None:
        self._count_fields(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_fields(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_message = False
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; a 431 when the error is :class:`HeadTooLarge`."""
        if self.head_too_large:
            self._refuse_too_large()
        else:
            super().send_400_response(msg)

    def _count_fields(self, size: int) -> None:
        self.head_fields += size
        if self.head_fields > self.head_limit:
            self.head_too_large = True
            raise HeadTooLarge  # httptools stops; uvicorn calls send_400_response

    # -- the head's timer and refusals --------------------------------------------------------

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
        if self.head_bytes or self.in_message:
            self._refuse(b"408 Request Timeout", "request head not received in time")
        else:
            self.transport.close()

    def _refuse_too_large(self) -> None:
        self._refuse(b"431 Request Header Fields Too Large", "request head too large")

    def _refuse(self, status: bytes, message: str) -> None:
        self.in_head = False
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.transport.write(_plain_response(status, message))
            self.transport.close()
