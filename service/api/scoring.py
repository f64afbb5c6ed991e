"""``POST /v1/score``, ``/v1/loss``, ``/v1/confidence`` and ``/v1/flag``.

All four score the whole batch with ``xentcore.score_batch`` (so a stream records the same
figures whichever is called) and differ only in what they return.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.pipeline import run_batch
from service.api.views import confidence_view, flag_view, loss_view, score_view
from service.openapi import ERRORS, request_body
from service.schemas import (
    BatchRequest,
    ConfidenceResponse,
    FlagResponse,
    LabelledBatchRequest,
    LossResponse,
    ScoreResponse,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["scoring"])


@router.post(
    "/score",
    response_model=None,
    responses={200: {"model": ScoreResponse}, **ERRORS},
    openapi_extra=request_body(BatchRequest),
    summary="Loss, confidence, predictions and flags of a batch",
)
async def score(request: Request) -> Response:
    """Everything about a batch: the loss (with labels), accuracy, confidence, predictions and
    flags, as summary figures and, unless `per_item` is false, per-item columns."""
    return await run_batch(request, BatchRequest, score_view, endpoint="score")


@router.post(
    "/loss",
    response_model=None,
    responses={200: {"model": LossResponse}, **ERRORS},
    openapi_extra=request_body(LabelledBatchRequest),
    summary="Loss of a batch",
)
async def loss(request: Request) -> Response:
    """The reduced loss and, unless `per_item` is false, each item's loss (labels required)."""
    return await run_batch(request, LabelledBatchRequest, loss_view, endpoint="loss")


@router.post(
    "/confidence",
    response_model=None,
    responses={200: {"model": ConfidenceResponse}, **ERRORS},
    openapi_extra=request_body(BatchRequest),
    summary="Confidence and predictions",
)
async def confidence(request: Request) -> Response:
    """Confidence and predicted class of every item (labels optional)."""
    return await run_batch(request, BatchRequest, confidence_view, endpoint="confidence")


@router.post(
    "/flag",
    response_model=None,
    responses={200: {"model": FlagResponse}, **ERRORS},
    openapi_extra=request_body(BatchRequest),
    summary="The flagged items only",
)
async def flag(request: Request) -> Response:
    """Which items the flag rules catch, with their index, id, confidence, loss and reasons:
    the compact answer for a pipeline that only acts on the bad ones."""
    return await run_batch(request, BatchRequest, flag_view, endpoint="flag")
