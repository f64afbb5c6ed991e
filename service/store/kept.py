"""Kept items and their label sums in SQL (API.md section 9): written with their batch, labelled
late, listed newest first.

A batch's kept items are one columnar value (``xent_kept.payload``, format below): writing
10,000 items is one insert of their arrays plus one statement that adds their 10,000 lookup
keys (``xent_item_keys``: (stream, id) -> (batch, position)), expanded by the database itself
(SQLite ``json_each``, PostgreSQL ``unnest``): no Python work per row. Late labels are rows of
``xent_item_labels`` (one per labelled item), so a kept batch is never rewritten.

Writes run inside the caller's transaction (:class:`service.store.sql.SqlStore`): a batch, its
kept items and its label sums commit together, and a labels request is all or nothing.

Payload (version 1), little-endian: ``b"XKI1" | uint32 header length | header (JSON) | arrays``;
the header holds ``task``, ``n``, ``n_classes``, ``classes``, ``audit_rate``, ``ids`` and the
arrays' ``[name, dtype, shape]``, the arrays are the columns of :class:`KeptRows` (boolean masks
as uint8, multilabel sets as ``np.packbits`` rows).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from service.store.schema import (
    LEVELS,
    item_keys,
    item_labels,
    kept,
    label_batches,
    label_rollups,
)
from xentcore.feedback import LABEL_SUMS, KeptRows, label_contributions, late_outcomes
from xentcore.types import DEFAULT_EPS, REASONS, SEQUENCE_REASONS

__all__ = [
    "Kept",
    "LabelCounts",
    "LabelProblem",
    "KeptBatch",
    "add_label_sums",
    "apply_labels",
    "decode_kept",
    "encode_kept",
    "expire_items",
    "expire_label_batches",
    "id_key",
    "items_page",
    "write_kept",
]

_MAGIC = b"XKI1"
_LENGTH = struct.Struct("<I")
#: Ids looked up per query (well under SQLite's 32,766 variables).
_LOOKUP_CHUNK = 5000
#: Kept batches read per query while filling a page of items.
_PAGE_BATCHES = 32
#: Kept batches one page reads at most; a page with fewer items then still has a cursor.
_SCAN_BATCHES = 256


@dataclass(frozen=True)
class Kept:
    """A batch's kept items as the store takes them: the rows, the request's ids, the class
    names (to show and to accept labels by name) and the audit rate."""

    rows: KeptRows
    ids: Sequence[Any]
    class_names: Sequence[str] | None = None
    audit_rate: float | None = None
    #: the request's ``clip_eps``: a late binary label is scored with the batch's clipping
    clip_eps: float = DEFAULT_EPS


def id_key(value: Any) -> str:
    """The stored key of an item id: ``i:12`` for an integer, ``s:abc`` for a string (so 12
    and "12" stay apart); a string holding NUL (which PostgreSQL text cannot hold) is
    ``e:`` and the string with backslashes doubled and NUL written ``\\0``."""
    if isinstance(value, int):
        return f"i:{value}"
    text = str(value)
    if "\x00" in text:
        return "e:" + text.replace("\\", "\\\\").replace("\x00", "\\0")
    return f"s:{text}"


# --- the payload -----------------------------------------------------------------------------


def _columns(rows: KeptRows) -> dict[str, npt.NDArray[Any]]:
    out: dict[str, npt.NDArray[Any]] = {
        "predicted": rows.predicted.astype("<i8"),
        "confidence": rows.confidence.astype("<f8"),
        "top_prob": rows.top_prob.astype("<f8"),
        "flagged": rows.flagged.astype(np.uint8),
        "reasons": rows.reasons.astype(np.uint8),
        "audit": rows.audit.astype(np.uint8),
        "labeled": rows.labeled.astype(np.uint8),
        "label": rows.label.astype("<i8"),
        "loss": rows.loss.astype("<f8"),
        "correct": rows.correct.astype(np.uint8),
    }
    if rows.predicted_set is not None:
        out["predicted_set"] = np.packbits(rows.predicted_set, axis=1)
    if rows.label_set is not None:
        out["label_set"] = np.packbits(rows.label_set, axis=1)
    if rows.row is not None:
        out["row"] = np.ascontiguousarray(rows.row)
    if rows.nll is not None:
        out["nll"] = rows.nll.astype("<f8")
    if rows.n_tokens is not None:
        out["n_tokens"] = rows.n_tokens.astype("<i8")
    return out


def encode_kept(item: Kept) -> bytes:
    """The payload of a batch's kept items (see the module docstring)."""
    rows = item.rows
    arrays = _columns(rows)
    header = orjson.dumps(
        {
            "task": rows.task,
            "n": len(rows),
            "n_classes": rows.n_classes,
            "classes": None if item.class_names is None else list(item.class_names),
            "audit_rate": item.audit_rate,
            "clip_eps": item.clip_eps,
            "ids": list(item.ids),
            "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return b"".join(
        [_MAGIC, _LENGTH.pack(len(header)), header, *(a.tobytes() for a in arrays.values())]
    )


@dataclass(frozen=True)
class KeptBatch:
    """A kept batch read back: its header fields and column arrays (read-only views)."""

    batch_id: int
    time: float
    task: str
    n: int
    n_classes: int
    classes: list[str] | None
    ids: list[Any]
    arrays: dict[str, npt.NDArray[Any]]
    eps: float = DEFAULT_EPS

    def shown_class(self, k: int) -> Any:
        return self.classes[k] if self.classes is not None and 0 <= k < len(self.classes) else k

    def shown_set(self, packed: npt.NDArray[np.uint8]) -> list[Any]:
        bits = np.unpackbits(packed, count=self.n_classes)
        return [self.shown_class(k) for k in np.flatnonzero(bits).tolist()]

    def set_of(self, name: str, i: int) -> npt.NDArray[np.bool_]:
        """Row ``i`` of a packed multilabel set, as K booleans."""
        return np.unpackbits(self.arrays[name][i], count=self.n_classes).astype(bool)


def decode_kept(batch_id: int, time: float, payload: bytes) -> KeptBatch:
    view = memoryview(payload)
    if bytes(view[:4]) != _MAGIC:
        raise ValueError("not a kept-items payload (bad magic)")
    (length,) = _LENGTH.unpack_from(view, 4)
    header = orjson.loads(view[8 : 8 + length])
    offset = 8 + length
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, dtype, shape in header["arrays"]:
        count = int(np.prod(shape))
        a = np.frombuffer(view, dtype=np.dtype(dtype), count=count, offset=offset)
        arrays[name] = a.reshape(shape)
        offset += a.nbytes
    return KeptBatch(
        batch_id=batch_id,
        time=time,
        task=header["task"],
        n=header["n"],
        n_classes=header["n_classes"],
        classes=header["classes"],
        ids=header["ids"],
        arrays=arrays,
        eps=float(header.get("clip_eps", DEFAULT_EPS)),
    )


# --- writing a batch -------------------------------------------------------------------------


def write_kept(conn: Connection, *, stream: str, time: float, item: Kept) -> int:
    """Insert a batch's kept items (one payload, one statement of lookup keys) and the label
    sums of those labelled in it; returns the kept batch's id (its own, never reused: the raw
    batch row may expire first, and SQLite would give its id out again)."""
    rows = item.rows
    inserted = conn.execute(
        kept.insert(),
        {
            "stream": stream,
            "time": time,
            "task": rows.task,
            "n": len(rows),
            "payload": encode_kept(item),
        },
    ).inserted_primary_key
    assert inserted is not None
    batch_id = int(inserted[0])
    _insert_keys(conn, stream, batch_id, item.ids)
    if rows.labeled.any():  # the whole batch came with labels: every labelled item is in the set
        sel = rows.labeled
        sums = label_contributions(
            correct=rows.correct[sel],
            loss=rows.loss[sel],
            top_prob=rows.top_prob[sel],
            flagged=rows.flagged[sel],
            in_calibration=np.ones(int(sel.sum()), dtype=bool),
        ).sum(axis=0)
        add_label_sums(conn, stream, rows.task, [(batch_id, time, sums)])
    return batch_id


def _prefix(ids: Sequence[Any]) -> str | None:
    """``i:`` when every id is an integer, ``s:`` when every id is a string, else None."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
        return "i:"
    if all(isinstance(v, str) and "\x00" not in v for v in ids):
        return "s:"
    return None


def _insert_keys(conn: Connection, stream: str, batch_id: int, ids: Sequence[Any]) -> None:
    """One statement adding (stream, key, batch, position) for every id, the keys made and the
    rows expanded by the database (PostgreSQL ``unnest ... WITH ORDINALITY``, SQLite
    ``json_each``) from the ids as they came: no Python work per item."""
    if not ids:
        return
    prefix = _prefix(ids)
    values: list[Any] = list(ids) if prefix is not None else [id_key(v) for v in ids]
    head = prefix or ""
    params = {"stream": stream, "batch": batch_id, "head": head}
    text = orjson.dumps(values).decode()
    if conn.dialect.name == "postgresql":  # the JSON text is split by the server, in C
        conn.execute(
            sa.text(
                "INSERT INTO xent_item_keys (stream, item_id, batch_id, idx) "
                "SELECT :stream, :head || k, :batch, (i - 1)::int "
                "FROM jsonb_array_elements_text(CAST(:ids AS jsonb)) WITH ORDINALITY AS u(k, i)"
            ),
            {**params, "ids": text},
        )
        return
    conn.execute(
        sa.text(
            "INSERT INTO xent_item_keys (stream, item_id, batch_id, idx) "
            "SELECT :stream, :head || j.value, :batch, j.key FROM json_each(:ids) AS j"
        ),
        {**params, "ids": text},
    )


# --- label sums ------------------------------------------------------------------------------


@functools.cache
def _upsert(table: sa.Table, keys: tuple[str, ...], dialect: str) -> Any:
    """The additive UPSERT of label sums into ``table`` (built once per table and dialect)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={name: table.c[name] + stmt.excluded[name] for name in LABEL_SUMS},
    )


_LEVEL_ORDER = {level: i for i, level in enumerate((0, *LEVELS))}
_FLOAT_SUMS = frozenset(n for n in LABEL_SUMS if n == "lab_loss_sum" or "conf" in n)


def _named(sums: npt.NDArray[np.float64]) -> dict[str, float | int]:
    return {
        name: (v if name in _FLOAT_SUMS else round(v))
        for name, v in zip(LABEL_SUMS, sums.tolist(), strict=True)
    }


def add_label_sums(
    conn: Connection,
    stream: str,
    task: str,
    per_batch: Sequence[tuple[int, float, npt.NDArray[np.float64]]],
) -> None:
    """Add ``sums`` (a vector over LABEL_SUMS) to each (batch id, batch time)'s row and to the
    stream's rollup rows of those times (additive UPSERTs; rollup rows in one fixed order, so
    concurrent writers lock them alike)."""
    dialect = conn.dialect.name
    batch_rows = []
    periods: dict[tuple[int, int], npt.NDArray[np.float64]] = {}
    for batch_id, t, sums in sorted(per_batch, key=lambda b: b[0]):
        batch_rows.append(
            {"batch_id": batch_id, "stream": stream, "time": t, "task": task, **_named(sums)}
        )
        for level, start in ((0, 0), *((lv, math.floor(t / lv) * lv) for lv in LEVELS)):
            key = (level, start)
            periods[key] = periods[key] + sums if key in periods else sums.copy()
    conn.execute(_upsert(label_batches, ("batch_id",), dialect), batch_rows)
    ordered = sorted(periods.items(), key=lambda kv: (_LEVEL_ORDER[kv[0][0]], kv[0][1]))
    conn.execute(
        _upsert(label_rollups, ("stream", "level", "start", "task"), dialect),
        [
            {"stream": stream, "level": lv, "start": st, "task": task, **_named(sums)}
            for (lv, st), sums in ordered
        ],
    )


# --- late labels -----------------------------------------------------------------------------


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
    """(batch id, position) of the newest kept item of ``stream`` for each key that has one."""
    found: dict[str, tuple[int, int]] = {}
    unique = list(dict.fromkeys(keys))
    for lo in range(0, len(unique), _LOOKUP_CHUNK):
        q = sa.select(item_keys.c.item_id, item_keys.c.batch_id, item_keys.c.idx).where(
            item_keys.c.stream == stream,
            item_keys.c.item_id.in_(unique[lo : lo + _LOOKUP_CHUNK]),
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
    for lo in range(0, len(ids), _LOOKUP_CHUNK):
        q = (
            sa.select(kept.c.batch_id)
            .where(kept.c.batch_id.in_(ids[lo : lo + _LOOKUP_CHUNK]))
            .order_by(kept.c.batch_id)
            .with_for_update()
        )
        out.extend(int(b) for b in conn.execute(q).scalars())
    return out


def _load(conn: Connection, batch_ids: Sequence[int]) -> dict[int, KeptBatch]:
    out: dict[int, KeptBatch] = {}
    ids = sorted(set(batch_ids))
    for lo in range(0, len(ids), _LOOKUP_CHUNK):
        q = sa.select(kept.c.batch_id, kept.c.time, kept.c.payload).where(
            kept.c.batch_id.in_(ids[lo : lo + _LOOKUP_CHUNK])
        )
        for batch_id, t, payload in conn.execute(q):
            out[int(batch_id)] = decode_kept(int(batch_id), float(t), bytes(payload))
    return out


@dataclass(frozen=True)
class _Late:
    label: int | None
    label_set: bytes | None
    loss: float | None
    correct: bool


def _late_labels(conn: Connection, batch_ids: Sequence[int]) -> dict[tuple[int, int], _Late]:
    out: dict[tuple[int, int], _Late] = {}
    ids = sorted(set(batch_ids))
    for lo in range(0, len(ids), _LOOKUP_CHUNK):
        q = sa.select(
            item_labels.c.batch_id,
            item_labels.c.idx,
            item_labels.c.label,
            item_labels.c.label_set,
            item_labels.c.loss,
            item_labels.c.correct,
        ).where(item_labels.c.batch_id.in_(ids[lo : lo + _LOOKUP_CHUNK]))
        for b, i, label, label_set, loss, correct in conn.execute(q):
            out[(int(b), int(i))] = _Late(
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
    if conn.dialect.name != "postgresql":
        # SQLite: take the database's write lock before reading anything, so concurrent
        # labels requests (and retention) run one after the other on what they read
        conn.execute(sa.text("UPDATE xent_kept SET n = n WHERE 0"))
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
    late = _late_labels(conn, list(groups))
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
    g: _Matched, late: dict[tuple[int, int], _Late]
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


# --- listing and retention -------------------------------------------------------------------


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


def _item(b: KeptBatch, i: int, late: _Late | None) -> dict[str, Any]:
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
        late = _late_labels(conn, [batch_id])
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


def expire_items(conn: Connection, cutoff: float, chunk: int) -> tuple[int, bool]:
    """Delete up to ``chunk`` of the oldest kept batches older than ``cutoff``, with their
    lookup keys and late labels; returns (items deleted, more left)."""
    rows = conn.execute(
        sa.select(kept.c.batch_id, kept.c.n)
        .where(kept.c.time < cutoff)
        .order_by(kept.c.time)
        .limit(chunk)
    ).all()
    ids = [int(r[0]) for r in rows]
    if ids:
        conn.execute(item_keys.delete().where(item_keys.c.batch_id.in_(ids)))
        conn.execute(item_labels.delete().where(item_labels.c.batch_id.in_(ids)))
        conn.execute(kept.delete().where(kept.c.batch_id.in_(ids)))
    return sum(int(r[1]) for r in rows), len(ids) == chunk


def expire_label_batches(conn: Connection, cutoff: float, chunk: int) -> bool:
    """Delete up to ``chunk`` per-batch label sums older than ``cutoff``; True if more are left.

    They go with the raw rows (``XENT_RETENTION``): a window's edges are read from raw rows
    within that horizon only, and the rollups keep the sums."""
    ids = (
        conn.execute(
            sa.select(label_batches.c.batch_id)
            .where(label_batches.c.time < cutoff)
            .order_by(label_batches.c.time)
            .limit(chunk)
        )
        .scalars()
        .all()
    )
    if ids:
        conn.execute(label_batches.delete().where(label_batches.c.batch_id.in_(ids)))
    return len(ids) == chunk
