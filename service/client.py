"""Python client of the service: ``Client`` (blocking) and ``AsyncClient``, over httpx.

Arrays may be numpy arrays, lists, or anything with ``__array__`` (pandas ``DataFrame``,
``Series`` and ``Index``, ...): those are converted with ``np.asarray`` (so a DataFrame sends
exactly what ``df.to_numpy()`` sends; a pandas index is ignored, rows go in order). Strings
are sent as strings; a missing value (NaN, ``None``, ``pd.NA``) is sent as JSON ``null``, which
the server rejects with its usual 422 naming the index. Large numeric numpy arrays
(``binary_threshold`` elements or more) are sent as binary tensors (see the README): no JSON text
is made for them and the server reads them without parsing. Results come back as the typed
response models of ``service.schemas``; an error answer raises :class:`XentError` with the status
and ``detail``.

``class_names`` whose entries are not all strings (such as a scikit-learn model's
``classes_`` of integers) are sent as ``[str(c) for c in class_names]``; 1-D ``labels`` of
integers or booleans, or of floats that are all whole numbers, are then sent as names too,
matched by value: a label equal to class ``c`` is sent as ``str(c)``, one equal to no class as
``str(label)`` (the server's 422 names its index). Integer labels would otherwise be read as
class *indices* in [0, K). String labels, 2-D targets and soft (fractional) binary targets are
sent as they are. So ``score(model.predict_proba(X), y, class_names=model.classes_)`` scores
``y`` by value, whatever the classes are.

>>> from service.client import Client
>>> with Client("http://127.0.0.1:8000", api_key="...") as xent:  # doctest: +SKIP
...     r = xent.score(probabilities, labels, ids=ids, flag={"min_confidence": 0.6})
...     r.loss.mean, r.flagged.ids
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np
import orjson
from pydantic import BaseModel

from service.schemas import (
    CalibrationResponse,
    ConfidenceResponse,
    FlagResponse,
    LossResponse,
    ScoreResponse,
    SequencesResponse,
)

__all__ = ["AsyncClient", "Client", "XentError"]

R = TypeVar("R", bound=BaseModel)

_TENSOR_FIELDS = ("predictions", "labels", "sample_weights", "class_weights")
_DATATYPES = {"f2": "FP16", "f4": "FP32", "f8": "FP64", "i4": "INT32", "i8": "INT64"}


class XentError(Exception):
    """An error answer of the service: ``status_code``, ``detail`` (the 422 list or a message),
    and ``request_id`` to quote when reporting a 500."""

    def __init__(self, status_code: int, detail: Any, request_id: str | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id
        super().__init__(f"HTTP {status_code}: {_describe(detail)}")


def _describe(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for err in detail:
            loc = [str(p) for p in err.get("loc", ())][1:]  # drop the leading "body"
            parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg')}")
        return "; ".join(parts)
    return str(detail)


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


def _prepare(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields with array-likes as numpy and non-string ``class_names`` (and the
    labels that refer to them) as names."""
    out = {name: _numpy(value) for name, value in fields.items() if value is not None}
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


#: Largest piece a binary body is sent in: bounded copies in the HTTP stack (h11 copies each
#: piece once; sending one 128 MB ``bytes`` would make httpcore re-slice it quadratically).
PIECE_BYTES = 1 << 20


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


def _sequences(sequences: Sequence[Any]) -> list[Any]:
    """Arrays or lists of log-probs become ``{"token_logprobs": ...}``; dicts pass through
    (their array-like values, such as a Series of log-probs, as numpy)."""
    return [
        {key: _jsonable(_numpy(value)) for key, value in seq.items()}
        if isinstance(seq, Mapping)
        else {"token_logprobs": _jsonable(_numpy(seq))}
        for seq in sequences
    ]


def _result(response: httpx.Response, model: type[R]) -> R:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text[:500]
        raise XentError(response.status_code, detail, response.headers.get("x-request-id"))
    return model.model_validate_json(response.content)


Body = bytes | list[bytes | memoryview]


def _pieces(content: Body) -> bytes | Iterator[bytes]:
    """httpx content: bytes as they are, pieces as a stream (Content-Length is set)."""
    if isinstance(content, bytes):
        return content
    if len(content) == 1:
        return bytes(content[0])
    return (piece if isinstance(piece, bytes) else piece.tobytes() for piece in content)


async def _async_pieces(content: Body) -> AsyncIterator[bytes]:
    """The same pieces for the async client."""
    for piece in [content] if isinstance(content, bytes) else content:
        yield piece if isinstance(piece, bytes) else piece.tobytes()


class _Requests:
    """Request building shared by both clients."""

    def __init__(self, base_url: str, api_key: str | None, binary_threshold: int | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.binary_threshold = binary_threshold
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def build(
        self, predictions: Any, labels: Any, options: dict[str, Any], idempotency_key: str | None
    ) -> tuple[list[bytes | memoryview], dict[str, str]]:
        fields = {"predictions": predictions, "labels": labels, **options}
        content, headers = encode_parts(fields, self.binary_threshold)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return content, headers


class Client(_Requests):
    """Blocking client. Options are the request fields of the HTTP API (``task=``, ...)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        binary_threshold: int | None = 65_536,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, binary_threshold)
        self.http = http or httpx.Client(base_url=self.base_url, timeout=timeout)

    def _post(self, path: str, content: Body, headers: dict[str, str], model: type[R]) -> R:
        response = self.http.post(
            path, content=_pieces(content), headers={**self.headers, **headers}
        )
        return _result(response, model)

    def _batch(
        self,
        path: str,
        model: type[R],
        predictions: Any,
        labels: Any,
        idempotency_key: str | None,
        options: dict[str, Any],
    ) -> R:
        content, headers = self.build(predictions, labels, options, idempotency_key)
        return self._post(path, content, headers, model)

    def score(
        self,
        predictions: Any,
        labels: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> ScoreResponse:
        """``POST /v1/score``."""
        return self._batch(
            "/v1/score", ScoreResponse, predictions, labels, idempotency_key, options
        )

    def loss(
        self, predictions: Any, labels: Any, *, idempotency_key: str | None = None, **options: Any
    ) -> LossResponse:
        """``POST /v1/loss`` (labels required)."""
        return self._batch("/v1/loss", LossResponse, predictions, labels, idempotency_key, options)

    def confidence(
        self,
        predictions: Any,
        labels: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> ConfidenceResponse:
        """``POST /v1/confidence``."""
        return self._batch(
            "/v1/confidence", ConfidenceResponse, predictions, labels, idempotency_key, options
        )

    def flag(
        self,
        predictions: Any,
        labels: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> FlagResponse:
        """``POST /v1/flag``: the flagged items only."""
        return self._batch("/v1/flag", FlagResponse, predictions, labels, idempotency_key, options)

    def calibration(
        self, predictions: Any, labels: Any, *, idempotency_key: str | None = None, **options: Any
    ) -> CalibrationResponse:
        """``POST /v1/calibration`` (``n_bins=``, ``strategy=``, ``fit_temperature=``)."""
        return self._batch(
            "/v1/calibration", CalibrationResponse, predictions, labels, idempotency_key, options
        )

    def score_sequences(
        self,
        sequences: Sequence[Any],
        *,
        flag: Mapping[str, Any] | None = None,
        stream: str | None = None,
    ) -> SequencesResponse:
        """``POST /v1/sequences/score``; a sequence is an array of token log-probs or a dict
        (``{"id", "token_logprobs"}`` or ``{"id", "logprobs": <OpenAI logprobs>}``)."""
        body = {"sequences": _sequences(sequences), "flag": flag, "stream": stream}
        content, headers = encode(body, None)
        return self._post("/v1/sequences/score", content, headers, SequencesResponse)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Requests):
    """The same methods as :class:`Client`, awaitable."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        binary_threshold: int | None = 65_536,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, binary_threshold)
        self.http = http or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def _post(self, path: str, content: Body, headers: dict[str, str], model: type[R]) -> R:
        response = await self.http.post(
            path, content=_async_pieces(content), headers={**self.headers, **headers}
        )
        return _result(response, model)

    async def _batch(
        self,
        path: str,
        model: type[R],
        predictions: Any,
        labels: Any,
        idempotency_key: str | None,
        options: dict[str, Any],
    ) -> R:
        content, headers = self.build(predictions, labels, options, idempotency_key)
        return await self._post(path, content, headers, model)

    async def score(
        self,
        predictions: Any,
        labels: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> ScoreResponse:
        return await self._batch(
            "/v1/score", ScoreResponse, predictions, labels, idempotency_key, options
        )

    async def loss(
        self, predictions: Any, labels: Any, *, idempotency_key: str | None = None, **options: Any
    ) -> LossResponse:
        return await self._batch(
            "/v1/loss", LossResponse, predictions, labels, idempotency_key, options
        )

    async def confidence(
        self,
        predictions: Any,
        labels: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> ConfidenceResponse:
        return await self._batch(
            "/v1/confidence", ConfidenceResponse, predictions, labels, idempotency_key, options
        )

    async def flag(
        self,
        predictions: Any,
        labels: Any = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> FlagResponse:
        return await self._batch(
            "/v1/flag", FlagResponse, predictions, labels, idempotency_key, options
        )

    async def calibration(
        self, predictions: Any, labels: Any, *, idempotency_key: str | None = None, **options: Any
    ) -> CalibrationResponse:
        return await self._batch(
            "/v1/calibration", CalibrationResponse, predictions, labels, idempotency_key, options
        )

    async def score_sequences(
        self,
        sequences: Sequence[Any],
        *,
        flag: Mapping[str, Any] | None = None,
        stream: str | None = None,
    ) -> SequencesResponse:
        body = {"sequences": _sequences(sequences), "flag": flag, "stream": stream}
        content, headers = encode(body, None)
        return await self._post("/v1/sequences/score", content, headers, SequencesResponse)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
