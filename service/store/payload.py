"""The flagged items of one batch as one value: columns, not rows (``xent_flagged.payload``).

A batch of 100,000 items with most of them flagged is one insert of a few MB instead of 100,000
rows, and a page of ``/flagged`` decodes only the columns' bytes it needs (``np.frombuffer``).

Format (version 1), all little-endian::

    b"XFI1" | uint32 header length | header (JSON) | array bytes, in the header's order

The header is ``{"n": items, "reasons": [names], "arrays": [[name, dtype, count], ...],
"id": [...] | null, "predicted": [...] | null, "label": [...] | null}``. The arrays are
``index`` (int64), ``confidence`` and ``loss`` (float64, NaN = none; ``loss`` may be absent)
and ``reasons`` (uint8 bit masks: bit b = ``reasons[b]``). ``id``, ``predicted`` and ``label``
are JSON values per item (class names or indices as the response showed them).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from xentcore.types import F64

__all__ = ["FlaggedItems", "decode", "encode"]

_MAGIC = b"XFI1"
_LENGTH = struct.Struct("<I")
_DTYPES = {"index": "<i8", "confidence": "<f8", "loss": "<f8", "reasons": "|u1"}


@dataclass(frozen=True)
class FlaggedItems:
    """The flagged items of one batch, column by column (row j = the j-th flagged item).

    ``reasons`` holds one bit mask per item over ``reason_names`` (bit b set = the item was
    flagged for ``reason_names[b]``). ``ids``, ``predicted`` and ``label`` are Python lists of
    JSON values (or None when the batch has none); NaN in ``confidence`` / ``loss`` = none.
    """

    index: npt.NDArray[np.int64]
    confidence: F64
    loss: F64 | None
    reason_names: tuple[str, ...]
    reasons: npt.NDArray[np.uint8]
    ids: list[Any] | None = None
    predicted: list[Any] | None = None
    label: list[Any] | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def reason_lists(self, rows: npt.NDArray[np.intp]) -> list[list[str]]:
        """The reason names of the items at ``rows``, in ``reason_names`` order."""
        masks = self.reasons[rows].tolist()
        names = self.reason_names
        return [[name for b, name in enumerate(names) if m >> b & 1] for m in masks]


def reason_bits(masks: Sequence[npt.NDArray[np.bool_]]) -> npt.NDArray[np.uint8]:
    """One uint8 per item from up to 8 boolean masks (mask b -> bit b)."""
    if len(masks) > 8:
        raise ValueError("at most 8 reasons fit a uint8 mask")
    out = np.zeros(masks[0].shape[0] if masks else 0, dtype=np.uint8)
    for b, mask in enumerate(masks):
        out |= mask.astype(np.uint8) << np.uint8(b)
    return out


def encode(items: FlaggedItems) -> bytes:
    """The payload bytes of ``items`` (see the module docstring)."""
    arrays: dict[str, npt.NDArray[Any]] = {
        "index": items.index,
        "confidence": items.confidence,
        "reasons": items.reasons,
    }
    if items.loss is not None:
        arrays["loss"] = items.loss
    parts = [np.ascontiguousarray(a, dtype=_DTYPES[name]) for name, a in arrays.items()]
    header = orjson.dumps(
        {
            "n": len(items),
            "reasons": list(items.reason_names),
            "arrays": [[name, _DTYPES[name], int(a.shape[0])] for name, a in arrays.items()],
            "id": items.ids,
            "predicted": items.predicted,
            "label": items.label,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return b"".join([_MAGIC, _LENGTH.pack(len(header)), header, *(p.tobytes() for p in parts)])


def decode(payload: bytes) -> FlaggedItems:
    """The items of a payload written by :func:`encode`; ValueError for anything else."""
    view = memoryview(payload)
    if bytes(view[:4]) != _MAGIC:
        raise ValueError("not a flagged-items payload (bad magic)")
    (length,) = _LENGTH.unpack_from(view, 4)
    header = orjson.loads(view[8 : 8 + length])
    offset = 8 + length
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, dtype, count in header["arrays"]:
        a = np.frombuffer(view, dtype=np.dtype(dtype), count=count, offset=offset)
        arrays[name] = a
        offset += a.nbytes
    return FlaggedItems(
        index=arrays["index"],
        confidence=arrays["confidence"],
        loss=arrays.get("loss"),
        reason_names=tuple(header["reasons"]),
        reasons=arrays["reasons"],
        ids=header["id"],
        predicted=header["predicted"],
        label=header["label"],
    )
