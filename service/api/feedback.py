"""The feedback loop over HTTP (API.md section 9): late labels and the kept items.

- ``POST /v1/streams/{stream}/labels``: ``{"ids": [...], "labels": [...]}`` applied to the newest
  kept item of each id, atomically (:meth:`service.store.base.Store.label`);
- ``GET /v1/streams/{stream}/items``: kept items newest first, with the review queue's filters
  (``audit=true&labeled=false``), paginated like ``/flagged``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.api.streams import (
    _ERRORS,
    Since,
    StreamName,
    Until,
    _read,
    iso,
    parse_cursor,
    parse_time,
)
from service.errors import RequestInvalid, error_item
from service.http import dumps, json_response, read_body
from service.metrics import Metrics
from service.parsing import too_large
from service.schemas.fields import Int64
from service.schemas.responses import ItemsResponse, LabelsResponse
from service.schemas.tensors import Ids
from service.settings import Settings
from service.store.labels import LabelCounts, LabelProblem

__all__ = ["LabelsRequest", "router"]

router = APIRouter(prefix="/v1/streams", tags=["feedback"])

#: A late label: a class index or 0/1 or verdict, a class name, or a multilabel row of 0/1.
Label = Int64 | Annotated[str, Field(max_length=1000)] | list[Int64]


class LabelsRequest(BaseModel):
    """Late labels for kept items of a stream, matched by id (API.md section 9)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={"examples": [{"ids": ["a", "b"], "labels": [2, "cat"]}]},
    )

    ids: Ids = Field(description="The items' ids, as they were scored.")
    labels: list[Label] = Field(
        description="One label per id: a class index or name (multiclass), 0/1 (binary), a "
        "list of K values 0/1 (multilabel), or a verdict 1 = acceptable / 0 = wrong "
        "(sequences)."
    )


#: Union tags pydantic puts in error locations (not part of the body's path).
_TAGS = frozenset(
    (
        "<strings>",
        "<integers>",
        "constrained-int",
        "constrained-str",
        "list[constrained-int]",
    )
)


def _counts(body: bytes | bytearray | memoryview, settings: Settings) -> None:
    """413 before parsing when the body holds more values than the limits allow: every value
    but the last of an array is followed by a comma, so commas bound the values."""
    values = bytes(body).count(b",") + 1 if len(body) > 1 << 16 else 0
    limit = 2 * settings.max_items + settings.max_elements
    if values > limit:
        raise too_large(f"labels request of up to {values} values exceeds the limits")


def _parse(body: bytes | bytearray | memoryview, settings: Settings) -> LabelsRequest:
    _counts(body, settings)
    try:
        req = LabelsRequest.model_validate_json(bytes(body))
    except ValidationError as exc:
        raise RequestInvalid(
            [
                error_item([p for p in e["loc"] if p not in _TAGS], e["msg"], e["type"])
                for e in exc.errors(include_input=False)[:20]
            ]
        ) from None  # fmt: skip
    if len(req.ids) > settings.max_items:
        raise too_large(
            f"labels request of {len(req.ids)} ids exceeds XENT_MAX_ITEMS = {settings.max_items}"
        )
    if len(req.ids) != len(req.labels):
        raise RequestInvalid(
            [
                error_item(
                    ("labels",),
                    f"{len(req.labels)} labels for {len(req.ids)} ids: one label per id",
                    "value_error",
                )
            ]
        )
    seen: dict[Any, int] = {}
    for i, item_id in enumerate(req.ids):
        if item_id in seen:
            raise RequestInvalid(
                [
                    error_item(
                        ("ids", i),
                        f"duplicate of ids[{seen[item_id]}]: send one label per item",
                        "value_error",
                    )
                ]
            )
        seen[item_id] = i
    return req


@router.post(
    "/{stream}/labels",
    summary="Late labels for kept items, by id",
    responses={
        **_ERRORS,
        200: {"model": LabelsResponse, "description": "What the request did"},
        408: {"description": "The body did not arrive within XENT_BODY_TIMEOUT"},
        413: {"description": "Over XENT_MAX_ITEMS or the body limit"},
        415: {"description": "Content type is not JSON"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": LabelsRequest.model_json_schema()}},
        }
    },
)
async def post_labels(request: Request, stream: StreamName) -> Response:
    """Apply each label to the newest kept item of the stream with that id, all or nothing.

    ``matched`` counts the ids that found a kept item, ``replaced`` those that already had a
    label (the new one replaces it, whether it came with the batch or later), ``unknown`` the
    ids never kept or past ``XENT_ITEM_RETENTION`` (not an error; the first 100 are listed).
    Sending the same request again stores nothing new (every id then counts as replaced).
    A label of the wrong form for its item's task is a 422 naming ``labels[i]``, and nothing
    is applied. Late labels never change the figures of section 5; they enter ``labeled``
    and ``reviewed`` of the summary, in the bucket where each item was scored.
    """
    body = await read_body(request)
    settings: Settings = request.app.state.settings
    req = _parse(body, settings)
    metrics: Metrics = request.app.state.metrics

    def apply(store: Any) -> LabelCounts | None:
        if not store.has_stream(stream):
            return None
        counts: LabelCounts = store.label(stream, req.ids, req.labels)
        return counts

    try:
        counts = await anyio.to_thread.run_sync(lambda: _read(request, apply))
    except LabelProblem as problem:
        raise RequestInvalid(
            [error_item(("labels", problem.index), problem.reason, "value_error")]
        ) from None
    if counts is None:
        raise HTTPException(404, f"no batch recorded under stream {stream!r}")
    metrics.streams.observe_labels(stream, counts.matched, counts.correct)
    return json_response(
        dumps(
            {
                "matched": counts.matched,
                "replaced": counts.replaced,
                "unknown": counts.unknown,
                "unknown_ids": counts.unknown_ids,
            }
        )
    )


@router.get(
    "/{stream}/items",
    summary="Kept items, newest first",
    responses={**_ERRORS, 200: {"model": ItemsResponse, "description": "A page of kept items"}},
)
def stream_items(
    request: Request,
    stream: StreamName,
    since: Since = None,
    until: Until = None,
    audit: Annotated[bool | None, Query(description="Only audited (true) or not")] = None,
    labeled: Annotated[bool | None, Query(description="Only labelled (true) or not")] = None,
    flagged: Annotated[bool | None, Query(description="Only flagged (true) or not")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="`next_cursor`"),
    ] = None,
) -> dict[str, Any]:
    """Kept items (batches recorded with ids), newest first: ``id``, ``time``, ``index``,
    ``predicted``, ``confidence``, ``flagged``, ``reasons``, ``audit``, ``label`` (null until
    labelled), ``label_source`` (``batch``, ``late`` or null), ``loss`` and ``correct`` of
    the label. The review queue is ``audit=true&labeled=false``. An unknown stream is a 404.
    """
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    cursor = parse_cursor(cursor)

    def read(store: Any) -> tuple[list[dict[str, Any]], str | None] | None:
        if not store.has_stream(stream):
            return None
        return store.items(  # type: ignore[no-any-return]
            stream,
            since=t0,
            until=t1,
            audit=audit,
            labeled=labeled,
            flagged=flagged,
            limit=limit,
            cursor=cursor,
        )

    page = _read(request, read)
    if page is None:
        raise HTTPException(404, f"no batch recorded under stream {stream!r}")
    rows, next_cursor = page
    for row in rows:
        row["time"] = iso(row["time"])
    return {"items": rows, "next_cursor": next_cursor}
