"""A stream's calibration set (API.md section 9) as arrays, for fits (API.md section 10).

The calibration set over a window: kept items labelled in their own batch, plus audited kept
items with a late label; a late label replaces the batch's (a correction). Only batches with
a label sum row (``xent_label_batches``) can hold such items, so only they are read.

For a confidence method ``m`` an item's confidence is the one its batch recorded when the batch
used ``m``; for ``max_probability`` every item has it (the kept top-label probability), so
batches scored with another method still count. Items of other batches are left out (their
confidence of ``m`` is not kept) and counted in ``other_method``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.store.kept import KeptBatch, decode_kept
from service.store.labels import late_labels
from service.store.schema import kept, label_batches

__all__ = ["CalibrationSet", "calibration_set"]

#: Kept batches read per query.
_CHUNK = 64


@dataclass(frozen=True)
class CalibrationSet:
    """The calibration set's items: confidence, correctness, predicted class (-1 where none,
    e.g. multilabel) and, for fits on kept rows, the task and the rows (log-probabilities or
    binary p; None where an item kept none), in the order of their batches."""

    confidence: npt.NDArray[np.float64]
    correct: npt.NDArray[np.bool_]
    predicted: npt.NDArray[np.int64]
    tasks: tuple[str, ...]
    n_classes: int
    rows: list[npt.NDArray[Any]]
    labels: list[npt.NDArray[Any]]
    other_method: int
    #: whether the window held more than the limit (the newest items were taken)
    truncated: bool = False


def _batches(
    conn: Connection, stream: str, since: float | None, until: float | None
) -> Iterator[KeptBatch]:
    """The stream's kept batches that hold labelled items, newest first, a few at a time."""
    before: int | None = None
    while True:
        q = (
            sa.select(kept.c.batch_id, kept.c.time, kept.c.payload)
            .join(label_batches, label_batches.c.batch_id == kept.c.batch_id)
            .where(kept.c.stream == stream, label_batches.c.lab_n > 0)
        )
        if before is not None:
            q = q.where(kept.c.batch_id < before)
        if since is not None:
            q = q.where(kept.c.time >= since)
        if until is not None:
            q = q.where(kept.c.time < until)
        rows = conn.execute(q.order_by(kept.c.batch_id.desc()).limit(_CHUNK)).all()
        for batch_id, t, payload in rows:
            yield decode_kept(int(batch_id), float(t), bytes(payload))
        if len(rows) < _CHUNK:
            return
        before = int(rows[-1][0])


def calibration_set(
    conn: Connection,
    stream: str,
    *,
    confidence: str,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> CalibrationSet:
    """The stream's calibration set in [since, until) for the confidence method ``confidence``
    (``sequence`` for a sequences stream): at most ``limit`` items, the newest batches' (so a
    read is bounded however long the window)."""
    conf: list[npt.NDArray[np.float64]] = []
    correct: list[npt.NDArray[np.bool_]] = []
    predicted: list[npt.NDArray[np.int64]] = []
    rows: list[npt.NDArray[Any]] = []
    labels: list[npt.NDArray[Any]] = []
    tasks: set[str] = set()
    n_classes = 0
    other = 0
    taken = 0
    truncated = False
    for b in _batches(conn, stream, since, until):
        if limit is not None and taken >= limit:
            truncated = True
            break
        a = b.arrays
        late = late_labels(conn, [b.batch_id])
        ok = a["correct"] == 1
        in_set = a["labeled"] == 1
        label = a["label"].copy()
        if late:  # a late label of an audited item joins; of an item in the set, corrects it
            at = np.fromiter((i for _, i in late), dtype=np.int64, count=len(late))
            late_ok = np.fromiter((v.correct for v in late.values()), dtype=bool, count=len(late))
            late_label = np.array([-1 if v.label is None else v.label for v in late.values()])
            take = (a["audit"][at] == 1) | in_set[at]
            at, late_ok, late_label = at[take], late_ok[take], late_label[take]
            in_set[at] = True
            ok[at] = late_ok
            label[at] = np.where(late_label >= 0, late_label, label[at])
        idx = np.flatnonzero(in_set)
        if limit is not None and taken + idx.size > limit:
            idx, truncated = idx[: limit - taken], True
        if idx.size == 0:
            continue
        if b.confidence == confidence:
            c = a["confidence"][idx]
        elif confidence in ("max_probability", "sequence") and b.task != "multilabel":
            c = a["top_prob"][idx]
        else:
            other += int(idx.size)
            continue
        taken += int(idx.size)
        tasks.add(b.task)
        n_classes = max(n_classes, b.n_classes)
        conf.append(np.asarray(c, dtype=np.float64))
        correct.append(ok[idx])
        pred = a["predicted"][idx] if a["predicted"].ndim == 1 else np.full(idx.size, -1)
        predicted.append(np.asarray(pred, dtype=np.int64))
        if "row" in a:
            rows.append(np.asarray(a["row"][idx]))
            labels.append(label[idx])
    return CalibrationSet(
        confidence=np.concatenate(conf) if conf else np.zeros(0),
        correct=np.concatenate(correct) if correct else np.zeros(0, dtype=bool),
        predicted=np.concatenate(predicted) if predicted else np.zeros(0, dtype=np.int64),
        tasks=tuple(sorted(tasks)),
        n_classes=n_classes,
        rows=rows,
        labels=labels,
        other_method=other,
        truncated=truncated,
    )
