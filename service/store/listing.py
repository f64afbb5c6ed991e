"""Listing kept items, newest first, with the review queue's filters (``GET
/v1/streams/{stream}/items``): kept batches are read a few at a time and decoded; a page reads at
most ``_SCAN_BATCHES`` of them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.store.kept import KeptBatch, decode_kept
from service.store.labels import Late, late_labels
from service.store.schema import kept
from xentcore.types import REASONS, SEQUENCE_REASONS

__all__ = ["items_page"]

#: Kept batches read per query while filling a page of items.
_PAGE_BATCHES = 32
#: Kept batches one page reads at most; a page with fewer items then still has a cursor.
_SCAN_BATCHES = 256


def _kept_batches(
    conn: Connection, stream: str, since: float | None, until: float | None, upper: int | None
) -> Iterator[tuple[int, float, bytes]]:
    """(batch id, time, payload) of the stream's kept batches, newest first, a few at a time."""
    while True:
        q = sa.select(kept.c.batch_id, kept.c.time, kept.c.payload).where(kept.c.stream == stream)
        if since is not None:
            q = q.where(kept.c.time >= since)
        if until is not None:
            q = q.where(kept.c.time < until)
        if upper is not None:
            q = q.where(kept.c.batch_id <= upper)
        rows = conn.execute(q.order_by(kept.c.batch_id.desc()).limit(_PAGE_BATCHES)).all()
        for batch_id, t, payload in rows:
            yield int(batch_id), float(t), bytes(payload)
        if len(rows) < _PAGE_BATCHES:
            return
        upper = int(rows[-1][0]) - 1


def _item(b: KeptBatch, i: int, late: Late | None) -> dict[str, Any]:
    a = b.arrays
    names = SEQUENCE_REASONS if b.task == "sequences" else REASONS
    predicted: Any
    if b.task == "sequences":
        predicted = None
    elif b.task == "multilabel":
        predicted = b.shown_set(a["predicted_set"][i])
    else:
        predicted = b.shown_class(int(a["predicted"][i]))
    label: Any = None
    source = None
    loss: float | None = None
    correct: bool | None = None
    if late is not None:
        source, loss, correct = "late", late.loss, late.correct
        if late.label_set is not None:
            label = b.shown_set(np.frombuffer(late.label_set, dtype=np.uint8))
        elif late.label is not None:
            label = late.label if b.task == "sequences" else b.shown_class(late.label)
    elif a["labeled"][i]:
        source, correct = "batch", bool(a["correct"][i])
        value = float(a["loss"][i])
        loss = None if math.isnan(value) else value
        label = (
            b.shown_set(a["label_set"][i])
            if "label_set" in a
            else b.shown_class(int(a["label"][i]))
        )
    conf = float(a["confidence"][i])
    out: dict[str, Any] = {
        "id": b.ids[i],
        "time": b.time,
        "index": i,
        "predicted": predicted,
        "confidence": None if math.isnan(conf) else conf,
        "flagged": bool(a["flagged"][i]),
        "reasons": [n for k, n in enumerate(names) if int(a["reasons"][i]) >> k & 1],
        "audit": bool(a["audit"][i]),
        "label": label,
        "label_source": source,
        "loss": loss,
        "correct": correct,
    }
    if b.task == "sequences":
        out["nll"] = float(a["nll"][i])
        out["n_tokens"] = int(a["n_tokens"][i])
    return out


def items_page(
    conn: Connection,
    *,
    stream: str,
    since: float | None,
    until: float | None,
    audit: bool | None,
    labeled: bool | None,
    flagged: bool | None,
    limit: int,
    at: tuple[int, int] | None,
) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """One page of kept items, newest first (batches by id downwards, items by position
    downwards), and where the next page starts: (batch id, items of it already passed).

    A page reads at most ``_SCAN_BATCHES`` kept batches: with selective filters (a review
    queue that is nearly empty) it may hold fewer items than ``limit``, or none, and still
    carry a cursor; the last page has none."""
    out: list[dict[str, Any]] = []
    at_batch, skip = at if at is not None else (None, 0)
    passed: tuple[int, int] | None = None  # the last batch read whole
    for scanned, (batch_id, t, payload) in enumerate(
        _kept_batches(conn, stream, since, until, at_batch)
    ):
        if scanned == _SCAN_BATCHES and passed is not None:  # bounded work per page
            return out, passed
        b = decode_kept(batch_id, t, payload)
        passed = (batch_id, b.n)
        start = skip if batch_id == at_batch else 0
        order = np.arange(b.n - 1 - start, -1, -1)
        late = late_labels(conn, [batch_id])
        late_idx = np.array(sorted(i for (_, i) in late), dtype=np.int64)
        keep = np.ones(order.shape[0], dtype=bool)
        if audit is not None:
            keep &= (b.arrays["audit"][order] == 1) == audit
        if flagged is not None:
            keep &= (b.arrays["flagged"][order] == 1) == flagged
        if labeled is not None:
            has = (b.arrays["labeled"][order] == 1) | np.isin(order, late_idx)
            keep &= has == labeled
        picked = order[keep]
        room = limit - len(out)
        for i in picked[:room].tolist():
            out.append(_item(b, i, late.get((batch_id, i))))
        if len(out) >= limit:
            if len(picked) > room:
                shown = int(np.flatnonzero(keep)[room - 1]) + 1 + start
                return out, (batch_id, shown)
            return out, (batch_id, b.n)  # the next page starts with the next batch
    return out, None
