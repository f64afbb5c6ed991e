"""``POST /v1/streams/{stream}/summaries``: record a set scored elsewhere as one batch.

An offline evaluation (``xent score FILE --url ... --stream ...``, a Spark or Dask job) cannot
post its ten million rows to ``/v1/score``; it posts their :class:`xentcore.Summary` instead:
the exact sums and counts the store keeps of every batch (:meth:`Summary.to_dict`). The route
checks it three times (its shape by :class:`~service.schemas.SummaryState`, its values by
:meth:`Summary.from_dict`, the relations between its counts here), then records it like a
scored batch: one batch row at the time of the request (no flagged items: an offline run
lists those in its own outputs) with its rollups, counted in the stream's item and flag
metrics. The stream's figures (``/summary``, ``/v1/streams``, the dashboard) then include it
exactly as if its items had been scored here.

The write is the whole point of the request, so a store that is down or too slow is a 503
(the write may still land: a retry with the same ``Idempotency-Key`` then answers
``duplicate: true`` and writes nothing).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service.api.pipeline import RECORD_GRACE, check_idempotency_key
from service.api.streams import StreamName
from service.errors import RequestInvalid, error_item, validation_details
from service.http import dumps, json_response, read_body
from service.metrics import Metrics
from service.openapi import ERRORS
from service.schemas import SummaryRecorded, SummaryState
from service.settings import Settings
from service.store import Store
from xentcore.state import Summary
from xentcore.types import REASONS, SEQUENCE_REASONS

__all__ = ["check_summary", "router"]

router = APIRouter(prefix="/v1/streams", tags=["monitoring"])
log = logging.getLogger("xent.monitoring")

#: The key (and bin) a ``Summary.from_dict`` message names first: ``'bin_count[3]'``.
_NAMED = re.compile(r"^Summary\.from_dict: '(\w+)(?:\[(\d+)\])?'")
#: Counts that cannot exceed another count: (count, bound).
_AT_MOST = (
    ("n_scored", "n_items"),
    ("confidence_count", "n_items"),
    ("flagged", "n_items"),
    ("n_classified", "n_items"),
    ("correct", "n_classified"),
)


def _invalid(loc: tuple[str | int, ...], msg: str) -> RequestInvalid:
    return RequestInvalid([error_item(loc, msg, "value_error")])


def _parse(body: bytes | bytearray | memoryview) -> Summary:
    """The body as a Summary; 422 naming the field (and bin) otherwise."""
    try:
        state = SummaryState.model_validate_json(bytes(body))
    except ValidationError as exc:
        raise RequestInvalid(validation_details(exc)) from None
    try:
        summary = Summary.from_dict(state.model_dump())
    except ValueError as exc:  # what the shape allows and the core does not (a pair's halves)
        text = str(exc)
        m = _NAMED.match(text)
        if m is None:
            raise _invalid((), text.removeprefix("Summary.from_dict: ")) from None
        loc = (m[1],) if m[2] is None else (m[1], int(m[2]))
        raise _invalid(loc, text[m.end() :].lstrip(": ")) from None
    problem = check_summary(summary)
    if problem is not None:
        raise _invalid(*problem)
    return summary


def _bins(summary: Summary) -> Iterator[tuple[int, float, float, float]]:
    """(bin, count, confidence sum, correct sum) of each bin, rounded."""
    for b, (n, conf, right) in enumerate(
        zip(summary.bin_count, summary.bin_confidence_sum, summary.bin_correct_sum, strict=True)
    ):
        yield b, n.hi, conf.hi, right.hi


def check_summary(summary: Summary) -> tuple[tuple[str | int, ...], str] | None:
    """The first relation a summary of scored items breaks, as (location, message); None
    when it keeps them all.

    Counts within their totals (``n_scored``, ``confidence_count``, ``flagged`` and
    ``n_classified`` <= ``n_items``, ``correct`` <= ``n_classified``, each flag reason <=
    ``flagged``); sums >= 0 (losses, weights and confidences are); every bin count a whole
    number, the bins' counts within ``n_classified``, and each bin's confidence and correct
    sums within [0, its count] (a confidence is in [0, 1]).
    """
    for name, bound in _AT_MOST:
        have, most = getattr(summary, name), getattr(summary, bound)
        if have > most:
            return (name,), f"{have} is more than {bound} ({most})"
    reasons = SEQUENCE_REASONS if summary.task == "sequences" else REASONS
    for name in reasons:
        if getattr(summary, name) > summary.flagged:
            return (name,), f"{getattr(summary, name)} is more than flagged ({summary.flagged})"
    for name in ("loss_sum", "weight_sum", "confidence_sum"):
        if getattr(summary, name).hi < 0:
            return (name,), "a sum of non-negative values cannot be negative"
    total = 0.0
    for b, n, conf, right in _bins(summary):
        if n < 0 or n != int(n):
            return ("bin_count", b), f"{n!r} is not a count"
        for name, value in (("bin_confidence_sum", conf), ("bin_correct_sum", right)):
            if not 0 <= value <= n:
                return (name, b), f"{value!r} is outside [0, the bin's count {n:g}]"
        total += n
    if total > summary.n_classified:
        return (
            "bin_count",
        ), f"the bins hold {total:g} items, n_classified is {summary.n_classified}"
    return None


def _write(request: Request, stream: str, summary: Summary, key: str | None) -> bool:
    """Record the summary; True when written, False when the key was already recorded. 503
    when there is no store or the write fails (logged and counted)."""
    store: Store | None = request.app.state.store
    metrics: Metrics = request.app.state.metrics
    if store is None:
        metrics.streams.store_errors.inc()
        raise HTTPException(503, "monitoring store unavailable")
    assert summary.task is not None
    try:
        return store.record(
            stream=stream,
            task=summary.task,
            summary=summary.to_batch_summary(),
            idempotency_key=key,
        )
    except Exception:
        log.exception("summary for stream %r not recorded", stream)
        metrics.streams.store_errors.inc()
        raise HTTPException(503, "monitoring store unavailable: not recorded") from None


def _count(metrics: Metrics, stream: str, summary: Summary) -> None:
    """The stream's item and flag counters (the loss and confidence histograms take item
    values, which a summary does not have)."""
    assert summary.task is not None
    name = metrics.streams.label(stream)
    metrics.streams.items.labels(name, summary.task).inc(summary.n_items)
    reasons = SEQUENCE_REASONS if summary.task == "sequences" else REASONS
    for reason in reasons:
        count = getattr(summary, reason)
        if count:
            metrics.streams.flagged.labels(name, summary.task, reason).inc(count)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SummaryRecorded, "description": "The summary is recorded"},
    **{code: ERRORS[code] for code in (401, 408, 413, 415, 422)},
    503: {
        "model": ERRORS[503]["model"],
        "description": "The monitoring store is unavailable or did not answer in time: not "
        "recorded (retry with the same `Idempotency-Key`).",
    },
}


@router.post(
    "/{stream}/summaries",
    summary="Record a scored set's Summary as one batch of the stream",
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SummaryState.model_json_schema()}},
        }
    },
)
async def post_summary(request: Request, stream: StreamName) -> Response:
    """Record ``xentcore.Summary.to_dict()`` of a set scored elsewhere (``xent score FILE
    --url ... --stream NAME``, a Spark, Dask or Ray job) as one batch of ``stream``, at the
    time of the request: the stream's figures, buckets, totals and dashboard then count its
    items exactly as if they had been scored here (its flagged items are not kept: there are
    none to list).

    422 names the field (``loc``: ``["body", "loss_sum", 0]``, ``["body", "bin_count", 3]``)
    of a body that is not a format-1 summary with a task, or whose counts do not fit together
    (``flagged`` above ``n_items``, a negative sum, a fractional bin count...). An
    ``Idempotency-Key`` already recorded for the stream writes nothing again and answers
    ``duplicate: true``; a store that is down or slower than ``XENT_STORE_TIMEOUT`` is a 503.
    """
    check_idempotency_key(request)
    summary = _parse(await read_body(request))
    key = request.headers.get("Idempotency-Key")
    settings: Settings = request.app.state.settings
    written: bool | None = None
    with anyio.move_on_after(settings.store_timeout + RECORD_GRACE):
        written = await anyio.to_thread.run_sync(
            lambda: _write(request, stream, summary, key), abandon_on_cancel=True
        )
    metrics: Metrics = request.app.state.metrics
    if written is None:
        log.error("summary for stream %r: store write still running, answering 503", stream)
        metrics.streams.store_errors.inc()
        retry = {"Retry-After": str(settings.retry_after_seconds)}
        raise HTTPException(503, "monitoring store did not answer in time: retry", headers=retry)
    if written:
        _count(metrics, stream, summary)
    assert summary.task is not None
    answer = {
        "stream": stream,
        "task": summary.task,
        "n_items": summary.n_items,
        "duplicate": not written,
    }
    return json_response(dumps(answer))
