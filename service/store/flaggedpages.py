"""Flagged items of a stream, newest first, page by page (``GET /v1/streams/{stream}/flagged``):
a batch's flagged items are one columnar value (``service.store.payload``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import sqlalchemy as sa

from service.store.base import FlaggedPage, decode_cursor, encode_cursor
from service.store.connections import Connected
from service.store.payload import FlaggedItems, decode
from service.store.schema import flagged

__all__ = ["FlaggedPages"]

#: Flagged-item batches read per query while filling a page.
_PAGE_BATCHES = 64


class FlaggedPages(Connected):
    """The flagged-items reads of :class:`service.store.sql.SqlStore`."""

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> FlaggedPage:
        """Flagged items of ``stream``, newest first, and the cursor of the next page.

        Batches follow their row id downwards and the items of a batch their index downwards;
        the cursor is (batch id, items of that batch already shown), so rows written while a
        client pages never shift a page. Raises :class:`InvalidCursor` for a cursor not made
        here.
        """
        at_batch, skip = decode_cursor(cursor) if cursor is not None else (None, 0)
        items: list[dict[str, Any]] = []
        last: tuple[int, int] | None = None
        for batch_id, t, payload in self._flagged_batches(stream, since, at_batch):
            page = decode(payload)
            start = skip if batch_id == at_batch else 0
            take = min(len(page) - start, limit - len(items))
            rows = len(page) - 1 - start - np.arange(max(take, 0), dtype=np.intp)
            items.extend(_flagged_dicts(page, rows, t))
            if len(items) >= limit:
                last = (batch_id, start + take)
                more = start + take < len(page) or self._older_flagged(stream, since, batch_id)
                return items, (encode_cursor(*last) if more else None)
        return items, None

    def _flagged_batches(
        self, stream: str, since: float | None, at_batch: int | None
    ) -> Iterable[tuple[int, float, bytes]]:
        """(batch id, time, payload) of the stream's flagged batches, newest first, read
        ``_PAGE_BATCHES`` at a time."""
        upper = at_batch
        while True:
            q = sa.select(flagged.c.batch_id, flagged.c.time, flagged.c.payload).where(
                flagged.c.stream == stream
            )
            if since is not None:
                q = q.where(flagged.c.time >= since)
            if upper is not None:
                q = q.where(flagged.c.batch_id <= upper)
            q = q.order_by(flagged.c.batch_id.desc()).limit(_PAGE_BATCHES)
            with self._connection() as conn:
                rows = conn.execute(q).all()
            for batch_id, t, payload in rows:
                yield int(batch_id), float(t), bytes(payload)
            if len(rows) < _PAGE_BATCHES:
                return
            upper = int(rows[-1][0]) - 1

    def _older_flagged(self, stream: str, since: float | None, batch_id: int) -> bool:
        q = sa.select(flagged.c.batch_id).where(
            flagged.c.stream == stream, flagged.c.batch_id < batch_id
        )
        if since is not None:
            q = q.where(flagged.c.time >= since)
        with self._connection() as conn:
            return conn.execute(q.limit(1)).first() is not None


def _nan_none(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]


def _flagged_dicts(page: FlaggedItems, rows: Any, t: float) -> list[dict[str, Any]]:
    """The API's flagged-item dicts of ``page``'s items at ``rows``."""
    rows_list = rows.tolist()
    index = page.index[rows].tolist()
    confidence = _nan_none(page.confidence[rows].tolist())
    loss = _nan_none(page.loss[rows].tolist()) if page.loss is not None else [None] * len(rows_list)
    reasons = page.reason_lists(rows)
    predicted = page.shown(page.predicted, rows)
    label = page.shown(page.label, rows)
    ids = page.id_list(rows)
    return [
        {
            "time": t,
            "id": ids[j],
            "index": index[j],
            "confidence": confidence[j],
            "loss": loss[j],
            "predicted": predicted[j],
            "label": label[j],
            "reasons": reasons[j],
        }
        for j in range(len(rows_list))
    ]
