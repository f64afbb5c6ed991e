"""``POST /v1/score``, ``/v1/loss``, ``/v1/confidence`` and ``/v1/flag``.

All four score the whole batch with ``xentcore.score_batch`` (so a stream records the same
figures whichever is called) and differ only in what they return.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api._docs import ERRORS, request_body
from service.batch import BatchContext, run_batch
from service.schemas import (
    BatchRequest,
    ConfidenceResponse,
    FlagResponse,
    LabelledBatchRequest,
    LossResponse,
    ScoreResponse,
)
from xentcore import ScoreResult
from xentcore.types import REASONS

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["scoring"])


def _head(result: ScoreResult) -> dict[str, Any]:
    return {"task": result.task, "n_items": result.n_items, "n_classes": result.n_classes}


def _tail(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    return {"warnings": result.warnings, "recorded": ctx.recorded}


def _with_ids(columns: dict[str, Any], ids: list[Any] | None) -> dict[str, Any]:
    if ids is not None:
        columns["ids"] = ids
    return columns


def _loss(result: ScoreResult) -> dict[str, Any] | None:
    if result.loss_sum is None:
        return None
    return {"mean": result.loss_mean, "sum": result.loss_sum, "n_scored": result.n_scored}


def _confidence(result: ScoreResult) -> dict[str, Any]:
    return {"method": result.confidence_method, "mean": result.confidence_mean}


def _flagged(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    indices = result.flagged_indices
    out: dict[str, Any] = {
        "count": int(indices.size),
        "rate": indices.size / result.n_items,
        "indices": indices,
    }
    if ctx.ids is not None:
        out["ids"] = [ctx.ids[i] for i in indices.tolist()]
    return out


def _predicted(result: ScoreResult) -> Any:
    """Indices as a numpy array (orjson writes it directly); names and label sets as lists."""
    predicted = result.predicted
    if isinstance(predicted, np.ndarray) and predicted.dtype == object:
        return predicted.tolist()
    return predicted


def score_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {
        **_head(result),
        "loss": _loss(result),
        "accuracy": result.accuracy,
        "confidence": _confidence(result),
        "flagged": _flagged(ctx, result),
    }
    if ctx.request.per_item:
        out["items"] = _with_ids(
            {
                "loss": result.item_loss,
                "confidence": result.confidence,
                "predicted": _predicted(result),
                "flagged": result.flagged,
                "reasons": result.reasons,
            },
            ctx.ids,
        )
    return {**out, **_tail(ctx, result)}


def loss_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {**_head(result), "loss": _loss(result)}
    if ctx.request.per_item:
        out["items"] = _with_ids({"loss": result.item_loss}, ctx.ids)
    return {**out, **_tail(ctx, result)}


def confidence_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {**_head(result), "confidence": _confidence(result), "accuracy": result.accuracy}
    if ctx.request.per_item:
        out["items"] = _with_ids(
            {"confidence": result.confidence, "predicted": _predicted(result)}, ctx.ids
        )
    return {**out, **_tail(ctx, result)}


def _flagged_rows(ctx: BatchContext, result: ScoreResult) -> list[dict[str, Any]]:
    """Index, id, confidence, loss and reasons of the flagged items only."""
    indices = result.flagged_indices
    confidence = result.confidence[indices].tolist()
    loss = result.item_loss[indices].tolist() if result.item_loss is not None else None
    fired = {name: getattr(result.masks, name)[indices].tolist() for name in REASONS}
    rows = []
    for j, i in enumerate(indices.tolist()):
        row: dict[str, Any] = {"index": i}
        if ctx.ids is not None:
            row["id"] = ctx.ids[i]
        row["confidence"] = confidence[j]
        row["loss"] = None if loss is None else loss[j]
        row["reasons"] = [name for name in REASONS if fired[name][j]]
        rows.append(row)
    return rows


def flag_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {**_head(result), "flagged": _flagged(ctx, result)}
    if ctx.request.per_item:
        out["items"] = _flagged_rows(ctx, result)
    return {**out, **_tail(ctx, result)}


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
