"""Every request of the HTTP API, built in one place for both clients.

A builder here takes the client (its headers and ``binary_threshold``: a :class:`Target`) and
the arguments of the public method of the same name, and returns a :class:`Request`: the path,
the body in pieces, the headers and the response model. ``Client`` sends it with httpx's
blocking client, ``AsyncClient`` awaits it; their methods are these builders
(``service.client.clients``), so the two clients cannot drift apart. Adding an endpoint is one
builder here and one line in each client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from service.client.encoding import encode_parts, sequences_field
from service.schemas import (
    CalibrationResponse,
    ConfidenceResponse,
    FlagResponse,
    LossResponse,
    ScoreResponse,
    SequencesResponse,
)

__all__ = [
    "Request",
    "Target",
    "XentError",
    "calibration",
    "confidence",
    "flag",
    "loss",
    "score",
    "score_sequences",
]

R = TypeVar("R", bound=BaseModel)


class XentError(Exception):
    """An error answer of the service: ``status_code``, ``detail`` (the 422 list or a message),
    and ``request_id`` to quote when reporting a 500."""

    def __init__(self, status_code: int, detail: Any, request_id: str | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id
        super().__init__(f"HTTP {status_code}: {_describe(detail)}")


def _describe(detail: Any) -> str:
    """A 422 list as ``field.path: message; ...`` (without the leading ``body``), else ``str``."""
    if isinstance(detail, list):
        parts = []
        for err in detail:
            loc = [str(p) for p in err.get("loc", ())][1:]  # drop the leading "body"
            parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg')}")
        return "; ".join(parts)
    return str(detail)


@dataclass(frozen=True)
class Request(Generic[R]):
    """``POST path``: the body as ``parts`` (JSON, then any binary tensors in pieces of at most
    ``PIECE_BYTES``; the body is their concatenation), the ``headers`` (authorization first),
    and the ``model`` a success answer is read into."""

    path: str
    parts: list[bytes | memoryview]
    headers: dict[str, str]
    model: type[R]

    def answer(self, response: httpx.Response) -> R:
        """The typed answer; a status of 400 or more raises :class:`XentError` with the answer's
        ``detail`` (its text, at most 500 characters, when the body is not JSON) and
        ``X-Request-ID``."""
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:500]
            raise XentError(response.status_code, detail, response.headers.get("x-request-id"))
        return self.model.model_validate_json(response.content)


class Target(Protocol):
    """What a builder reads of the client: its ``headers`` (``Authorization`` when it has an API
    key) and ``binary_threshold`` (arrays of that many elements or more go binary; None:
    never). :class:`Client` and :class:`AsyncClient` are targets."""

    headers: dict[str, str]
    binary_threshold: int | None


def _request(
    client: Target,
    path: str,
    model: type[R],
    body: tuple[list[bytes | memoryview], dict[str, str]],
    idempotency_key: str | None = None,
) -> Request[R]:
    """``POST path`` with ``body`` (pieces, headers): the client's headers first, then the
    body's, then ``Idempotency-Key`` when one is given."""
    parts, headers = body
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return Request(path, parts, {**client.headers, **headers}, model)


def _batch(
    client: Target,
    path: str,
    model: type[R],
    predictions: Any,
    labels: Any,
    idempotency_key: str | None,
    options: dict[str, Any],
) -> Request[R]:
    """A batch route: ``predictions``, ``labels`` and the other fields (``options``)."""
    fields = {"predictions": predictions, "labels": labels, **options}
    body = encode_parts(fields, client.binary_threshold)
    return _request(client, path, model, body, idempotency_key)


def score(
    client: Target,
    /,
    predictions: Any,
    labels: Any = None,
    *,
    idempotency_key: str | None = None,
    **options: Any,
) -> Request[ScoreResponse]:
    """``POST /v1/score``."""
    return _batch(client, "/v1/score", ScoreResponse, predictions, labels, idempotency_key, options)


def loss(
    client: Target,
    /,
    predictions: Any,
    labels: Any,
    *,
    idempotency_key: str | None = None,
    **options: Any,
) -> Request[LossResponse]:
    """``POST /v1/loss`` (labels required)."""
    return _batch(client, "/v1/loss", LossResponse, predictions, labels, idempotency_key, options)


def confidence(
    client: Target,
    /,
    predictions: Any,
    labels: Any = None,
    *,
    idempotency_key: str | None = None,
    **options: Any,
) -> Request[ConfidenceResponse]:
    """``POST /v1/confidence``."""
    path, model = "/v1/confidence", ConfidenceResponse
    return _batch(client, path, model, predictions, labels, idempotency_key, options)


def flag(
    client: Target,
    /,
    predictions: Any,
    labels: Any = None,
    *,
    idempotency_key: str | None = None,
    **options: Any,
) -> Request[FlagResponse]:
    """``POST /v1/flag``: the flagged items only."""
    return _batch(client, "/v1/flag", FlagResponse, predictions, labels, idempotency_key, options)


def calibration(
    client: Target,
    /,
    predictions: Any,
    labels: Any,
    *,
    idempotency_key: str | None = None,
    **options: Any,
) -> Request[CalibrationResponse]:
    """``POST /v1/calibration`` (``n_bins=``, ``strategy=``, ``fit_temperature=``)."""
    path, model = "/v1/calibration", CalibrationResponse
    return _batch(client, path, model, predictions, labels, idempotency_key, options)


def score_sequences(
    client: Target,
    /,
    sequences: Sequence[Any],
    *,
    flag: Mapping[str, Any] | None = None,
    stream: str | None = None,
) -> Request[SequencesResponse]:
    """``POST /v1/sequences/score``; a sequence is an array of token log-probs or a dict
    (``{"id", "token_logprobs"}`` or ``{"id", "logprobs": <OpenAI logprobs>}``)."""
    fields = {"sequences": sequences_field(sequences), "flag": flag, "stream": stream}
    body = encode_parts(fields, None)  # no tensor fields: always JSON
    return _request(client, "/v1/sequences/score", SequencesResponse, body)
