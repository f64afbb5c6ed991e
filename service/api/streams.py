"""Monitoring read API (README, "Monitoring"): streams, windowed summaries, flagged items."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import reduce
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request

from service.schemas import STREAM_PATTERN
from service.store import InvalidCursor, Store, StoredBatch, StreamInfo
from xentcore.summary import BatchSummary, figures, reliability

__all__ = ["parse_bucket", "parse_time", "router"]

router = APIRouter(prefix="/v1/streams", tags=["monitoring"])
log = logging.getLogger("xent.monitoring")
T = TypeVar("T")

MAX_BUCKETS = 10_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No batch was ever recorded under this stream"},
    422: {"description": "Invalid query parameter"},
    503: {"description": "The monitoring store is unavailable"},
}

StreamName = Annotated[str, Path(pattern=STREAM_PATTERN, description="The stream's name")]
_TIME = {"format": "date-time"}
Since = Annotated[
    str | None,
    Query(
        description="ISO 8601 start (inclusive); UTC if no offset",
        examples=["2026-11-23T00:00:00Z"],
        json_schema_extra=_TIME,
    ),
]
Until = Annotated[
    str | None,
    Query(
        description="ISO 8601 end (exclusive); default now",
        examples=["2026-11-24T00:00:00Z"],
        json_schema_extra=_TIME,
    ),
]


def _query_error(name: str, msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", name], "msg": msg, "type": "value_error"}])


def parse_time(value: str | None, name: str) -> float | None:
    """ISO 8601 -> epoch seconds (a time without offset is UTC)."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _query_error(name, "expected an ISO 8601 time such as 2026-11-23T10:00:00Z") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def parse_bucket(value: str | None) -> float | None:
    """A duration such as ``30s``, ``5m``, ``1h``, ``1d`` or ``1w`` -> seconds."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhdw])\s*", value)
    if not m or int(m.group(1)) == 0:
        raise _query_error("bucket", "expected a positive duration such as 5m, 1h or 1d")
    return float(int(m.group(1)) * _UNITS[m.group(2)])


def iso(t: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with a Z."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _read(request: Request, query: Callable[[Store], T]) -> T:
    """Run a read on the store; 503 (logged) when the store is missing or fails.

    A page cursor the store did not hand out (:class:`InvalidCursor`) is the client's error:
    422 on the ``cursor`` query parameter.
    """
    store: Store | None = getattr(request.app.state, "store", None)
    if store is None:
        raise HTTPException(503, "monitoring store unavailable")
    try:
        return query(store)
    except InvalidCursor:
        raise _query_error("cursor", "not a cursor returned by this endpoint") from None
    except Exception:
        log.exception("monitoring store read failed")
        raise HTTPException(503, "monitoring store unavailable") from None


def _merged(rows: list[StoredBatch]) -> BatchSummary:
    return reduce(lambda a, b: a + b, (r.summary for r in rows), BatchSummary())


def _bucket_row(start: float, end: float, s: BatchSummary) -> dict[str, Any]:
    return {"start": iso(start), "end": iso(end), **figures(s)}


@router.get("", summary="Every stream with its totals and last-seen time", responses=_ERRORS)
def list_streams(request: Request) -> dict[str, Any]:
    """Each stream recorded so far, by name, with its all-time figures and when it was last seen.

    ``tasks`` lists the distinct tasks of its batches, sorted (``binary``, ``multiclass``,
    ``multilabel``, ``sequences``): what kind of data the stream holds.
    """

    def query(store: Store) -> list[tuple[StreamInfo, BatchSummary]]:
        return [(info, _merged(store.batches_in(info.stream))) for info in store.stream_names()]

    out = []
    for info, total in _read(request, query):
        out.append(
            {
                "stream": info.stream,
                "n_batches": info.n_batches,
                "last_seen": iso(info.last_seen),
                "tasks": list(info.tasks),
                "total": figures(total),
            }
        )
    return {"streams": out}


@router.get(
    "/{stream}/summary", summary="Exact figures of a stream over a time window", responses=_ERRORS
)
def stream_summary(
    request: Request,
    stream: StreamName,
    since: Since = None,
    until: Until = None,
    bucket: Annotated[
        str | None,
        Query(
            description="Bucket width: 30s, 5m, 1h, 1d, 1w; one bucket when absent", examples=["5m"]
        ),
    ] = None,
) -> dict[str, Any]:
    """Figures recomputed exactly from the recorded sums of every batch in [since, until).

    ``total`` also carries ``reliability``, the window's 15 uniform calibration bins
    (``lower``, ``upper``, ``count``, ``mean_confidence``, ``accuracy``; nulls when empty).
    Buckets are aligned to multiples of their width since the Unix epoch (UTC) and only
    buckets holding at least one batch are listed, oldest first. Without ``bucket`` there is
    one bucket spanning the window (from ``since``, or the first batch, to ``until``, or now).
    """
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise _query_error("until", "must be after since")
    width = parse_bucket(bucket)
    rows = _read(request, lambda store: store.batches_in(stream, t0, t1))
    if not rows and t0 is None and t1 is None:
        raise HTTPException(404, f"no batch recorded under stream {stream!r}")
    total = _merged(rows)
    end = t1 if t1 is not None else datetime.now(UTC).timestamp()
    if width is None:
        start = t0 if t0 is not None else (rows[0].time if rows else end)
        buckets = [_bucket_row(start, end, total)] if rows else []
    else:
        groups: dict[int, BatchSummary] = {}
        for r in rows:
            key = math.floor(r.time / width)
            groups[key] = groups.get(key, BatchSummary()) + r.summary
        if len(groups) > MAX_BUCKETS:
            raise _query_error("bucket", f"more than {MAX_BUCKETS} buckets: widen the bucket")
        buckets = [_bucket_row(k * width, (k + 1) * width, s) for k, s in sorted(groups.items())]
    return {
        "stream": stream,
        "since": None if t0 is None else iso(t0),
        "until": iso(end),
        "total": {**figures(total), "reliability": reliability(total)},
        "buckets": buckets,
    }


@router.get(
    "/{stream}/flagged", summary="Flagged items of a stream, newest first", responses=_ERRORS
)
def stream_flagged(
    request: Request,
    stream: StreamName,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="`next_cursor` of the previous page",
        ),
    ] = None,
) -> dict[str, Any]:
    """Flagged items with time, id, index, confidence, loss, predicted, label and reasons.

    ``label`` is the item's true class (its name with ``class_names``; null without labels).
    """
    t0 = parse_time(since, "since")
    items, next_cursor = _read(
        request, lambda store: store.flagged(stream, since=t0, limit=limit, cursor=cursor)
    )
    for item in items:
        item["time"] = iso(item["time"])
        if item["id"] is None:
            del item["id"]
    return {"items": items, "next_cursor": next_cursor}
