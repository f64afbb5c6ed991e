"""Kept items in SQL (API.md section 9): a batch's kept items as one columnar value, written
with their batch, and their lookup keys.

A batch's kept items are one columnar value (``xent_kept.payload``, format below): writing
10,000 items is one insert of their arrays and one row queuing the batch in
``xent_kept_pending``. Their lookup keys (``xent_item_keys``: (stream, id) -> (batch,
position)) are added later, off the request path, by :func:`index_pending` (the service's
indexer, ``service.indexing``): one statement per batch, expanded by the database itself (SQLite
``json_each``, PostgreSQL ``jsonb_array_elements_text``), no Python work per row. Until then a
late label's lookup reads the ids of the stream's queued batches (:func:`pending_positions`),
so a label finds its item at once either way. Late labels (``service.store.labels``) are rows
of ``xent_item_labels``, so a kept batch is never rewritten; listing is
``service.store.listing``.

Writes run inside the caller's transaction (:class:`service.store.sql.SqlStore`): a batch, its
kept items and its label sums commit together.

Payload (version 1), little-endian: ``b"XKI1" | uint32 header length | header (JSON) | arrays``;
the header holds ``task``, ``n``, ``n_classes``, ``classes``, ``audit_rate``, ``clip_eps``,
``confidence`` (the method; absent in payloads written before it), ``ids`` and the arrays'
``[name, dtype, shape]``, the arrays are the columns of
:class:`KeptRows` (boolean masks as uint8, multilabel sets as ``np.packbits`` rows).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.store.labelsums import add_label_sums
from service.store.schema import item_keys, item_labels, kept, kept_pending
from xentcore.feedback import label_contributions
from xentcore.keep import KeptRows
from xentcore.types import DEFAULT_EPS

__all__ = [
    "LOOKUP_CHUNK",
    "Kept",
    "KeptBatch",
    "decode_kept",
    "encode_kept",
    "expire_items",
    "id_key",
    "index_pending",
    "kept_ids",
    "pending_positions",
    "take_write_lock",
    "write_kept",
]

_MAGIC = b"XKI1"
_LENGTH = struct.Struct("<I")
#: Ids looked up per query (well under SQLite's 32,766 variables).
LOOKUP_CHUNK = 5000


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
    #: the request's confidence method (``sequence`` for sequences): what ``confidence`` holds
    confidence: str | None = None


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
            "confidence": item.confidence,
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
    #: the confidence method of ``arrays["confidence"]`` (None: kept before it was recorded)
    confidence: str | None = None

    def shown_class(self, k: int) -> Any:
        return self.classes[k] if self.classes is not None and 0 <= k < len(self.classes) else k

    def shown_set(self, packed: npt.NDArray[np.uint8]) -> list[Any]:
        bits = np.unpackbits(packed, count=self.n_classes)
        return [self.shown_class(k) for k in np.flatnonzero(bits).tolist()]

    def set_of(self, name: str, i: int) -> npt.NDArray[np.bool_]:
        """Row ``i`` of a packed multilabel set, as K booleans."""
        return np.unpackbits(self.arrays[name][i], count=self.n_classes).astype(bool)


def _header(view: memoryview) -> tuple[dict[str, Any], int]:
    """The payload's header and the offset of its first array."""
    if bytes(view[:4]) != _MAGIC:
        raise ValueError("not a kept-items payload (bad magic)")
    (length,) = _LENGTH.unpack_from(view, 4)
    return orjson.loads(view[8 : 8 + length]), 8 + length


def kept_ids(payload: bytes) -> list[Any]:
    """The item ids of a kept batch's payload, in order (the header alone is read)."""
    return list(_header(memoryview(payload))[0]["ids"])


def decode_kept(batch_id: int, time: float, payload: bytes) -> KeptBatch:
    view = memoryview(payload)
    header, offset = _header(view)
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
        confidence=header.get("confidence"),
    )


# --- writing a batch -------------------------------------------------------------------------


def write_kept(conn: Connection, *, stream: str, time: float, item: Kept) -> int:
    """Insert a batch's kept items (one payload), queue it for the indexer and add the label
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
    if len(item.ids):
        conn.execute(kept_pending.insert(), {"batch_id": batch_id, "stream": stream})
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


# --- the lookup keys, off the request path --------------------------------------------------


def take_write_lock(conn: Connection) -> None:
    """SQLite: take the database's write lock before reading (a transaction that reads first
    and writes later fails when another writer committed in between); PostgreSQL locks rows."""
    if conn.dialect.name != "postgresql":
        conn.execute(sa.text("UPDATE xent_kept SET n = n WHERE 0"))


def index_pending(conn: Connection) -> int | None:
    """Add the lookup keys of the oldest queued kept batch and take it off the queue (inside
    the caller's transaction); returns its number of items, None when the queue is empty.

    On PostgreSQL the batch is locked (``FOR UPDATE SKIP LOCKED``: concurrent indexers take
    different batches, and a batch that a labels request or retention holds is left for the
    next pass), so retention never deletes a batch while its keys are being added.
    """
    take_write_lock(conn)
    q = (
        sa.select(kept.c.batch_id, kept.c.stream, kept.c.payload)
        .join(kept_pending, kept_pending.c.batch_id == kept.c.batch_id)
        .order_by(kept_pending.c.batch_id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    row = conn.execute(q).first()
    if row is None:
        return None
    batch_id, stream, payload = int(row[0]), str(row[1]), bytes(row[2])
    ids = kept_ids(payload)
    _insert_keys(conn, stream, batch_id, ids)
    conn.execute(kept_pending.delete().where(kept_pending.c.batch_id == batch_id))
    return len(ids)


def pending_positions(
    conn: Connection, stream: str, wanted: set[str]
) -> dict[str, tuple[int, int]]:
    """(batch id, position) of the newest item of each key in ``wanted`` among the stream's
    kept batches whose keys are not written yet (read from their ids)."""
    found: dict[str, tuple[int, int]] = {}
    q = (
        sa.select(kept.c.batch_id, kept.c.payload)
        .join(kept_pending, kept_pending.c.batch_id == kept.c.batch_id)
        .where(kept_pending.c.stream == stream)
    )
    for batch_id, payload in conn.execute(q):
        for idx, value in enumerate(kept_ids(bytes(payload))):
            key = id_key(value)
            if key in wanted:
                at = (int(batch_id), idx)
                if key not in found or at > found[key]:
                    found[key] = at
    return found


def expire_items(conn: Connection, cutoff: float, chunk: int) -> tuple[int, bool]:
    """Delete up to ``chunk`` of the oldest kept batches older than ``cutoff``, with their
    lookup keys, queue entries and late labels; returns (items deleted, more left). The batches
    are locked first (PostgreSQL), so an indexer adding their keys finishes before they go."""
    take_write_lock(conn)
    q = sa.select(kept.c.batch_id, kept.c.n).where(kept.c.time < cutoff)
    q = q.order_by(kept.c.time).limit(chunk)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    rows = conn.execute(q).all()
    ids = [int(r[0]) for r in rows]
    if ids:
        conn.execute(item_keys.delete().where(item_keys.c.batch_id.in_(ids)))
        conn.execute(item_labels.delete().where(item_labels.c.batch_id.in_(ids)))
        conn.execute(kept_pending.delete().where(kept_pending.c.batch_id.in_(ids)))
        conn.execute(kept.delete().where(kept.c.batch_id.in_(ids)))
    return sum(int(r[1]) for r in rows), len(ids) == chunk
