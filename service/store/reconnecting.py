"""A store that opens lazily and reopens after a failed open, so the service starts without it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from service.store.base import (
    Expired,
    FlaggedPage,
    Store,
    StoreUnavailable,
    decode_cursor,
)
from service.store.calset import CalibrationSet
from service.store.fits import Kind
from service.store.kept import Kept
from service.store.labels import LabelCounts
from service.store.payload import FlaggedItems
from service.store.sums import StreamsTable, SumsTable
from service.store.windows import Piece
from xentcore.summary import BatchSummary

__all__ = ["ReconnectingStore"]

log = logging.getLogger("xent.store")


class ReconnectingStore:
    """A :class:`~service.store.base.Store` that opens lazily and keeps trying after a failed open.

    The service starts and scores even when the database is down at start-up; every use of the
    store then retries the open, at most once every ``retry_seconds``, so ``/readyz`` turns 200
    and batches are recorded again as soon as the database answers, without a restart. A use
    while it is closed raises :class:`StoreUnavailable` (callers treat it like any store error).
    """

    def __init__(self, opener: Callable[[], Store], *, retry_seconds: float = 5.0) -> None:
        self._opener = opener
        self._retry = retry_seconds
        self._store: Store | None = None
        self._last_try = -float("inf")
        self._lock = threading.Lock()

    def current(self) -> Store:
        """The open store, opening it if it is time to try again; raises StoreUnavailable."""
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None and time.monotonic() - self._last_try >= self._retry:
                self._last_try = time.monotonic()
                try:
                    self._store = self._opener()
                    log.info("monitoring store opened")
                except Exception:
                    log.exception(
                        "monitoring store failed to open; retrying in %.0f s", self._retry
                    )
            if self._store is None:
                raise StoreUnavailable("monitoring store unavailable")
            return self._store

    def ping(self) -> bool:
        try:
            return self.current().ping()
        except StoreUnavailable:
            return False

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

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
        return self.current().record(
            stream=stream,
            task=task,
            summary=summary,
            flagged=flagged,
            idempotency_key=idempotency_key,
            at=at,
            kept=kept,
        )

    def has_stream(self, stream: str) -> bool:
        return self.current().has_stream(stream)

    def first_time(self, stream: str, before: float) -> float | None:
        return self.current().first_time(stream, before)

    def sums(
        self, stream: str, pieces: Sequence[Piece], width: float | None, *, labels: bool = False
    ) -> SumsTable:
        return self.current().sums(stream, pieces, width, labels=labels)

    def label(self, stream: str, ids: Sequence[Any], labels: Sequence[Any]) -> LabelCounts:
        return self.current().label(stream, ids, labels)

    def calibration_set(
        self,
        stream: str,
        *,
        confidence: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> CalibrationSet:
        return self.current().calibration_set(
            stream, confidence=confidence, since=since, until=until, limit=limit
        )

    def put_fit(self, stream: str, kind: Kind, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.current().put_fit(stream, kind, name, body)

    def get_fit(
        self, stream: str, kind: Kind, name: str, version: int | None = None
    ) -> dict[str, Any] | None:
        return self.current().get_fit(stream, kind, name, version)

    def list_fits(self, stream: str, kind: Kind) -> list[dict[str, Any]]:
        return self.current().list_fits(stream, kind)

    def index_items(self, *, max_items: int = 50_000) -> int:
        return self.current().index_items(max_items=max_items)

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
        if cursor is not None:
            decode_cursor(cursor)  # a bad cursor is the client's 422, even with the store down
        return self.current().items(
            stream,
            since=since,
            until=until,
            audit=audit,
            labeled=labeled,
            flagged=flagged,
            limit=limit,
            cursor=cursor,
        )

    def streams(self) -> StreamsTable:
        return self.current().streams()

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> FlaggedPage:
        if cursor is not None:
            decode_cursor(cursor)  # a bad cursor is the client's 422, even with the store down
        return self.current().flagged(stream, since=since, limit=limit, cursor=cursor)

    def expire(
        self,
        *,
        now: float,
        retention: float,
        rollup_retention: float,
        item_retention: float | None = None,
    ) -> Expired:
        return self.current().expire(
            now=now,
            retention=retention,
            rollup_retention=rollup_retention,
            item_retention=item_retention,
        )
