"""HTTP plumbing shared by the routes: the body, the KServe header, JSON bytes, and where the
work runs (inline on the event loop for a small body, else in a worker thread)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response

from service.errors import RequestInvalid, error_item
from service.settings import Settings

__all__ = [
    "Body",
    "PREALLOCATE_FROM",
    "compute",
    "dumps",
    "header_length",
    "in_thread",
    "is_decimal",
    "json_response",
    "read_body",
]

T = TypeVar("T")
#: A request body as ``read_body`` returns it.
Body = bytes | bytearray | memoryview


def dumps(payload: Any) -> bytes:
    """orjson with numpy arrays serialized natively; NaN and infinities become null."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(content: bytes, status_code: int = 200) -> Response:
    return Response(content, status_code=status_code, media_type="application/json")


def is_decimal(value: str) -> bool:
    """An ASCII decimal integer (``str.isdigit`` also accepts "²", which ``int`` refuses)."""
    value = value.strip()
    return value.isascii() and value.isdigit()


def header_length(request: Request) -> int | None:
    """``Inference-Header-Content-Length`` (binary tensors follow the JSON), or None."""
    value = request.headers.get("inference-header-content-length")
    if value is None:
        return None
    if not is_decimal(value):
        raise RequestInvalid(
            [
                error_item(
                    (),
                    "Inference-Header-Content-Length must be a non-negative integer",
                    "value_error",
                )
            ]
        )
    return int(value)


#: Bodies from this size on are read into one preallocated buffer (see :func:`read_body`).
PREALLOCATE_FROM = 1 << 20
_ALIGN = 64


async def read_body(request: Request) -> Body:
    """The request body, holding it once.

    Starlette's ``request.body()`` keeps every received chunk and then joins them: two copies
    of the body at once, and twice the page faults. With a Content-Length of 1 MiB or more the
    chunks are copied into one buffer of that size as they arrive instead (the limits middleware
    has already refused a length over ``XENT_MAX_BODY_BYTES``; the server enforces the framing).
    """
    declared = request.headers.get("content-length", "")
    if not is_decimal(declared) or int(declared) < PREALLOCATE_FROM:
        return await request.body()
    size = int(declared)
    json_length = header_length(request)
    text: bytearray | None = None
    if json_length is None:  # JSON: the parser takes bytes-like objects it owns
        text = bytearray(size)
        view = memoryview(text)
    else:
        # Binary tensors: an uninitialised buffer, touched once by the copy, placed so that the
        # first tensor (right after the JSON) starts 64-byte aligned: numpy then reads it in
        # place instead of realigning (copying) an unaligned view.
        raw = np.empty(size + _ALIGN, dtype=np.uint8)
        pad = -(raw.ctypes.data + json_length) % _ALIGN
        view = memoryview(raw.data)[pad : pad + size]
    filled = 0
    async for chunk in request.stream():
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if text is not None and filled == size:
        return text
    return view[:filled]


async def compute(work: Callable[[], T], size: int, settings: Settings) -> T:
    """Run ``work`` for a body of ``size`` bytes: inline when small, else in a worker thread.

    A small batch (``XENT_INLINE_BODY_BYTES``, 16 KiB: at most a few thousand numbers) is
    scored in well under a millisecond, less than the round trip to a worker thread costs;
    anything larger never holds the event loop.
    """
    if size <= settings.inline_body_bytes:
        return work()
    return await in_thread(work)


async def in_thread(work: Callable[[], T]) -> T:
    """Run CPU-bound ``work`` in anyio's worker threads (the event loop stays free)."""
    return await anyio.to_thread.run_sync(work)
