"""The thin layer between a validated batch request and xentcore: check, score, record, dump.

Everything here runs in a worker thread (see ``run_batch``): parsing a large body and scoring
it are CPU-bound and must not hold the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response

from service.errors import RequestInvalid, error_item
from service.metrics import Metrics
from service.monitoring import record_batch
from service.parsing import Parsed, parse_batch
from service.schemas import BatchRequest
from service.settings import Settings
from xentcore import InputError, ScoreResult
from xentcore.score import score_batch
from xentcore.types import FlagRules
from xentcore.validate import Batch, check_batch, check_flag_rules

__all__ = [
    "BatchContext",
    "check_request",
    "compute",
    "core_inputs",
    "dumps",
    "flag_rules",
    "header_length",
    "json_response",
    "read_body",
    "record",
    "run_batch",
    "score_request",
]

B = TypeVar("B", bound=BatchRequest)
T = TypeVar("T")


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


def flag_rules(flag: Any, settings: Settings) -> FlagRules:
    """The request's ``flag`` object (None: ``min_confidence`` = the server setting alone)."""
    raw = None if flag is None else flag.model_dump(exclude_none=True)
    return check_flag_rules(raw, default_min_confidence=settings.min_confidence)


def core_inputs(parsed: Parsed[B], settings: Settings) -> dict[str, Any]:
    """The request as xentcore arguments (binary tensors in place of their refs)."""
    req = parsed.request
    return {
        "predictions": parsed.array(("predictions",), req.predictions),
        "labels": parsed.array(("labels",), req.labels),
        "task": req.task,
        "input_type": req.input_type,
        "ignore_index": req.ignore_index,
        "renormalize": req.renormalize,
        "class_names": req.class_names,
        "sum_tolerance": settings.sum_tolerance if req.sum_tolerance is None else req.sum_tolerance,
        "class_weights": parsed.array(("class_weights",), req.class_weights),
        "sample_weights": parsed.array(("sample_weights",), req.sample_weights),
        "pos_weight": req.pos_weight,
        "label_smoothing": req.label_smoothing,
        "focal_gamma": req.focal_gamma,
        "focal_alpha": req.focal_alpha,
        "confidence": req.confidence,
        "decision_threshold": req.decision_threshold,
        "clip_eps": req.clip_eps,
    }


def check_request(parsed: Parsed[B], settings: Settings) -> Batch:
    """xentcore's ``check_batch`` on the request."""
    return check_batch(**core_inputs(parsed, settings))


def _check_ids(ids: list[Any] | None, n_items: int) -> None:
    if ids is not None and len(ids) != n_items:
        raise InputError(("ids",), f"expected {n_items} ids (one per prediction), got {len(ids)}")


@dataclass(frozen=True)
class BatchContext:
    """What a route's view needs besides the result."""

    request: BatchRequest
    ids: list[Any] | None
    recorded: bool | None
    extra: dict[str, Any]


def score_request(parsed: Parsed[B], settings: Settings) -> tuple[Batch, ScoreResult]:
    """Check and score a parsed batch request."""
    batch = check_request(parsed, settings)
    _check_ids(parsed.request.ids, batch.n_items)
    return batch, score_batch(batch, flag_rules(parsed.request.flag, settings))


def record(
    request: Request, req: BatchRequest, result: ScoreResult, metrics: Metrics
) -> bool | None:
    """Record the batch when it names a stream; None when it does not."""
    if req.stream is None:
        return None
    return record_batch(
        request.app.state.store,
        stream=req.stream,
        task=result.task,
        result=result,
        ids=req.ids,
        idempotency_key=request.headers.get("Idempotency-Key"),
        metrics=metrics.streams,
    )


View = Callable[[BatchContext, ScoreResult], dict[str, Any]]


async def run_batch(
    request: Request,
    model: type[B],
    view: View,
    *,
    endpoint: str,
    extra: Callable[[Parsed[B]], dict[str, Any]] | None = None,
) -> Response:
    """Read the body, then parse, score, record and serialize it off the event loop.

    ``extra(parsed)``, when given, computes more fields (calibration) for the view to place.
    """
    body = await read_body(request)
    settings: Settings = request.app.state.settings
    metrics: Metrics = request.app.state.metrics
    length = header_length(request)

    def scored() -> tuple[Parsed[B], ScoreResult, dict[str, Any]]:
        parsed = parse_batch(body, model, header_length=length, settings=settings)
        _, result = score_request(parsed, settings)
        return parsed, result, (extra(parsed) if extra is not None else {})

    parsed, result, more = await compute(scored, len(body), settings)
    recorded = None
    if parsed.request.stream is not None:  # a database write: never on the event loop
        recorded = await in_thread(lambda: record(request, parsed.request, result, metrics))
    metrics.items.labels(endpoint, result.task).inc(result.n_items)
    ctx = BatchContext(parsed.request, parsed.request.ids, recorded, more)
    return json_response(await compute(lambda: dumps(view(ctx, result)), len(body), settings))


#: Bodies from this size on are read into one preallocated buffer (see :func:`read_body`).
PREALLOCATE_FROM = 1 << 20
_ALIGN = 64


async def read_body(request: Request) -> bytes | bytearray | memoryview:
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
