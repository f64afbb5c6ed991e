"""Monitoring read API (README, "Monitoring"): streams, windowed summaries, flagged items."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request

from service.durations import parse_duration
from service.schemas import STREAM_PATTERN
from service.settings import Settings
from service.store import InvalidCursor, Store, SumsTable
from service.store.base import decode_cursor, encode_cursor
from service.store.labels import LabelProblem
from service.store.windows import Piece, plan, top_level
from xentcore.feedback import label_figures_rows
from xentcore.summary import BatchSummary, figures, figures_rows, reliability

__all__ = ["parse_bucket", "parse_cursor", "parse_time", "router"]

router = APIRouter(prefix="/v1/streams", tags=["monitoring"])
log = logging.getLogger("xent.monitoring")
T = TypeVar("T")

MAX_BUCKETS = 10_000
#: The times a query may name and an answer may show, in epoch seconds: from the Unix epoch
#: (the store's times, and the buckets aligned to it, count from there) to the last whole second
#: an ISO 8601 time with a four-digit year can show (a float has no microseconds left there).
MIN_TIME = 0.0
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
TIME_RANGE = "1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z"
#: The widest bucket: 10000w (about 191 years), so that every bucket holding a batch can be shown.
MAX_BUCKET = 10_000 * 604_800
#: Longest window of a bucket width that is not whole minutes (summed from raw rows).
MAX_RAW_WINDOW = 6 * 3600
#: Seconds a read waits for a read slot before its 503.
_SLOT_WAIT = 1.0
_SLOTS_LOCK = threading.Lock()
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
    """ISO 8601 -> epoch seconds (a time without offset is UTC).

    422 on ``name`` for anything else, and for a time outside :data:`TIME_RANGE` once its UTC
    offset is applied (``0001-01-01T00:00:00+01:00`` is in year 0, ``9999-12-31T23:59:59-14:00``
    in year 10000; ``9999-12-31T23:59:59.999999Z`` rounds to year 10000 as a float).
    """
    if value is None:
        return None
    text = value.strip()
    try:
        if not (text.isascii() and text.isprintable()):  # fromisoformat stops at a NUL
            raise ValueError(text)
        t = datetime.fromisoformat(text)
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        seconds = t.timestamp()
    except (ValueError, OverflowError):
        raise _query_error(name, "expected an ISO 8601 time such as 2026-11-23T10:00:00Z") from None
    if not MIN_TIME <= seconds <= MAX_TIME:
        raise _query_error(name, f"must lie within {TIME_RANGE} once its offset is applied")
    return seconds


def parse_bucket(value: str | None) -> float | None:
    """A duration such as ``30s``, ``5m``, ``1h``, ``1d`` or ``1w`` -> seconds; 422 on
    ``bucket`` for anything else and for a width over :data:`MAX_BUCKET` (``10000w``)."""
    if value is None:
        return None
    try:  # ASCII only: the pattern's \d would also read the digits of other scripts
        width = parse_duration(value if value.isascii() else "")
    except ValueError as exc:
        raise _query_error("bucket", str(exc)) from None
    if width > MAX_BUCKET:
        raise _query_error("bucket", "at most 10000w (about 191 years)")
    return float(width)


def parse_cursor(value: str | None) -> str | None:
    """A ``next_cursor`` of /flagged, exactly as it was handed out; 422 on ``cursor`` for any
    other string (not base64, not two decimal integers in range, or not in the one form
    :func:`encode_cursor` writes: padding, leading zeros, non-ASCII digits). Checked before
    the store is asked, so a forged cursor is refused even while the store is down."""
    if value is None:
        return None
    try:
        canonical = encode_cursor(*decode_cursor(value))
    except InvalidCursor:
        canonical = None
    if canonical != value:
        raise _query_error("cursor", "not a cursor returned by this endpoint")
    return value


def _bucket_bounds(k: int, width: float) -> tuple[float, float]:
    """Start and end of bucket ``k``; 422 on ``bucket`` when either cannot be shown (a batch
    recorded near the end of :data:`TIME_RANGE`: never with times of this era)."""
    start, end = k * width, (k + 1) * width
    if not MIN_TIME <= start < end <= MAX_TIME:
        raise _query_error("bucket", f"a bucket would end outside {TIME_RANGE}: narrow the bucket")
    return start, end


def iso(t: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with a Z."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _read_slots(request: Request) -> threading.BoundedSemaphore:
    """The process's read slots (``XENT_MAX_STORE_READS``), made on first use."""
    state = request.app.state
    slots: threading.BoundedSemaphore | None = getattr(state, "store_reads", None)
    if slots is None:
        with _SLOTS_LOCK:
            slots = getattr(state, "store_reads", None)
            if slots is None:
                settings: Settings = state.settings
                slots = state.store_reads = threading.BoundedSemaphore(settings.max_store_reads)
    return slots


def _busy(request: Request) -> HTTPException:
    settings: Settings = request.app.state.settings
    return HTTPException(
        503,
        "too many monitoring reads at once: retry shortly",
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


def _read(request: Request, query: Callable[[Store], T]) -> T:
    """Run a read on the store in one of the process's read slots; 503 (logged) when the store
    is missing or fails, 503 + Retry-After when no slot frees within a second.

    A page cursor the store did not hand out (:class:`InvalidCursor`) is the client's error:
    422 on the ``cursor`` query parameter.
    """
    store: Store | None = getattr(request.app.state, "store", None)
    if store is None:
        raise HTTPException(503, "monitoring store unavailable")
    slots = _read_slots(request)
    if not slots.acquire(timeout=_SLOT_WAIT):
        raise _busy(request)
    try:
        return query(store)
    except InvalidCursor:
        raise _query_error("cursor", "not a cursor returned by this endpoint") from None
    except LabelProblem:  # a late label that does not fit its item: the route's 422
        raise
    except Exception:
        log.exception("monitoring store read failed")
        raise HTTPException(503, "monitoring store unavailable") from None
    finally:
        slots.release()


def _bucket_row(start: float, end: float, s: BatchSummary) -> dict[str, Any]:
    return {"start": iso(start), "end": iso(end), **figures(s)}


@router.get("", summary="Every stream with its totals and last-seen time", responses=_ERRORS)
def list_streams(request: Request) -> dict[str, Any]:
    """Each stream recorded so far, by name, with its lifetime figures and when it was last
    seen (read from one row per stream and task: the cost does not grow with history).

    ``tasks`` lists the distinct tasks of its batches, sorted (``binary``, ``multiclass``,
    ``multilabel``, ``sequences``): what kind of data the stream holds. ``n_batches`` and
    ``total`` count every batch since the stream was first recorded; a stream disappears when
    its newest batch is older than ``XENT_ROLLUP_RETENTION``.
    """
    table = _read(request, lambda store: store.streams())
    totals = figures_rows(table.sums.columns())
    out = [
        {
            "stream": info.stream,
            "n_batches": info.n_batches,
            "last_seen": iso(info.last_seen),
            "tasks": list(info.tasks),
            "total": total,
        }
        for info, total in zip(table.infos, totals, strict=True)
    ]
    return {"streams": out}


def _check_window(start: float, end: float, width: float) -> None:
    """422 on ``bucket`` when [start, end) spans more than MAX_BUCKETS buckets, or more than
    MAX_RAW_WINDOW with a width that is not whole minutes (summed from raw rows)."""
    if _bucket_count(start, end, width) > MAX_BUCKETS:
        raise _query_error("bucket", f"more than {MAX_BUCKETS} buckets: widen the bucket")
    if top_level(width) is None and end - start > MAX_RAW_WINDOW:
        raise _query_error(
            "bucket",
            "a bucket that is not a whole number of minutes covers at most 6 hours: "
            "narrow the window or use minutes",
        )


def _bucket_rows(sums: SumsTable, width: float) -> list[dict[str, Any]]:
    """One answer row per non-empty bucket, its figures computed for all buckets at once."""
    rows = figures_rows(sums.columns())
    out = []
    for k, row in zip(sums.keys.tolist(), rows, strict=True):
        lo, hi = _bucket_bounds(k, width)
        out.append({"start": iso(lo), "end": iso(hi), **row})
    return out


def _window_sums(
    store: Store, stream: str, pieces: Sequence[Piece], width: float | None
) -> tuple[SumsTable, SumsTable]:
    """The batch sums and the label sums of a window, in one read slot."""
    return store.sums(stream, pieces, width), store.sums(stream, pieces, width, labels=True)


def _bucket_count(start: float, end: float, width: float) -> int:
    """Buckets of ``width`` (aligned to the epoch) that [start, end) touches."""
    return math.ceil(end / width) - math.floor(start / width)


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
    buckets holding at least one batch are listed, oldest first; a window may span at most
    10,000 buckets, and at most 6 hours with a width that is not whole minutes (``30s``,
    ``90s``: those are summed from raw rows). Without ``bucket`` there is one bucket spanning
    the window (from ``since``, or the first batch, to ``until``, or now).

    Bounds (each a 422 naming the parameter): ``since`` and ``until`` must lie within
    1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z once their UTC offset is applied (the store's
    times count from the Unix epoch, and every time of the answer must be printable with a
    four-digit year), ``until`` must be after ``since``, and ``bucket`` is at most ``10000w``
    (about 191 years).

    The figures are read from per-minute, per-hour and per-day rollups plus the raw rows of the
    partial minutes at the window's edges, so a read costs O(buckets), not O(batches). Raw rows
    are kept for ``XENT_RETENTION``: a ``since`` or ``until`` older than that is rounded down
    to its minute, and the answer's ``since`` / ``until`` show the window actually read.
    """
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise _query_error("until", "must be after since")
    width = parse_bucket(bucket)
    now = time.time()
    end = t1 if t1 is not None else now

    def start_of(store: Store) -> tuple[bool, float | None]:
        if not store.has_stream(stream):
            return False, None
        return True, (t0 if t0 is not None else store.first_time(stream, end))

    known, start = _read(request, start_of)
    if not known:
        raise HTTPException(404, f"no batch recorded under stream {stream!r}")
    if start is not None and width is not None:
        _check_window(start, end, width)
    settings: Settings = request.app.state.settings
    window = plan(
        start if start is not None else end, end, width, raw_horizon=now - settings.retention
    )
    sums, labels = _read(request, lambda store: _window_sums(store, stream, window.pieces, width))
    # without a bucket, the one bucket starts at `since`, else at the first batch
    first = window.since if t0 is not None or start is None else start
    answer = _summary(sums, labels, width, first, window.until)
    return {
        "stream": stream,
        "since": None if t0 is None else iso(window.since),
        "until": iso(window.until),
        **answer,
    }


def _summary(
    sums: SumsTable, labels: SumsTable, width: float | None, first: float, until: float
) -> dict[str, Any]:
    """``total`` and ``buckets`` of a summary from the window's batch and label sums."""
    total = sums.total()
    per_bucket = label_figures_rows(labels.aligned(sums.keys))
    if width is None:
        buckets = [_bucket_row(first, until, total)] if len(sums) else []
    else:
        buckets = _bucket_rows(sums, width)
    for row, blocks in zip(buckets, per_bucket, strict=True):
        row.update(blocks)
    return {
        "total": {
            **figures(total),
            "reliability": reliability(total),
            **label_figures_rows(labels.values.sum(axis=0, keepdims=True))[0],
        },
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

    Bounds (each a 422 naming the parameter): ``since`` must lie within
    1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z once its UTC offset is applied; ``cursor`` must
    be a ``next_cursor`` of this endpoint exactly as it was returned (any other string, however
    long or however decoded, is refused before the store is read).
    """
    t0, cursor = parse_time(since, "since"), parse_cursor(cursor)
    items, next_cursor = _read(
        request, lambda store: store.flagged(stream, since=t0, limit=limit, cursor=cursor)
    )
    for item in items:
        item["time"] = iso(item["time"])
        if item["id"] is None:
            del item["id"]
    return {"items": items, "next_cursor": next_cursor}
