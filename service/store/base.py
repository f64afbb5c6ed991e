"""What the service needs of a monitoring store: the :class:`Store` Protocol and its row types.

Every implementation (``service.store.sql``) imports its types from here; this module imports
no implementation. Page cursors are opaque strings: the store encodes the ``next_cursor`` it
returns and decodes the one it is given, raising :class:`InvalidCursor` for any other string.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from xentcore.summary import BatchSummary

if TYPE_CHECKING:
    from service.store.calset import CalibrationSet
    from service.store.fits import Kind
    from service.store.kept import Kept
    from service.store.labels import LabelCounts
    from service.store.payload import FlaggedItems
    from service.store.sums import StreamsTable, SumsTable
    from service.store.windows import Piece

__all__ = [
    "Expired",
    "FlaggedPage",
    "InvalidCursor",
    "Store",
    "StoreUnavailable",
    "StoredBatch",
    "StreamInfo",
    "Sums",
    "decode_cursor",
    "encode_cursor",
]

#: Row ids are 64-bit signed integers (SQL BIGINT): a cursor beyond them is not one of ours.
_MAX_ROW_ID = 2**63 - 1


class InvalidCursor(ValueError):
    """A page cursor this store did not hand out (the route answers 422 on ``cursor``)."""


def encode_cursor(*parts: int) -> str:
    """The ``next_cursor`` of a page: its integer parts (row ids, offsets) as dot-separated
    decimals, URL-safe base64 without padding. Every store uses this one format, so a cursor can
    be checked (and refused with a 422) even while the database is unreachable."""
    text = ".".join(str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int = 2) -> tuple[int, ...]:
    """The ``parts`` integers behind a ``next_cursor``; :class:`InvalidCursor` when it is not
    one (not base64, not ``parts`` decimal integers, the first outside 1 .. 2**63 - 1 or
    another outside 0 .. 2**63 - 1)."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        values = tuple(int(p) for p in text.split("."))
    except ValueError:  # not base64, not UTF-8 or not integers (binascii.Error included)
        raise InvalidCursor(f"not a cursor of this store: {cursor[:64]!r}") from None
    if len(values) != parts or not all(p.isdigit() for p in text.split(".")):
        raise InvalidCursor(f"not a cursor of this store: {cursor[:64]!r}")
    if not 0 < values[0] <= _MAX_ROW_ID or not all(0 <= v <= _MAX_ROW_ID for v in values):
        raise InvalidCursor("cursor out of range")
    return values


class StoreUnavailable(RuntimeError):
    """The store could not be opened (yet)."""


@dataclass(frozen=True)
class Sums:
    """The sums of a set of batches: how many, and their merged summary."""

    n_batches: int
    summary: BatchSummary

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.n_batches + other.n_batches, self.summary + other.summary)


@dataclass(frozen=True)
class Expired:
    """What one retention pass deleted (``skipped``: another process was running it)."""

    batches: int
    rollups: int
    items: int = 0
    skipped: bool = False


#: A page of flagged items (dicts of the API's fields, ``time`` in epoch seconds) and the
#: cursor of the next page (None on the last).
FlaggedPage = tuple[list[dict[str, Any]], str | None]


@dataclass(frozen=True)
class StoredBatch:
    """A batch row read back: its time (epoch seconds), task and summary."""

    time: float
    task: str
    summary: BatchSummary


class StreamInfo(NamedTuple):
    """A stream as listed by :meth:`Store.stream_names`."""

    stream: str
    #: the time of its newest batch, epoch seconds
    last_seen: float
    n_batches: int
    #: the distinct tasks of its batches, sorted (``binary``, ``multiclass``, ``sequences``...)
    tasks: tuple[str, ...]


class Store(Protocol):
    """What the service needs of a monitoring store."""

    def ping(self) -> bool:
        """True when the store answers (used by /readyz)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def record(
        self,
        *,
        stream: str,
        task: str,
        summary: BatchSummary,
        flagged: FlaggedItems | None = None,
        idempotency_key: str | None = None,
        at: float | None = None,
        kept: Kept | None = None,
    ) -> bool:
        """Write a batch, its flagged items, its kept items and its rollups atomically.

        True when written, False when the idempotency key was already recorded; raises on
        store errors.
        """
        ...

    def has_stream(self, stream: str) -> bool:
        """True when the stream was recorded (and has not expired)."""
        ...

    def first_time(self, stream: str, before: float) -> float | None:
        """The time of the stream's oldest retained batch, when it is before ``before``."""
        ...

    def sums(
        self, stream: str, pieces: Sequence[Piece], width: float | None, *, labels: bool = False
    ) -> SumsTable:
        """The sums of the window ``pieces`` (``service.store.windows``) per bucket
        ``floor(start / width)`` (key 0 without a width); empty buckets are absent. With
        ``labels``, the label sums (``xentcore.feedback.LABEL_SUMS``) instead."""
        ...

    def label(self, stream: str, ids: Sequence[Any], labels: Sequence[Any]) -> LabelCounts:
        """Apply late labels to the newest kept item of each id, all or nothing; raises
        ``LabelProblem`` (nothing written) for a label of the wrong form for its item."""
        ...

    def calibration_set(
        self,
        stream: str,
        *,
        confidence: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> CalibrationSet:
        """The stream's calibration set in [since, until) for a confidence method."""
        ...

    def put_fit(self, stream: str, kind: Kind, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store the next version of a risk policy or calibrator; returns it with ``version``
        and ``fitted_at``."""
        ...

    def get_fit(
        self, stream: str, kind: Kind, name: str, version: int | None = None
    ) -> dict[str, Any] | None:
        """The newest (or the given) version of a policy or calibrator; None if absent."""
        ...

    def list_fits(self, stream: str, kind: Kind) -> list[dict[str, Any]]:
        """The newest version of each policy (or calibrator) of a stream, by name."""
        ...

    def index_items(self, *, max_items: int = 50_000) -> int:
        """Write the lookup keys of kept batches recorded since the last call (off the request
        path), up to about ``max_items``; returns how many were written."""
        ...

    def items(
        self,
        stream: str,
        *,
        since: float | None = None,
        until: float | None = None,
        audit: bool | None = None,
        labeled: bool | None = None,
        flagged: bool | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Kept items, newest first, filtered, and the next page's cursor."""
        ...

    def streams(self) -> StreamsTable:
        """Every stream, by name, with its lifetime totals (row i of the table: stream i)."""
        ...

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> FlaggedPage:
        """Flagged items, newest first, and the next page's cursor (None on the last page).

        Each item has ``time`` (epoch seconds), ``id``, ``index``, ``confidence``, ``loss``,
        ``predicted``, ``label`` and ``reasons``. ``cursor`` is a ``next_cursor`` this store
        returned; any other string raises :class:`InvalidCursor`.
        """
        ...

    def expire(
        self,
        *,
        now: float,
        retention: float,
        rollup_retention: float,
        item_retention: float | None = None,
    ) -> Expired:
        """Delete raw rows older than ``retention``, rollups older than ``rollup_retention``
        and kept items older than ``item_retention`` seconds, in bounded chunks."""
        ...
