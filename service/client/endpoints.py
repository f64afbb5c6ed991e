"""Every request of the HTTP API, built in one place for both clients.

A builder here takes the client (its headers and ``binary_threshold``: a :class:`Target`) and
the arguments of the public method of the same name, and returns a :class:`Request`: the method
and path, the body in pieces (none for a GET, which has query ``params`` instead), the headers
and the response model. ``Client`` sends it with httpx's
blocking client, ``AsyncClient`` awaits it; their methods are these builders
(``service.client.clients``), so the two clients cannot drift apart. Adding an endpoint is one
builder here and one line in each client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from service.client.encoding import encode_parts, sequences_field
from service.schemas import (
    CalibrationResponse,
    CalibratorResponse,
    CalibratorsResponse,
    ConfidenceResponse,
    FlaggedItemsResponse,
    FlagResponse,
    ItemsResponse,
    LabelsResponse,
    LossResponse,
    PoliciesResponse,
    PolicyResponse,
    RiskCoverageResponse,
    ScoreResponse,
    SequencesResponse,
    StreamsResponse,
    SummaryRecorded,
    SummaryResponse,
)
from xentcore.state import Summary

__all__ = [
    "Request",
    "Target",
    "XentError",
    "calibration",
    "confidence",
    "flag",
    "items",
    "label",
    "loss",
    "record_summary",
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
    """``method path``: the body as ``parts`` (JSON, then any binary tensors in pieces of at most
    ``PIECE_BYTES``; the body is their concatenation; empty for a GET), the ``headers``
    (authorization first), the ``model`` a success answer is read into, and the query
    ``params`` (None: no query string)."""

    path: str
    parts: list[bytes | memoryview]
    headers: dict[str, str]
    model: type[R]
    method: str = "POST"
    params: dict[str, str] | None = None

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
    keep_items: bool = True,
    audit_rate: float | None = None,
    audit_seed: int | None = None,
) -> Request[SequencesResponse]:
    """``POST /v1/sequences/score``; a sequence is an array of token log-probs or a dict
    (``{"id", "token_logprobs"}`` or ``{"id", "logprobs": <OpenAI logprobs>}``).

    With ``stream`` and an id on every sequence, the sequences are kept for late verdicts
    (:func:`label`) unless ``keep_items`` is false; ``audit_rate`` marks each one for review
    with that probability (``audit_seed``: a reproducible draw), and the answer then has
    ``audit`` (and ``audit`` on each sequence)."""
    fields = {
        "sequences": sequences_field(sequences),
        "flag": flag,
        "stream": stream,
        "keep_items": None if keep_items else False,  # the server's default is true
        "audit_rate": audit_rate,
        "audit_seed": audit_seed,
    }
    body = encode_parts(fields, None)  # no tensor fields: always JSON
    return _request(client, "/v1/sequences/score", SequencesResponse, body)


def _stream_path(stream: str, tail: str) -> str:
    """``/v1/streams/<stream>/<tail>`` with the name quoted (every character not unreserved)."""
    return f"/v1/streams/{quote(stream, safe='')}/{tail}"


def label(
    client: Target,
    /,
    stream: str,
    ids: Any,
    labels: Any,
) -> Request[LabelsResponse]:
    """``POST /v1/streams/{stream}/labels``: late labels for kept items, matched by id.

    Each label applies to the newest kept item of ``stream`` with that id, all or nothing: a
    label of the wrong form raises :class:`XentError` 422 at ``labels[i]`` and applies none;
    a stream never recorded is a 404. ``labels`` take the forms of the stream's task (class
    index or name, 0/1, a multilabel row; a sequence's verdict 1 = acceptable, 0 = wrong).
    Ids never kept are not an error: they are counted in ``unknown``. ``ids`` and ``labels``
    are lists or arrays (numpy, pandas) of the same length."""
    body = encode_parts({"ids": ids, "labels": labels}, None)  # always JSON
    return _request(client, _stream_path(stream, "labels"), LabelsResponse, body)


def record_summary(
    client: Target,
    /,
    stream: str,
    summary: Summary | Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
) -> Request[SummaryRecorded]:
    """``POST /v1/streams/{stream}/summaries``: record a set scored elsewhere (a file, a
    Spark or Dask job) as one batch of ``stream``, from its :class:`xentcore.Summary` (or
    ``Summary.to_dict()``): the stream's figures and dashboard then count its items.

    With an ``idempotency_key`` already recorded for the stream, nothing is written again and
    the answer says ``duplicate=True``. A summary the server refuses raises
    :class:`XentError` 422 naming the field; a store that is down, 503 (retry with the same
    key)."""
    state = summary.to_dict() if isinstance(summary, Summary) else dict(summary)
    body = encode_parts(state, None)  # always JSON
    path = _stream_path(stream, "summaries")
    return _request(client, path, SummaryRecorded, body, idempotency_key)


def _when(value: str | datetime) -> str:
    """A time for ``since`` / ``until``: a string as it is, a datetime as ISO 8601 (a naive
    one taken as UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def items(
    client: Target,
    /,
    stream: str,
    *,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    audit: bool | None = None,
    labeled: bool | None = None,
    flagged: bool | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Request[ItemsResponse]:
    """``GET /v1/streams/{stream}/items``: kept items, newest first, and ``next_cursor``.

    A filter left as None is not applied; the review queue is ``audit=True, labeled=False``.
    ``since`` (inclusive) / ``until`` (exclusive) bound the time the items were scored: ISO
    8601 strings (no offset: UTC) or datetimes (naive: UTC). Pass the answer's
    ``next_cursor`` as ``cursor`` for the next page (None: that was the last)."""
    params: dict[str, str] = {"limit": str(limit), **_window(since, until)}
    for name, flag in (("audit", audit), ("labeled", labeled), ("flagged", flagged)):
        if flag is not None:
            params[name] = "true" if flag else "false"
    if cursor is not None:
        params["cursor"] = cursor
    return _get(client, _stream_path(stream, "items"), ItemsResponse, params)


def _get(client: Target, path: str, model: type[R], params: dict[str, str]) -> Request[R]:
    return Request(path, [], dict(client.headers), model, method="GET", params=params)


def _window(since: str | datetime | None, until: str | datetime | None) -> dict[str, str]:
    return {
        name: _when(when) for name, when in (("since", since), ("until", until)) if when is not None
    }


def summary(
    client: Target,
    /,
    stream: str,
    *,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    bucket: str | None = None,
) -> Request[SummaryResponse]:
    """``GET /v1/streams/{stream}/summary``: the stream's figures over ``[since, until)``, in
    ``total`` and per ``bucket`` (``"5m"``, ``"1h"``, ``"1d"``...; one bucket when None), with
    the calibration set's ``labeled`` and the late labels' ``reviewed`` figures (API.md
    section 9). Times as for :func:`items`; a stream never recorded is a 404."""
    params = _window(since, until)
    if bucket is not None:
        params["bucket"] = bucket
    return _get(client, _stream_path(stream, "summary"), SummaryResponse, params)


def flagged(
    client: Target,
    /,
    stream: str,
    *,
    since: str | datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Request[FlaggedItemsResponse]:
    """``GET /v1/streams/{stream}/flagged``: flagged items newest first, and ``next_cursor``."""
    params = {"limit": str(limit), **_window(since, None)}
    if cursor is not None:
        params["cursor"] = cursor
    return _get(client, _stream_path(stream, "flagged"), FlaggedItemsResponse, params)


def streams(client: Target, /) -> Request[StreamsResponse]:
    """``GET /v1/streams``: every stream with its lifetime totals and when it was last seen."""
    return _get(client, "/v1/streams", StreamsResponse, {})


def put_policy(
    client: Target,
    /,
    stream: str,
    name: str,
    *,
    alpha: float,
    delta: float = 0.1,
    confidence: str = "max_probability",
    per_class: bool = False,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    min_calibration: int = 100,
) -> Request[PolicyResponse]:
    """``PUT /v1/streams/{stream}/policies/{name}``: fit a risk-controlled policy on the
    stream's calibration set now and store it as the name's next version (API.md section 10):
    error rate among accepted items <= ``alpha`` with probability >= 1 - ``delta``."""
    fields: dict[str, Any] = {
        "alpha": alpha,
        "delta": delta,
        "confidence": confidence,
        "per_class": per_class,
        "min_calibration": min_calibration,
        **_window(since, until),
    }
    parts, headers = encode_parts(fields, None)
    path = _stream_path(stream, f"policies/{quote(name, safe='')}")
    return Request(path, parts, {**client.headers, **headers}, PolicyResponse, method="PUT")


def policy(
    client: Target, /, stream: str, name: str, *, version: int | None = None
) -> Request[PolicyResponse]:
    """``GET /v1/streams/{stream}/policies/{name}``: the newest version (or ``version``)."""
    params = {} if version is None else {"version": str(version)}
    path = _stream_path(stream, f"policies/{quote(name, safe='')}")
    return _get(client, path, PolicyResponse, params)


def policies(client: Target, /, stream: str) -> Request[PoliciesResponse]:
    """``GET /v1/streams/{stream}/policies``: the newest version of each policy."""
    return _get(client, _stream_path(stream, "policies"), PoliciesResponse, {})


def risk_coverage(
    client: Target,
    /,
    stream: str,
    *,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    confidence: str = "max_probability",
    delta: float = 0.1,
) -> Request[RiskCoverageResponse]:
    """``GET /v1/streams/{stream}/risk-coverage``: risk against coverage over the stream's
    calibration set, with the AURC."""
    params = {"confidence": confidence, "delta": repr(delta), **_window(since, until)}
    return _get(client, _stream_path(stream, "risk-coverage"), RiskCoverageResponse, params)


def put_calibrator(
    client: Target,
    /,
    stream: str,
    name: str,
    *,
    method: str,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
) -> Request[CalibratorResponse]:
    """``PUT /v1/streams/{stream}/calibrators/{name}``: fit ``method`` (``"temperature"`` for
    multiclass, ``"platt"`` for binary) on the stream's calibration set and store it as the
    name's next version; a request then applies it with ``calibrator=name``."""
    parts, headers = encode_parts({"method": method, **_window(since, until)}, None)
    path = _stream_path(stream, f"calibrators/{quote(name, safe='')}")
    return Request(path, parts, {**client.headers, **headers}, CalibratorResponse, method="PUT")


def calibrator(
    client: Target, /, stream: str, name: str, *, version: int | None = None
) -> Request[CalibratorResponse]:
    """``GET /v1/streams/{stream}/calibrators/{name}``: the newest version (or ``version``)."""
    params = {} if version is None else {"version": str(version)}
    path = _stream_path(stream, f"calibrators/{quote(name, safe='')}")
    return _get(client, path, CalibratorResponse, params)


def calibrators(client: Target, /, stream: str) -> Request[CalibratorsResponse]:
    """``GET /v1/streams/{stream}/calibrators``: the newest version of each calibrator."""
    return _get(client, _stream_path(stream, "calibrators"), CalibratorsResponse, {})
