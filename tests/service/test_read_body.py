"""read_body: large bodies held once, binary tensors aligned for in-place reading."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from starlette.requests import Request

from service.http import PREALLOCATE_FROM, read_body


def _request(body: bytes, headers: dict[str, str], piece: int = 65_536) -> Request:
    pieces = [body[i : i + piece] for i in range(0, len(body), piece)]

    async def receive() -> dict[str, Any]:
        chunk = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw}, receive)


def test_binary_body_is_aligned_after_the_json() -> None:
    for json_length in (1, 13, 100, 4097):
        tensor = np.arange(PREALLOCATE_FROM // 4 + 7, dtype=np.float32)
        body = b"{" * json_length + tensor.tobytes()
        headers = {
            "Content-Length": str(len(body)),
            "Inference-Header-Content-Length": str(json_length),
        }
        got = asyncio.run(read_body(_request(body, headers)))
        assert isinstance(got, memoryview) and bytes(got) == body
        view = np.frombuffer(got, dtype=np.float32, offset=json_length)
        assert view.ctypes.data % 64 == 0 and np.array_equal(view, tensor)


def test_json_and_small_bodies() -> None:
    big = b"[" + b"0," * PREALLOCATE_FROM + b"0]"
    got = asyncio.run(read_body(_request(big, {"Content-Length": str(len(big))})))
    assert isinstance(got, bytearray) and got == big
    small = b'{"predictions": [0.5]}'
    got = asyncio.run(read_body(_request(small, {"Content-Length": str(len(small))})))
    assert got == small
