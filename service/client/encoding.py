"""Request bodies of the client: JSON, or JSON followed by binary tensors (see the README).

Every value goes through :func:`_prepare` first: array-likes (anything with ``__array__``) as
numpy, ``clip_eps="dtype"`` as the epsilon of the predictions' dtype, non-string
``class_names`` as ``str(c)`` and the labels that refer to them as names (the rules are in the
``service.client`` docstring). Then :func:`encode_parts` writes the JSON header
with orjson and, past ``binary_threshold`` elements, appends a numeric array's little-endian bytes
as a view of the array itself instead of writing it as JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from service.schemas.tensors import TENSOR_DTYPES
from xentcore.validate.options import CLIP_EPS_DTYPE, dtype_eps

__all__ = ["PIECE_BYTES", "encode", "encode_parts", "sequences_field"]

_TENSOR_FIELDS = ("predictions", "labels", "sample_weights", "class_weights")
#: numpy dtype code ("f4") -> TensorRef datatype ("FP32"), from the schema's one table.
_DATATYPES = {dtype.lstrip("<"): name for name, dtype in TENSOR_DTYPES.items()}

#: Largest piece a binary body is sent in: bounded copies in the HTTP stack (h11 copies each
#: piece once; sending one 128 MB ``bytes`` would make httpcore re-slice it quadratically).
PIECE_BYTES = 1 << 20


def _numpy(value: Any) -> Any:
    """Anything with ``__array__`` (pandas DataFrame / Series / Index, ...) as a numpy array
    (a 0-d one as its Python scalar); numpy arrays, numpy scalars and other values as they are."""
    if isinstance(value, np.ndarray | np.generic | str | bytes | Mapping) or not hasattr(
        value, "__array__"
    ):
        return value
    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else arr


def _is_missing(value: Any) -> bool:
    """NaN, ``pd.NA``, ``pd.NaT`` (without importing pandas: NA's comparison is not a bool)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True


def _default(value: Any) -> Any:
    """orjson's fallback: arrays it cannot take (a Series inside a list, a non-contiguous view)
    as lists, missing values (``pd.NA``) as null; anything else is not JSON."""
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    if _is_missing(value):
        return None
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _labels_as_names(labels: Any, classes: Sequence[Any], names: list[str | None]) -> Any:
    """1-D non-string labels as the names of the classes they equal (see the module doc)."""
    try:
        arr = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
        if arr.dtype.kind in "US" and not isinstance(labels, np.ndarray):
            arr = np.asarray(labels, dtype=object)  # [5, "7"]: numpy made "5" of the 5
    except (TypeError, ValueError):  # ragged: the server says where
        return labels
    kind = arr.dtype.kind
    if arr.ndim != 1 or kind not in "biufO":
        return labels  # strings, 2-D targets
    if kind == "f" and not bool(np.all(np.isfinite(arr) & (arr == np.round(arr)))):
        return labels  # soft binary targets (or NaN: null, the server's 422)
    lookup: dict[Any, str | None] = {}
    for c, name in zip(classes, names, strict=True):
        try:
            lookup.setdefault(c, name)
        except TypeError:  # an unhashable class matches nothing
            pass

    def name_of(v: Any) -> str | None:
        if isinstance(v, str):
            return v
        if _is_missing(v):
            return None
        try:
            return lookup[v]
        except (KeyError, TypeError):  # no class equals v: the server's 422 names the index
            return str(v)

    if kind == "O":
        return [name_of(v) for v in arr.tolist()]
    uniq, inverse = np.unique(arr, return_inverse=True)  # a few classes: one lookup each
    mapped = np.array([name_of(v) for v in uniq.tolist()], dtype=object)
    return mapped[inverse.ravel()].tolist()


def _clip_eps(out: dict[str, Any]) -> None:
    """``clip_eps="dtype"`` resolved here, from the predictions as the caller gave them: sent
    as JSON they would reach the server as float64 numbers, as a tensor in their own dtype
    (float16 as JSON: float32), so the same call would clip by its size otherwise."""
    if not (isinstance(out.get("clip_eps"), str) and out["clip_eps"] == CLIP_EPS_DTYPE):
        return
    try:
        dtype = np.asarray(out.get("predictions")).dtype
    except (TypeError, ValueError):  # ragged: the server's 422 says where
        return
    out["clip_eps"] = dtype_eps(dtype)


def _prepare(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields with array-likes as numpy, ``clip_eps="dtype"`` as the number it
    means, and non-string ``class_names`` (and the labels that refer to them) as names."""
    out = {name: _numpy(value) for name, value in fields.items() if value is not None}
    _clip_eps(out)
    classes = out.get("class_names")
    if isinstance(classes, np.ndarray) and classes.ndim != 1:
        return out  # not a list of names: the server's 422
    if (
        isinstance(classes, np.ndarray | Sequence)
        and not isinstance(classes, str | bytes)
        and not all(isinstance(c, str) for c in classes)
    ):
        names = [None if _is_missing(c) else str(c) for c in classes]
        out["class_names"] = names
        if "labels" in out:
            out["labels"] = _labels_as_names(out["labels"], list(classes), names)
    return out


def _jsonable(value: Any) -> Any:
    """numpy arrays in a form orjson serializes (C-contiguous, native byte order, no float16 /
    object dtype)."""
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind in "OUS":
        return value.tolist()
    if value.dtype == np.float16:
        value = value.astype(np.float32)
    elif not value.dtype.isnative:  # big-endian data: the same values
        value = value.astype(value.dtype.newbyteorder("="))
    return np.ascontiguousarray(value)


def _tensor(value: np.ndarray[Any, Any]) -> tuple[dict[str, Any], memoryview] | None:
    """A ``TensorRef`` and the little-endian bytes of ``value`` (a view: no copy when ``value``
    is already C-contiguous little-endian), or None if it has no datatype."""
    code = f"{value.dtype.kind}{value.dtype.itemsize}"
    if code in ("i1", "i2", "u1", "u2", "u4"):
        value, code = value.astype(np.int64), "i8"
    if code not in _DATATYPES or value.ndim not in (1, 2):
        return None
    contiguous = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    data = memoryview(contiguous.data).cast("B")
    ref = {"datatype": _DATATYPES[code], "shape": list(value.shape), "binary_data_size": len(data)}
    return ref, data


def encode(fields: Mapping[str, Any], binary_threshold: int | None) -> tuple[bytes, dict[str, str]]:
    """A request body and its headers, as one ``bytes`` (see :func:`encode_parts`)."""
    parts, headers = encode_parts(fields, binary_threshold)
    return b"".join(parts), headers


def encode_parts(
    fields: Mapping[str, Any], binary_threshold: int | None
) -> tuple[list[bytes | memoryview], dict[str, str]]:
    """A request body as pieces, and its headers: JSON, or JSON + binary tensors.

    Arrays of ``binary_threshold`` elements or more are sent as raw little-endian tensors after
    the JSON, as views of the arrays themselves (no copy), in pieces of at most 1 MiB.
    """
    body = {name: _jsonable(value) for name, value in _prepare(fields).items()}
    chunks: list[memoryview] = []
    if binary_threshold is not None:
        for name in _TENSOR_FIELDS:
            value = body.get(name)
            if isinstance(value, np.ndarray) and value.size >= binary_threshold:
                made = _tensor(value)
                if made is not None:
                    body[name], data = made
                    chunks.append(data)
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY, default=_default)
    if not chunks:
        return [header], {"Content-Type": "application/json"}
    parts: list[bytes | memoryview] = [header]
    for data in chunks:
        parts.extend(data[i : i + PIECE_BYTES] for i in range(0, len(data), PIECE_BYTES))
    return parts, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Length": str(sum(len(part) for part in parts)),
    }


def sequences_field(sequences: Sequence[Any]) -> list[Any]:
    """The ``sequences`` field of ``/v1/sequences/score``: arrays or lists of log-probs become
    ``{"token_logprobs": ...}``; dicts pass through (their array-like values, such as a Series
    of log-probs, as numpy)."""
    return [
        {key: _jsonable(_numpy(value)) for key, value in seq.items()}
        if isinstance(seq, Mapping)
        else {"token_logprobs": _jsonable(_numpy(seq))}
        for seq in sequences
    ]
