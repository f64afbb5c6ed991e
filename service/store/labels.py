"""Late labels in SQL (API.md section 9): find the newest kept item of each id, score each
label on the kept row (:func:`xentcore.feedback.late_outcomes`), store it in
``xent_item_labels``, and add the difference of each item's label sums (new minus old: a
replaced label leaves no trace) to its batch's and its periods' sums. Runs inside the caller's
transaction, so a labels request is all or nothing; what it reads is locked first, so
concurrent requests on the same items take turns.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from service.store.kept import (
    LOOKUP_CHUNK,
    KeptBatch,
    decode_kept,
    id_key,
    pending_positions,
    take_write_lock,
)
from service.store.labelsums import add_label_sums
from service.store.schema import item_keys, item_labels, kept
from xentcore.feedback import label_contributions, late_outcomes

__all__ = ["LabelCounts", "LabelProblem", "Late", "apply_labels", "late_labels"]


@dataclass(frozen=True)
class LabelCounts:
    """What a labels request did (API.md section 9); ``correct``: matched labels that agreed
    with the item's prediction (the realized-accuracy metric)."""

    matched: int
    replaced: int
    unknown: int
    unknown_ids: list[Any]
    correct: int = 0


class LabelProblem(ValueError):
    """A label of the wrong form for its item: ``index`` into the request's labels."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"labels[{index}]: {reason}")
        self.index = index
        self.reason = reason


def _newest(conn: Connection, stream: str, keys: list[str]) -> dict[str, tuple[int, int]]:
    """(batch id, position) of the newest kept item of ``stream`` for each key that has one:
    among the batches still queued for the indexer (their ids read), then in the lookup keys.

    In this order a batch is never missed on PostgreSQL (each statement reads what was
    committed when it began): one the indexer takes off the queue after the first read has its
    keys committed before the second; one seen in both is found twice, at the same place."""
    unique = list(dict.fromkeys(keys))
    found = pending_positions(conn, stream, set(unique))
    for lo in range(0, len(unique), LOOKUP_CHUNK):
        q = sa.select(item_keys.c.item_id, item_keys.c.batch_id, item_keys.c.idx).where(
            item_keys.c.stream == stream,
            item_keys.c.item_id.in_(unique[lo : lo + LOOKUP_CHUNK]),
        )
        for key, batch_id, idx in conn.execute(q):
            at = (int(batch_id), int(idx))
            if key not in found or at > found[key]:
                found[key] = at
    return found


def _locked(conn: Connection, batch_ids: Sequence[int]) -> list[int]:
    """The kept batches among ``batch_ids`` that still exist, locked until the end of the
    transaction on PostgreSQL (``FOR UPDATE``, in id order: concurrent requests on the same
    items take turns, and never deadlock on them)."""
    ids = sorted(set(batch_ids))
    if conn.dialect.name != "postgresql":
        return ids
    out: list[int] = []
    for lo in range(0, len(ids), LOOKUP_CHUNK):
        q = (
            sa.select(kept.c.batch_id)
            .where(kept.c.batch_id.in_(ids[lo : lo + LOOKUP_CHUNK]))
            .order_by(kept.c.batch_id)
            .with_for_update()
        )
        out.extend(int(b) for b in conn.execute(q).scalars())
    return out


def _load(conn: Connection, batch_ids: Sequence[int]) -> dict[int, KeptBatch]:
    out: dict[int, KeptBatch] = {}
    ids = sorted(set(batch_ids))
    for lo in range(0, len(ids), LOOKUP_CHUNK):
        q = sa.select(kept.c.batch_id, kept.c.time, kept.c.payload).where(
            kept.c.batch_id.in_(ids[lo : lo + LOOKUP_CHUNK])
        )
        for batch_id, t, payload in conn.execute(q):
            out[int(batch_id)] = decode_kept(int(batch_id), float(t), bytes(payload))
    return out


@dataclass(frozen=True)
class Late:
    label: int | None
    label_set: bytes | None
    loss: float | None
    correct: bool


def late_labels(conn: Connection, batch_ids: Sequence[int]) -> dict[tuple[int, int], Late]:
    out: dict[tuple[int, int], Late] = {}
    ids = sorted(set(batch_ids))
    for lo in range(0, len(ids), LOOKUP_CHUNK):
        q = sa.select(
            item_labels.c.batch_id,
            item_labels.c.idx,
            item_labels.c.label,
            item_labels.c.label_set,
            item_labels.c.loss,
            item_labels.c.correct,
        ).where(item_labels.c.batch_id.in_(ids[lo : lo + LOOKUP_CHUNK]))
        for b, i, label, label_set, loss, correct in conn.execute(q):
            out[(int(b), int(i))] = Late(
                None if label is None else int(label),
                None if label_set is None else bytes(label_set),
                None if loss is None else float(loss),
                bool(correct),
            )
    return out


def _label_value(batch: KeptBatch, value: Any, i: int) -> Any:
    """The stored label of a late ``value`` for an item of ``batch``; LabelProblem if wrong."""
    task, k, classes = batch.task, batch.n_classes, batch.classes
    if task == "multilabel":
        if (
            not isinstance(value, list)
            or len(value) != k
            or any(isinstance(v, bool) or v not in (0, 1) for v in value)
        ):
            raise LabelProblem(i, f"a multilabel item needs a list of {k} values 0 or 1")
        return np.array(value, dtype=bool)
    if isinstance(value, str):
        if classes is None or value not in classes:
            known = "no class_names" if classes is None else f"class_names {classes[:10]}"
            raise LabelProblem(i, f"{value!r} is not a class of this item ({known})")
        return classes.index(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabelProblem(i, "must be a class index, a class name, 0/1, or a list of 0/1")
    if task in ("binary", "sequences") and value not in (0, 1):
        what = "a verdict" if task == "sequences" else "a binary label"
        raise LabelProblem(i, f"{what} must be 0 or 1, got {value}")
    if task == "multiclass" and not 0 <= value < k:
        raise LabelProblem(i, f"class index {value} out of range [0, {k})")
    return value


@dataclass
class _Matched:
    """The matched labels of one kept batch: request indices, positions, stored values."""

    batch: KeptBatch
    request: list[int]
    idx: list[int]
    values: list[Any]


def apply_labels(
    conn: Connection, *, stream: str, ids: Sequence[Any], labels: Sequence[Any]
) -> LabelCounts:
    """Apply late labels to the newest kept item of each id (inside the caller's transaction;
    LabelProblem before anything is written when a label does not fit its item)."""
    keys = [id_key(v) for v in ids]
    # SQLite: concurrent labels requests (and the indexer, retention) take turns
    take_write_lock(conn)
    found = _newest(conn, stream, keys)
    batches = _load(conn, _locked(conn, [b for b, _ in found.values()]))
    groups: dict[int, _Matched] = {}
    unknown_ids: list[Any] = []
    n_unknown = 0
    for i, key in enumerate(keys):
        at = found.get(key)
        batch = None if at is None else batches.get(at[0])
        if at is None or batch is None:
            n_unknown += 1
            if len(unknown_ids) < 100:
                unknown_ids.append(ids[i])
            continue
        group = groups.setdefault(at[0], _Matched(batch, [], [], []))
        group.request.append(i)
        group.idx.append(at[1])
        group.values.append(_label_value(batch, labels[i], i))
    if not groups:
        return LabelCounts(0, 0, n_unknown, unknown_ids)
    late = late_labels(conn, list(groups))
    deltas: dict[str, list[tuple[int, float, npt.NDArray[np.float64]]]] = {}
    params: list[dict[str, Any]] = []
    matched = replaced = n_correct = 0
    for batch_id in sorted(groups):
        g = groups[batch_id]
        loss, correct, delta, had = _score_group(g, late)
        matched += len(g.idx)
        replaced += had
        n_correct += int(correct.sum())
        deltas.setdefault(g.batch.task, []).append((batch_id, g.batch.time, delta))
        for idx, value, lo, ok in zip(
            g.idx, g.values, loss.tolist(), correct.tolist(), strict=True
        ):
            multi = isinstance(value, np.ndarray)
            params.append(
                {
                    "batch_id": batch_id,
                    "idx": idx,
                    "label": None if multi else int(value),
                    "label_set": np.packbits(value).tobytes() if multi else None,
                    "loss": None if lo != lo else lo,
                    "correct": int(ok),
                }
            )
    params.sort(key=lambda p: (p["batch_id"], p["idx"]))
    _upsert_late(conn, params)
    for task, per in sorted(deltas.items()):
        add_label_sums(conn, stream, task, per)
    return LabelCounts(matched, replaced, n_unknown, unknown_ids, n_correct)


def _score_group(
    g: _Matched, late: dict[tuple[int, int], Late]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64], int]:
    """(loss, correct) of the group's new labels, the difference of the batch's label sums
    (new minus old) and how many items had a label before."""
    b = g.batch
    a = b.arrays
    idx = np.array(g.idx, dtype=np.int64)
    rows = a["row"][idx] if "row" in a else None
    predicted_set = None
    if b.task == "multilabel":
        predicted_set = np.unpackbits(a["predicted_set"][idx], axis=1, count=b.n_classes).astype(
            bool
        )
        values = np.stack(g.values)
    else:
        values = np.array(g.values, dtype=np.int64)
    loss, correct = late_outcomes(
        b.task, a["predicted"][idx], values, rows=rows, predicted_set=predicted_set, eps=b.eps
    )
    # in the calibration set: audited, or labelled in its own batch (not an ignored item)
    cal = (a["audit"][idx] == 1) | (a["labeled"][idx] == 1)
    top = a["top_prob"][idx]
    flagged = a["flagged"][idx] == 1
    new = label_contributions(
        correct=correct, loss=loss, top_prob=top, flagged=flagged, in_calibration=cal
    )
    old_loss = a["loss"][idx].copy()
    old_correct = a["correct"][idx] == 1
    had = a["labeled"][idx] == 1
    for j, i in enumerate(g.idx):
        prev = late.get((b.batch_id, i))
        if prev is not None:
            old_loss[j] = math.nan if prev.loss is None else prev.loss
            old_correct[j] = prev.correct
            had[j] = True
    old = label_contributions(
        correct=old_correct, loss=old_loss, top_prob=top, flagged=flagged, in_calibration=cal
    )
    delta = (new - np.where(had[:, None], old, 0.0)).sum(axis=0)
    return loss, correct, delta, int(had.sum())


def _upsert_late(conn: Connection, params: list[dict[str, Any]]) -> None:
    conn.execute(_late_upsert(conn.dialect.name), params)


@functools.cache
def _late_upsert(dialect: str) -> Any:
    """INSERT a late label, or replace the item's previous one."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(item_labels)
    stmt = stmt.on_conflict_do_update(
        index_elements=[item_labels.c.batch_id, item_labels.c.idx],
        set_={
            "label": stmt.excluded.label,
            "label_set": stmt.excluded.label_set,
            "loss": stmt.excluded.loss,
            "correct": stmt.excluded.correct,
        },
    )
    return stmt
