"""What the service needs of a monitoring store: the :class:`Store` Protocol and its row types.

Every implementation (``service.store.sql``) imports its types from here; this module imports
no implementation. Page cursors are opaque strings: the store encodes the ``next_cursor`` it
returns and decodes the one it is given, raising :class:`InvalidCursor` for any other string.
"""

from __future__ import annotations

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
]


class InvalidCursor(ValueError):
    """A page cursor this store did not hand out (the route answers 422 on ``cursor``)."""


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
