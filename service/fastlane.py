"""The fast lane: a small JSON batch scored without the framework's per-request machinery.

An agent's everyday call (``POST /v1/score`` with a few items) costs a few dozen microseconds of
parsing and scoring, and about 250 more of HTTP machinery when it walks the whole stack: the
FastAPI and Starlette middleware chain, routing, a ``Request`` object, body streaming through
anyio cancel scopes, async context managers for the scoring slot, labelled metrics. The fast
lane sits in front of that stack (``XentApp.__call__``) and either **answers a request
completely, as the stack would, byte for byte**, or **hands it to the stack untouched** (the
body it has read replayed first), so that every rule and every error answer is the stack's own.

It takes ``POST /v1/score``, ``/v1/loss``, ``/v1/confidence`` and ``/v1/flag`` when:

* the headers are plain: a JSON ``Content-Type`` (or none), no ``Content-Encoding``, a decimal
  ``Content-Length`` of at most ``XENT_INLINE_BODY_BYTES`` (16 KiB: work the stack, too, does
  on the event loop) and ``XENT_MAX_BODY_BYTES``, no binary tensors, no ``Idempotency-Key``;
  with ``XENT_API_KEYS``, a valid key (a missing or wrong one: the stack's 401). With
  ``XENT_CORS_ORIGINS`` there is no lane (CORS adds ``Vary`` to every answer);
* the body arrives before the stack's deadline (``XENT_BODY_TIMEOUT`` from the start of the
  request; the stack is handed the same deadline and answers the 408) and names no
  ``stream``, ``calibrator``, ``policy`` or ``audit_rate`` (store reads and writes: the stack
  runs them in threads);
* a scoring slot is free (``XENT_MAX_CONCURRENCY``; else the stack's 503), FastAPI's native
  OpenTelemetry is not configured (its spans come from the stack), and parsing and scoring
  raise nothing: **any error is answered by the stack**, which parses and scores again and
  words it.

What it answers is what the stack answers: the same parsing (``service.parsing``), scoring
(``service.convert``) and view (``service.api.views``) code, the same headers in the same order
(``content-length``, ``content-type``, ``x-request-id``), and the same metrics
(``xent_http_requests_total``, the latency histogram and ``xent_items_scored_total``, under
the route's template). ``XENT_FAST_LANE=false`` turns it off (tests/service/test_fast_lane.py
sends the same requests both ways and compares every byte).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.pipeline import Scored, View, batch_answer, never_gone, score_parsed
from service.api.views import confidence_view, flag_view, loss_view, score_view
from service.convert import fast_score_request
from service.errors import RequestInvalid
from service.http import dumps
from service.metrics import Metrics
from service.middleware.auth import given_key, key_matches
from service.middleware.context import request_id
from service.middleware.limits import DEADLINE, json_like
from service.parsing import parse_batch
from service.schemas import BatchRequest, LabelledBatchRequest
from service.settings import Settings
from service.slots import ScoringSlots
from xentcore import InputError

__all__ = ["ROUTES", "FastLane", "LaneRoute", "uses_store"]

log = logging.getLogger("service")

#: What the stack answers an error with; the lane hands such a request over instead.
_ERRORS = (RequestInvalid, InputError, HTTPException, RequestValidationError, ValueError)
_JSON_HEADERS = (b"content-type", b"application/json")


@dataclass(frozen=True)
class LaneRoute:
    """One route the lane serves: its request model, its view, the endpoint label of
    ``xent_items_scored_total`` and the route template of the request metrics."""

    model: type[BatchRequest]
    view: View
    endpoint: str
    template: str


ROUTES = {
    "/v1/score": LaneRoute(BatchRequest, score_view, "score", "/v1/score"),
    "/v1/loss": LaneRoute(LabelledBatchRequest, loss_view, "loss", "/v1/loss"),
    "/v1/confidence": LaneRoute(BatchRequest, confidence_view, "confidence", "/v1/confidence"),
    "/v1/flag": LaneRoute(BatchRequest, flag_view, "flag", "/v1/flag"),
}


def json_object(text: bytes | bytearray) -> dict[str, Any]:
    """A JSON object parsed by orjson (a third faster than pydantic-core's parser here).

    It raises where pydantic-core's parser might read the text otherwise (NaN and Infinity
    literals, numbers beyond float64, nesting beyond 1,024 levels), and a body it reads is
    read to the same values; the one difference, an integer beyond 64 bits read as a float,
    is a value the request model accepts only as that same float. On anything it raises,
    the stack parses the body again and words the error."""
    raw = orjson.loads(text)
    if type(raw) is not dict:
        raise ValueError("expected a JSON object")
    out: dict[str, Any] = raw
    return out


def uses_store(req: BatchRequest) -> bool:
    """Whether scoring ``req`` reads or writes the store (a stream to record under, a
    calibrator or a policy to read, an audit to keep): the stack runs that in threads."""
    return (
        req.stream is not None
        or req.calibrator is not None
        or req.audit_rate is not None
        or (req.flag is not None and req.flag.policy is not None)
    )


def _replay(received: list[Message], receive: Receive) -> Receive:
    """``receive`` giving back the ``received`` messages first, then the server's."""
    pending = list(received)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class FastLane:
    """The lane in front of ``stack`` (see the module docstring)."""

    def __init__(
        self,
        stack: ASGIApp,
        *,
        settings: Settings,
        metrics: Metrics,
        slots: ScoringSlots,
        telemetry_on: Callable[[], bool],
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.metrics = metrics
        self.slots = slots
        self.telemetry_on = telemetry_on
        self.keys = list(settings.api_keys)
        self.max_length = min(settings.inline_body_bytes, settings.max_body_bytes)
        self._counted: dict[tuple[str, str], Callable[[float], None]] = {}
        self._items: dict[tuple[str, str], Any] = {}  # xent_items_scored_total's children
        #: requests the lane answered itself (the rest went to the stack)
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or not self._plain(scope):
            await self.stack(scope, receive, send)
            return
        begin = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.settings.body_timeout
        received: list[Message] = []
        body = await self._body(receive, received, deadline)
        content = None if body is None else self._answer(route, body)
        if content is None:
            scope[DEADLINE] = deadline  # the stack's 408 keeps the lane's clock
            await self.stack(scope, _replay(received, receive), send)
            return
        rid = request_id(scope)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    _JSON_HEADERS,
                    (b"x-request-id", rid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
        self.answered += 1
        self._count(route.template, time.perf_counter() - begin)

    def _plain(self, scope: Scope) -> bool:
        """Whether the headers are the lane's (see the module docstring)."""
        length = key = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if length is not None:
                    return False
                length = value
            elif name == b"content-type":
                if not json_like(value.decode("latin-1")):
                    return False
            elif name in _STAND_ASIDE:
                if name != b"content-encoding" or value.strip().lower() not in (b"", b"identity"):
                    return False
            elif name in (b"authorization", b"x-api-key"):
                key = True
        if length is None or not (length.isdigit() and int(length) <= self.max_length):
            return False
        if self.keys:
            given = given_key(scope) if key else None
            if given is None or not key_matches(given, self.keys):
                return False
        return self.slots.in_use < self.slots.limit and not self.telemetry_on()

    async def _body(
        self, receive: Receive, received: list[Message], deadline: float
    ) -> bytes | None:
        """The whole body, or None (``received`` holds what came) when the client went away
        or the deadline passed first."""
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    message = await receive()
                    received.append(message)
                    if message["type"] != "http.request":
                        return None
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return None
        if len(received) == 1:
            body: bytes = received[0].get("body", b"")
            return body
        return b"".join(m.get("body", b"") for m in received)

    def _answer(self, route: LaneRoute, body: bytes) -> bytes | None:
        """The JSON answer, or None for anything the stack must answer."""
        settings = self.settings
        try:
            parsed = parse_batch(
                body, route.model, header_length=None, settings=settings, loads=json_object
            )
            if uses_store(parsed.request):
                return None
            result = fast_score_request(parsed, settings)
            if result is None:
                scored = score_parsed(parsed, settings=settings, store=None, check=never_gone)
            else:
                scored = Scored(parsed.request, result, {})
            content = dumps(batch_answer(scored, None, route.view))
        except _ERRORS:
            return None
        except Exception:
            log.exception("fast lane: unexpected error, the request goes to the full stack")
            return None
        result = scored.result
        key = (route.endpoint, result.task)
        items = self._items.get(key)
        if items is None:
            items = self._items[key] = self.metrics.items.labels(*key)
        items.inc(result.n_items)
        return content

    def _count(self, template: str, seconds: float) -> None:
        """``xent_http_requests_total`` and the latency of one 200 of ``template``."""
        count = self._counted.get((template, "POST"))
        if count is None:
            requests = self.metrics.requests.labels(template, "POST", "200")
            latency = self.metrics.latency.labels(template, "POST")

            def count(seconds: float) -> None:
                requests.inc()
                latency.observe(seconds)

            self._counted[(template, "POST")] = count
        count(seconds)


#: Headers that send a request to the stack (a Content-Encoding other than identity).
_STAND_ASIDE = frozenset(
    (
        b"content-encoding",
        b"inference-header-content-length",
        b"idempotency-key",
        b"transfer-encoding",
        b"expect",
    )
)
