"""What the service needs of a monitoring store: the :class:`Store` Protocol and its row types.

Every implementation (``service.store.sql``) imports its types from here; this module imports
no implementation. Page cursors are opaque strings: the store encodes the ``next_cursor`` it
returns and decodes the one it is given, raising :class:`InvalidCursor` for any other string.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from xentcore.summary import BatchSummary

__all__ = [
    "FlaggedRow",
    "InvalidCursor",
    "Store",
    "StoreUnavailable",
    "StoredBatch",
    "StreamInfo",
    "decode_cursor",
    "encode_cursor",
]

#: Row ids are 64-bit signed integers (SQL BIGINT): a cursor beyond them is not one of ours.
_MAX_ROW_ID = 2**63 - 1


class InvalidCursor(ValueError):
    """A page cursor this store did not hand out (the route answers 422 on ``cursor``)."""


def encode_cursor(row_id: int) -> str:
    """The ``next_cursor`` of a page ending at ``row_id``: its decimal digits, URL-safe base64
    without padding. Every store uses this one format, so a cursor can be checked (and refused
    with a 422) even while the database is unreachable."""
    return base64.urlsafe_b64encode(str(row_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row id behind a ``next_cursor``; :class:`InvalidCursor` when it is not one (not
    base64, not a decimal integer, or outside 1 .. 2**63 - 1)."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        value = int(base64.urlsafe_b64decode(padded.encode()).decode())
    except ValueError:  # not base64, not UTF-8 or not an integer (binascii.Error included)
        raise InvalidCursor(f"not a cursor of this store: {cursor[:64]!r}") from None
    if not 0 < value <= _MAX_ROW_ID:
        raise InvalidCursor("cursor out of range")
    return value


class StoreUnavailable(RuntimeError):
    """The store could not be opened (yet)."""


@dataclass(frozen=True)
class FlaggedRow:
    """One flagged item as stored (``item_id``, ``predicted`` and ``label`` any JSON value)."""

    index: int
    item_id: Any
    confidence: float | None
    loss: float | None
    predicted: Any
    label: Any
    reasons: list[str]


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
        flagged: Sequence[FlaggedRow],
        idempotency_key: str | None = None,
        at: float | None = None,
    ) -> bool:
        """Write a batch and its flagged items atomically.

        True when written, False when the idempotency key was already recorded; raises on
        store errors.
        """
        ...

    def batches_in(
        self, stream: str, since: float | None = None, until: float | None = None
    ) -> list[StoredBatch]:
        """The batches of a stream in [since, until), oldest first."""
        ...

    def stream_names(self) -> list[StreamInfo]:
        """Every stream, by name: last-seen epoch seconds, batch count and sorted tasks."""
        ...

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Flagged items, newest first, and the next page's cursor (None on the last page).

        Each item has ``time`` (epoch seconds), ``id``, ``index``, ``confidence``, ``loss``,
        ``predicted``, ``label`` and ``reasons``. ``cursor`` is a ``next_cursor`` this store
        returned; any other string raises :class:`InvalidCursor`.
        """
        ...
