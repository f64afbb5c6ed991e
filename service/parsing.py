"""Raw request body -> a validated request model and its binary tensors, in one pass.

The fast path: the body is parsed once by pydantic-core's JSON parser (as fast as orjson), the
batch size is checked against ``max_items`` / ``max_elements`` before any per-element work, then
the strict request model validates everything in Rust (numbers are numbers, never strings or
booleans; NaN / Infinity / 1e400 are rejected at their exact location) and the routes hand plain
lists to xentcore, which converts them to numpy once. FastAPI's own body handling (stdlib JSON,
lax coercion, NaN accepted) is never used for these routes.

Binary tensors (see the README): with ``Inference-Header-Content-Length: L`` the first L bytes
are the JSON and the rest are raw arrays, declared in the JSON as ``TensorRef`` objects and
read with ``np.frombuffer`` (no copy) after their sizes, shapes and the limits are checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import pydantic_core
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from service.errors import RequestInvalid, error_item, validation_details
from service.schemas import TENSOR_DTYPES, BatchRequest, SequencesRequest, TensorRef
from service.settings import Settings

__all__ = ["BATCH_ARRAYS", "Parsed", "TensorPath", "parse_batch", "parse_body", "parse_sequences"]

M = TypeVar("M", bound=BaseModel)
TensorPath = tuple[str | int, ...]

#: Batch fields that may be sent as binary tensors, as the README's "Binary tensors" lists them.
BATCH_ARRAYS = ("predictions", "labels", "sample_weights", "class_weights")


@dataclass(frozen=True)
class Parsed(Generic[M]):
    """A validated request and the arrays its ``TensorRef`` fields point to, by field path."""

    request: M
    tensors: dict[TensorPath, npt.NDArray[Any]] = field(default_factory=dict)

    def array(self, path: TensorPath, value: Any) -> Any:
        """The binary tensor at ``path`` if there is one, else ``value`` as validated."""
        return self.tensors.get(path, value)


def too_large(what: str) -> HTTPException:
    """A 413 naming the limit that was exceeded."""
    return HTTPException(413, detail=what)


def _load(body: bytes | bytearray) -> dict[str, Any]:
    try:
        raw = pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError as exc:  # the message has a line and column, never the input
        raise RequestInvalid([error_item((), f"invalid JSON: {exc}", "json_invalid")]) from None
    if not isinstance(raw, dict):
        raise RequestInvalid([error_item((), "expected a JSON object", "model_type")])
    return raw


def _check_counts(n_items: int, n_elements: int, settings: Settings) -> None:
    if n_items > settings.max_items:
        raise too_large(f"batch of {n_items} items exceeds XENT_MAX_ITEMS = {settings.max_items}")
    if n_elements > settings.max_elements:
        raise too_large(
            f"batch of {n_elements} numbers exceeds XENT_MAX_ELEMENTS = {settings.max_elements}"
        )


def _batch_counts(raw: dict[str, Any]) -> tuple[int, int]:
    """(N, N x K) of a JSON batch, from its length and first row: no element is visited."""
    pred = raw.get("predictions")
    if not isinstance(pred, list):
        return 0, 0
    k = len(pred[0]) if pred and isinstance(pred[0], list) else 1
    return len(pred), len(pred) * k


def _sequence_counts(raw: dict[str, Any]) -> tuple[int, int]:
    """(sequences, total tokens) of a JSON sequences request."""
    seqs = raw.get("sequences")
    if not isinstance(seqs, list):
        return 0, 0
    tokens = 0
    for seq in seqs:
        if not isinstance(seq, dict):
            continue
        values = seq.get("token_logprobs")
        if values is None and isinstance(seq.get("logprobs"), dict):
            values = seq["logprobs"].get("content")
        tokens += len(values) if isinstance(values, list) else 0
    return len(seqs), tokens


def _rank_of(value: Any) -> tuple[int, ...] | None:
    """The shape of JSON ``predictions`` that are neither N nor N x K, else None.

    A number is shape ``()``; nested lists are measured along their first elements (as the
    union's discriminator reads them); a ``TensorRef`` object by its declared ``shape``.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ()
    if isinstance(value, dict):
        shape = value.get("shape")
        if (
            isinstance(shape, list)
            and len(shape) not in (1, 2)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            return tuple(shape)
        return None
    dims: list[int] = []
    while isinstance(value, list):
        dims.append(len(value))
        value = value[0] if value else None
    return tuple(dims) if len(dims) > 2 else None


def _explain_rank(raw: dict[str, Any], details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``predictions`` of another rank: pydantic's errors inside them (a "valid number" deep in
    a 3-D list, a TensorRef ``shape`` too long) become xentcore's one clear message, at
    ``predictions`` (a TensorRef: at its ``shape``, where the rank was declared)."""
    value = raw.get("predictions")
    shape = _rank_of(value)
    if shape is None:
        return details
    loc = ("predictions", "shape") if isinstance(value, dict) else ("predictions",)
    clear = error_item(loc, f"expected N or N x K, got shape {shape}", "value_error")
    out: list[dict[str, Any]] = []
    for item in details:
        if item["loc"][1:2] != ["predictions"]:
            out.append(item)
        elif clear not in out:
            out.append(clear)
    return out


def _validate(model: type[M], raw: dict[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(exc)
        if issubclass(model, BatchRequest):  # the error path only: valid bodies never pay
            details = _explain_rank(raw, details)
        raise RequestInvalid(details) from None


def _batch_refs(raw: dict[str, Any], req: BaseModel) -> Iterator[tuple[TensorPath, TensorRef]]:
    """Tensor fields of a batch in the order they appear in the JSON."""
    for name in raw:
        value = getattr(req, name, None) if name in BATCH_ARRAYS else None
        if isinstance(value, TensorRef):
            yield (name,), value


def _sequence_refs(raw: dict[str, Any], req: BaseModel) -> Iterator[tuple[TensorPath, TensorRef]]:
    assert isinstance(req, SequencesRequest)
    for i, seq in enumerate(req.sequences):
        if isinstance(seq.token_logprobs, TensorRef):
            yield ("sequences", i, "token_logprobs"), seq.token_logprobs


RefWalker = Callable[[dict[str, Any], BaseModel], Iterator[tuple[TensorPath, TensorRef]]]


def _read_tensors(
    refs: list[tuple[TensorPath, TensorRef]],
    data: memoryview,
    *,
    items_path: TensorPath | None,
    settings: Settings,
) -> dict[TensorPath, npt.NDArray[Any]]:
    """Check every declared tensor (sizes, shapes, limits), then view the bytes as arrays."""
    for path, ref in refs:
        count = math.prod(ref.shape)
        itemsize = np.dtype(TENSOR_DTYPES[ref.datatype]).itemsize
        if ref.binary_data_size != count * itemsize:
            raise RequestInvalid(
                [
                    error_item(
                        (*path, "binary_data_size"),
                        f"{ref.binary_data_size} bytes do not hold "
                        f"{ref.datatype} of shape {ref.shape} ({count * itemsize} bytes)",
                        "value_error",
                    )
                ]
            )
        if path == items_path:
            _check_counts(ref.shape[0], count, settings)
        elif count > settings.max_elements:
            _check_counts(0, count, settings)
    declared = sum(ref.binary_data_size for _, ref in refs)
    if declared != len(data):
        raise RequestInvalid(
            [
                error_item(
                    (),
                    f"the body has {len(data)} bytes of binary data, "
                    f"the tensors declare {declared}",
                    "value_error",
                )
            ]
        )
    out: dict[TensorPath, npt.NDArray[Any]] = {}
    offset = 0
    for path, ref in refs:
        arr = np.frombuffer(
            data, dtype=TENSOR_DTYPES[ref.datatype], count=math.prod(ref.shape), offset=offset
        ).reshape(ref.shape)
        offset += ref.binary_data_size
        # An unaligned view is legal but slow for every kernel: realign once.
        out[path] = arr if arr.flags.aligned else arr.copy()
    return out


def _reject_refs(refs: list[tuple[TensorPath, TensorRef]]) -> None:
    if refs:
        raise RequestInvalid(
            [
                error_item(
                    refs[0][0],
                    "a binary tensor needs the header Inference-Header-Content-Length",
                    "value_error",
                )
            ]
        )


def parse_body(
    body: bytes | bytearray | memoryview,
    model: type[M],
    *,
    header_length: int | None,
    settings: Settings,
    counts: Callable[[dict[str, Any]], tuple[int, int]],
    walker: RefWalker,
    items_path: TensorPath | None,
) -> Parsed[M]:
    """Parse, size-check and validate a request body (JSON, or JSON + binary tensors)."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise RequestInvalid(
            [
                error_item(
                    (),
                    f"Inference-Header-Content-Length {header_length} "
                    f"is outside the body of {len(body)} bytes",
                    "value_error",
                )
            ]
        )
    if header_length is not None:
        json_part: bytes | bytearray = bytes(body[:header_length])
    else:
        json_part = bytes(body) if isinstance(body, memoryview) else body
    raw = _load(json_part)
    _check_counts(*counts(raw), settings)
    req = _validate(model, raw)
    refs = list(walker(raw, req))
    del raw
    if header_length is None:
        _reject_refs(refs)
        return Parsed(req)
    data = memoryview(body)[header_length:]
    return Parsed(req, _read_tensors(refs, data, items_path=items_path, settings=settings))


def parse_batch(
    body: bytes | bytearray | memoryview,
    model: type[M],
    *,
    header_length: int | None,
    settings: Settings,
) -> Parsed[M]:
    """A batch request (``BatchRequest`` or a subclass)."""
    assert issubclass(model, BatchRequest)
    return parse_body(
        body,
        model,
        header_length=header_length,
        settings=settings,
        counts=_batch_counts,
        walker=_batch_refs,
        items_path=("predictions",),
    )


def parse_sequences(
    body: bytes | bytearray | memoryview, *, header_length: int | None, settings: Settings
) -> Parsed[SequencesRequest]:
    """A ``SequencesRequest``; the token total counts against ``max_elements``."""
    parsed = parse_body(
        body,
        SequencesRequest,
        header_length=header_length,
        settings=settings,
        counts=_sequence_counts,
        walker=_sequence_refs,
        items_path=None,
    )
    if parsed.tensors:
        total = sum(arr.size for arr in parsed.tensors.values())
        _check_counts(len(parsed.request.sequences), total, settings)
    return parsed
