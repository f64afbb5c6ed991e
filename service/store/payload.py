"""The flagged items of one batch as one value: columns, not rows (``xent_flagged.payload``).

A batch of 100,000 items with most of them flagged is one insert of about 3 MB instead of
100,000 rows, and a page of ``/flagged`` decodes only the columns' bytes it needs
(``np.frombuffer``).

Format (version 2; version 1 is still read), all little-endian::

    b"XFI2" | uint32 header length | header (JSON) | array bytes, in the header's order

The header is ``{"n": items, "batch_items": N | null, "reasons": [names], "arrays": [[name,
dtype, count], ...], "classes": [names] | null, "id": [...] | null, "predicted": [...] | null,
"label": [...] | null}``. The arrays:

- ``index`` (int32 or int64), or ``index_bits`` (``np.packbits`` of the batch's N items, bit i
  set = item i flagged): whichever is smaller, so a batch flagged almost entirely costs N / 8
  bytes of positions;
- ``confidence`` and ``loss`` (float64, NaN = none; ``loss`` may be absent);
- ``reasons`` (uint8 bit masks: bit b = ``reasons[b]``);
- ``predicted`` and ``label`` as class indices (int16 or int32, -1 = none; shown as
  ``classes[k]`` when the batch had class names), unless they are JSON values in the header
  (multilabel rows are lists of classes).

``id`` holds the items' ids as the request sent them (JSON values): those of the flagged items,
or, with ``"id_of_batch": true``, those of every item of the batch (written so when at least
half of it is flagged: no gather, and at most twice the ids needed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from xentcore.flags import reason_bits
from xentcore.types import F64

__all__ = ["ClassColumn", "FlaggedItems", "decode", "encode", "reason_bits"]

_MAGIC_V1 = b"XFI1"
_MAGIC = b"XFI2"
_LENGTH = struct.Struct("<I")
_FIXED = {"confidence": "<f8", "loss": "<f8", "reasons": "|u1", "index_bits": "|u1"}

#: ``predicted`` / ``label`` of the flagged items: JSON values (a list), class indices with -1
#: for none (an array, shown through ``FlaggedItems.class_names``), or None.
ClassColumn = list[Any] | npt.NDArray[np.signedinteger[Any]] | None


@dataclass(frozen=True)
class FlaggedItems:
    """The flagged items of one batch, column by column (row j = the j-th flagged item).

    ``reasons`` holds one bit mask per item over ``reason_names`` (bit b set = the item was
    flagged for ``reason_names[b]``). ``ids`` is a list of JSON values (or None); NaN in
    ``confidence`` / ``loss`` = none. ``predicted`` and ``label`` are either lists of JSON
    values or arrays of class indices (-1 = none) shown as ``class_names[k]`` (or ``k``
    without names). ``batch_items``, the size of the batch, lets the positions be kept as a
    bitmap.
    """

    index: npt.NDArray[np.int64]
    confidence: F64
    loss: F64 | None
    reason_names: tuple[str, ...]
    reasons: npt.NDArray[np.uint8]
    ids: list[Any] | None = None
    predicted: ClassColumn = None
    label: ClassColumn = None
    class_names: tuple[str, ...] | None = None
    batch_items: int | None = None
    #: ``ids`` holds the id of every item of the batch (``ids[index[j]]`` is row j's), not
    #: only the flagged ones: cheaper when most items are flagged (no gather, no copy).
    ids_of_batch: bool = False

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def reason_lists(self, rows: npt.NDArray[np.intp]) -> list[list[str]]:
        """The reason names of the items at ``rows``, in ``reason_names`` order."""
        masks = self.reasons[rows].tolist()
        names = self.reason_names
        return [[name for b, name in enumerate(names) if m >> b & 1] for m in masks]

    def id_list(self, rows: npt.NDArray[np.intp]) -> list[Any]:
        """The ids of the items at ``rows`` (None each without ids)."""
        if self.ids is None:
            return [None] * len(rows)
        positions = self.index[rows] if self.ids_of_batch else rows
        return [self.ids[p] for p in positions.tolist()]

    def shown(self, column: ClassColumn, rows: npt.NDArray[np.intp]) -> list[Any]:
        """``predicted`` or ``label`` (``column``) of the items at ``rows`` as the API shows
        them: a class name, a class index, a list of classes, or None."""
        if column is None:
            return [None] * len(rows)
        if isinstance(column, list):
            return [column[r] for r in rows.tolist()]
        picked = column[rows]
        none = picked < 0
        if self.class_names is not None:
            names = np.asarray(self.class_names, dtype=object)
            values = names[np.where(none, 0, picked)]
        else:
            values = picked.astype(object)
        values[none] = None
        return list(values.tolist())


def class_dtype(n_classes: int) -> np.dtype[Any]:
    """The smallest of int16 / int32 that holds class indices below ``n_classes`` and -1."""
    return np.dtype("<i2") if n_classes <= np.iinfo(np.int16).max else np.dtype("<i4")


def _positions(items: FlaggedItems) -> tuple[str, npt.NDArray[Any]]:
    """The flagged positions as ``index`` (int32 / int64) or ``index_bits``, the smaller."""
    index = items.index
    n = items.batch_items
    wide = "<i4" if (len(index) == 0 or int(index.max()) < 2**31) else "<i8"
    if n is not None and (n + 7) // 8 < len(index) * np.dtype(wide).itemsize:
        bits = np.zeros(n, dtype=bool)
        bits[index] = True
        return "index_bits", np.packbits(bits)
    return "index", index.astype(wide)


def encode(items: FlaggedItems) -> bytes:
    """The payload bytes of ``items`` (see the module docstring)."""
    where, positions = _positions(items)
    arrays: dict[str, npt.NDArray[Any]] = {
        where: positions,
        "confidence": items.confidence,
        "reasons": items.reasons,
    }
    if items.loss is not None:
        arrays["loss"] = items.loss
    json_columns: dict[str, Any] = {}
    for name, column in (("predicted", items.predicted), ("label", items.label)):
        if isinstance(column, np.ndarray):
            arrays[name] = column
        else:
            json_columns[name] = column
    parts = [
        np.ascontiguousarray(a, dtype=_FIXED.get(name, a.dtype.newbyteorder("<")))
        for name, a in arrays.items()
    ]
    header = orjson.dumps(
        {
            "n": len(items),
            "batch_items": items.batch_items,
            "reasons": list(items.reason_names),
            "arrays": [
                [name, p.dtype.str, int(p.shape[0])] for name, p in zip(arrays, parts, strict=True)
            ],
            "classes": None if items.class_names is None else list(items.class_names),
            "id": items.ids,
            "id_of_batch": items.ids_of_batch,
            "predicted": json_columns.get("predicted"),
            "label": json_columns.get("label"),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return b"".join([_MAGIC, _LENGTH.pack(len(header)), header, *(p.tobytes() for p in parts)])


def decode(payload: bytes) -> FlaggedItems:
    """The items of a payload written by :func:`encode` (either version); ValueError for
    anything else."""
    view = memoryview(payload)
    magic = bytes(view[:4])
    if magic not in (_MAGIC, _MAGIC_V1):
        raise ValueError("not a flagged-items payload (bad magic)")
    (length,) = _LENGTH.unpack_from(view, 4)
    header = orjson.loads(view[8 : 8 + length])
    offset = 8 + length
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, dtype, count in header["arrays"]:
        a = np.frombuffer(view, dtype=np.dtype(dtype), count=count, offset=offset)
        arrays[name] = a
        offset += a.nbytes
    n_batch = header.get("batch_items")
    if "index_bits" in arrays:
        bits = np.unpackbits(arrays["index_bits"], count=n_batch)
        index = np.flatnonzero(bits).astype(np.int64)
    else:
        index = arrays["index"].astype(np.int64)
    classes = header.get("classes")
    return FlaggedItems(
        index=index,
        confidence=arrays["confidence"],
        loss=arrays.get("loss"),
        reason_names=tuple(header["reasons"]),
        reasons=arrays["reasons"],
        ids=header["id"],
        predicted=arrays.get("predicted", header["predicted"]),
        label=arrays.get("label", header["label"]),
        class_names=None if classes is None else tuple(classes),
        batch_items=n_batch,
        ids_of_batch=bool(header.get("id_of_batch", False)),
    )
