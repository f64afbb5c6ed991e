"""The one skeleton of every scoring route: read the body, parse and score, record, answer.

Parsing and scoring run inline for a small body and in a worker thread for a large one
(``http.compute``); the store write, when the request names a ``stream``, always runs in a
thread (``recording`` never raises); the view's JSON is made like the scoring. What differs
between routes is a :class:`Route`: how to parse and score the body, how to record the result,
and how to shape the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import numpy as np
import numpy.typing as npt
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from service.api.views import BatchContext, sequences_view
from service.convert import audit_of, score_request, score_sequences_request
from service.departure import CLIENT_CLOSED, ClientGone, Departure, watch_departure
from service.http import Body, compute, dumps, header_length, json_response, read_body
from service.metrics import Metrics
from service.parsing import Parsed, parse_batch, parse_sequences
from service.policyuse import calibrated_block, policy_block, read_fit
from service.recording import kept_batch, kept_sequences, record_batch, record_sequences
from service.schemas import BatchRequest, SequencesRequest
from service.settings import Settings
from service.slots import ScoringSlots
from xentcore import ScoreResult, SequenceResult
from xentcore.validate import Batch

__all__ = [
    "Extra",
    "Route",
    "Scored",
    "View",
    "batch_answer",
    "check_idempotency_key",
    "never_gone",
    "record_in_time",
    "run",
    "run_batch",
    "score_parsed",
    "scored_batch",
    "sequences_route",
]

log = logging.getLogger("xent.monitoring")

B = TypeVar("B", bound=BatchRequest)
Q = TypeVar("Q")  # the parsed request model
R = TypeVar("R")  # the xentcore result

View = Callable[[BatchContext, ScoreResult], dict[str, Any]]
#: ``check(stage)``: raises :class:`ClientGone` when the client left before ``stage``.
Check = Callable[[str], None]
#: More response fields computed from the scored batch (calibration), off the event loop.
Extra = Callable[[Parsed[B], Batch, ScoreResult], dict[str, Any]]


@dataclass(frozen=True)
class Scored(Generic[Q, R]):
    """A parsed request, its result, the view's extra fields, the checked batch (kept items
    are built from it) and the audit draw (None without ``audit_rate``)."""

    request: Q
    result: R
    extra: dict[str, Any]
    batch: Batch | None = None
    audit: npt.NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class Route(Generic[Q, R]):
    """What one scoring route adds to the skeleton.

    ``score(body, header_length, settings, check)`` parses and scores (off the event loop for a
    large body), calling ``check(stage)`` between its stages (it raises when the client has
    gone); ``stream(request)`` names the stream to record under (None: not recorded);
    ``record(http_request, scored, metrics)`` writes it (in a thread, never raises);
    ``answer(scored, recorded)`` is the response body; ``count(scored)`` is the
    (endpoint, task, items) of ``xent_items_scored_total``.
    """

    score: Callable[[Body, int | None, Settings, Check], Scored[Q, R]]
    stream: Callable[[Q], str | None]
    record: Callable[[Request, Scored[Q, R], Metrics], bool]
    answer: Callable[[Scored[Q, R], bool | None], dict[str, Any]]
    count: Callable[[Scored[Q, R]], tuple[str, str, int]]


#: Longest ``Idempotency-Key`` (the store's column holds 200 characters).
MAX_IDEMPOTENCY_KEY = 200
#: Extra seconds a request waits for its store write past ``XENT_STORE_TIMEOUT``, so that a write
#: the store's own deadline ends is reported by the store itself, not by this wait.
RECORD_GRACE = 0.25


def check_idempotency_key(request: Request) -> None:
    """422 on the ``Idempotency-Key`` header when it is over 200 characters or not printable
    ASCII, before the body is read (the same on every store)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return
    problem = None
    if len(key) > MAX_IDEMPOTENCY_KEY:
        problem = f"at most {MAX_IDEMPOTENCY_KEY} characters, got {len(key)}"
    elif not (key.isascii() and key.isprintable()):
        problem = "printable ASCII only"
    if problem is not None:
        raise RequestValidationError(
            [{"loc": ["header", "Idempotency-Key"], "msg": problem, "type": "value_error"}]
        )


async def in_thread(work: Callable[[], bool]) -> bool:
    """Run a store write in a worker thread, abandoned (left to finish on its own) when the
    awaiting request gives up on it."""
    return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)


async def record_in_time(work: Callable[[], bool], settings: Settings, metrics: Metrics) -> bool:
    """Run the store write ``work`` in a thread; False when it has not finished within
    ``XENT_STORE_TIMEOUT`` (plus a grace). The write then goes on in its thread until the
    store's own deadline ends it; the request does not wait for it and holds no slot."""
    with anyio.move_on_after(settings.store_timeout + RECORD_GRACE):
        return await in_thread(work)
    log.error(
        "store write still running after %.1f s: answering recorded=false", settings.store_timeout
    )
    metrics.streams.store_errors.inc()
    return False


async def run(request: Request, route: Route[Q, R]) -> Response:
    """Serve one scoring request along ``route``: a scoring slot is held only while the body,
    fully arrived, is parsed and scored. The work for a large body stops at the next stage when
    its client disconnects (:mod:`service.departure`): answered 499, not recorded."""
    check_idempotency_key(request)
    body = await read_body(request)
    settings: Settings = request.app.state.settings
    length = header_length(request)
    watched = len(body) > settings.inline_body_bytes
    try:
        async with watch_departure(request, enabled=watched) as client:
            return await _serve(request, route, body, length, client)
    except ClientGone as gone:
        log.info("%s: work stopped", gone)
        return Response(status_code=CLIENT_CLOSED)


async def _serve(
    request: Request, route: Route[Q, R], body: Body, length: int | None, client: Departure
) -> Response:
    settings: Settings = request.app.state.settings
    metrics: Metrics = request.app.state.metrics
    slots: ScoringSlots = request.app.state.slots
    size = len(body)
    if size <= settings.inline_body_bytes and _reads_store(body):
        size = settings.inline_body_bytes + 1  # scored in a worker thread
    client.check("scoring")
    async with slots.hold():
        scored = await compute(
            lambda: route.score(body, length, settings, client.check), size, settings
        )
    recorded = None
    if route.stream(scored.request) is not None:  # a database write: never on the event loop
        client.check("recording")
        recorded = await record_in_time(
            lambda: route.record(request, scored, metrics), settings, metrics
        )
    endpoint, task, n_items = route.count(scored)
    metrics.items.labels(endpoint, task).inc(n_items)
    client.check("the answer")
    answer = await compute(lambda: dumps(route.answer(scored, recorded)), size, settings)
    return json_response(answer)


def _reads_store(body: Body) -> bool:
    """Whether a small body may name a policy or calibrator, which scoring reads from the store
    (never on the event loop). A search of the bytes in place: a small body is ``bytes``."""
    if not isinstance(body, bytes | bytearray):
        return True
    return body.find(b'"policy"') >= 0 or body.find(b'"calibrator"') >= 0


def _record_batch(request: Request, scored: Scored[B, ScoreResult], m: Metrics) -> bool:
    req = scored.request
    assert req.stream is not None
    settings: Settings = request.app.state.settings
    kept = None
    if req.keep_items and req.ids is not None and scored.batch is not None:
        kept = kept_batch(
            scored.batch,
            scored.result,
            req.ids,
            audit=scored.audit,
            audit_rate=req.audit_rate,
            max_classes=settings.keep_row_max_classes,
        )
    return record_batch(
        request.app.state.store,
        stream=req.stream,
        task=scored.result.task,
        result=scored.result,
        ids=req.ids,
        idempotency_key=request.headers.get("Idempotency-Key"),
        metrics=m.streams,
        kept=kept,
    )


def scored_batch(
    body: Body,
    model: type[B],
    *,
    length: int | None,
    settings: Settings,
    store: Any,
    check: Check,
    extra: Extra[B] | None = None,
) -> Scored[B, ScoreResult]:
    """Parse and score a batch body (:func:`score_parsed`)."""
    parsed = parse_batch(body, model, header_length=length, settings=settings)
    return score_parsed(parsed, settings=settings, store=store, check=check, extra=extra)


def score_parsed(
    parsed: Parsed[B],
    *,
    settings: Settings,
    store: Any,
    check: Check,
    extra: Extra[B] | None = None,
) -> Scored[B, ScoreResult]:
    """Score a parsed batch: the policy and calibrator it names are read from ``store`` (a
    database read: never on the event loop), ``extra(parsed, batch, result)`` adds fields
    computed from the scored batch (calibration), the audit draw is made."""
    req = parsed.request
    policy = calibrator = None
    if req.flag is not None and req.flag.policy is not None:
        policy = read_fit(store, req.stream, "policy", req.flag.policy, ["flag", "policy"])
    if req.calibrator is not None:
        calibrator = read_fit(store, req.stream, "calibrator", req.calibrator, ["calibrator"])
    check("scoring")
    batch, result = score_request(parsed, settings, policy, calibrator)
    check("the calibration figures")
    more = extra(parsed, batch, result) if extra is not None else {}
    if policy is not None and req.flag is not None and req.flag.policy is not None:
        more["policy"] = policy_block(req.flag.policy, policy)
    if calibrator is not None and req.calibrator is not None:
        more["calibrated"] = calibrated_block(req.calibrator, calibrator)
    audit = audit_of(req.audit_rate, req.audit_seed, result.n_items)
    return Scored(req, result, more, batch, audit)


def batch_answer(
    scored: Scored[B, ScoreResult], recorded: bool | None, view: View
) -> dict[str, Any]:
    """The answer of a batch route: ``view`` of the result, and the policy and calibrator
    blocks when the request used them."""
    req = scored.request
    ctx = BatchContext(req, req.ids, recorded, scored.extra, scored.audit)
    out = view(ctx, scored.result)
    for key in ("policy", "calibrated"):
        if key in scored.extra:
            out[key] = scored.extra[key]
    return out


def never_gone(stage: str) -> None:
    """The ``check`` of work that runs to its end whatever the client does (a small body)."""


async def run_batch(
    request: Request,
    model: type[B],
    view: View,
    *,
    endpoint: str,
    extra: Extra[B] | None = None,
) -> Response:
    """A batch route (``/v1/score``, ``/loss``, ``/confidence``, ``/flag``, ``/calibration``):
    ``view`` shapes the answer; ``extra(parsed, batch, result)``, when given, computes more
    fields from the batch already scored (calibration) for the view to place."""

    def score(
        body: Body, length: int | None, settings: Settings, check: Check
    ) -> Scored[B, ScoreResult]:
        store = request.app.state.store
        return scored_batch(
            body, model, length=length, settings=settings, store=store, check=check, extra=extra
        )

    route: Route[B, ScoreResult] = Route(
        score=score,
        stream=lambda req: req.stream,
        record=_record_batch,
        answer=lambda scored, recorded: batch_answer(scored, recorded, view),
        count=lambda s: (endpoint, s.result.task, s.result.n_items),
    )
    return await run(request, route)


def _score_sequences(
    request: Request, body: Body, length: int | None, settings: Settings, check: Check
) -> Scored[SequencesRequest, SequenceResult]:
    parsed = parse_sequences(body, header_length=length, settings=settings)
    req = parsed.request
    name = None if req.flag is None else req.flag.policy
    policy = None
    if name is not None:
        where = ["flag", "policy"]
        policy = read_fit(request.app.state.store, req.stream, "policy", name, where)
    check("scoring")
    result = score_sequences_request(parsed, settings, policy)
    audit = audit_of(req.audit_rate, req.audit_seed, len(req.sequences))
    extra = {} if policy is None or name is None else {"policy": policy_block(name, policy)}
    return Scored(req, result, extra, None, audit)


def _sequences_answer(
    s: Scored[SequencesRequest, SequenceResult], recorded: bool | None
) -> dict[str, Any]:
    out = sequences_view(s.request, s.result, recorded, s.audit)
    if "policy" in s.extra:
        out["policy"] = s.extra["policy"]
    return out


def _record_sequences(
    request: Request, scored: Scored[SequencesRequest, SequenceResult], m: Metrics
) -> bool:
    req = scored.request
    assert req.stream is not None
    ids = [seq.id for seq in req.sequences]
    kept = None
    if req.keep_items and ids and all(i is not None for i in ids):
        kept = kept_sequences(scored.result, ids, audit=scored.audit, audit_rate=req.audit_rate)
    return record_sequences(
        request.app.state.store,
        stream=req.stream,
        result=scored.result,
        ids=None if all(i is None for i in ids) else ids,
        idempotency_key=request.headers.get("Idempotency-Key"),
        metrics=m.streams,
        kept=kept,
    )


#: ``POST /v1/sequences/score``.
def sequences_route(request: Request) -> Route[SequencesRequest, SequenceResult]:
    """``POST /v1/sequences/score``: its policy, if any, is read from ``request``'s store."""
    return Route(
        score=lambda body, length, settings, check: _score_sequences(
            request, body, length, settings, check
        ),
        stream=lambda req: req.stream,
        record=_record_sequences,
        answer=_sequences_answer,
        count=lambda s: ("sequences", "sequences", len(s.request.sequences)),
    )
