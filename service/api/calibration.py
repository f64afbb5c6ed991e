"""``POST /v1/calibration``: reliability bins, ECE / MCE, Brier, NLL and a temperature fit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api._docs import ERRORS, request_body
from service.batch import BatchContext, core_inputs, run_batch
from service.parsing import Parsed
from service.schemas import CalibrationRequest, CalibrationResponse
from service.settings import Settings
from xentcore import ScoreResult, calibration

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["calibration"])


def _figures(parsed: Parsed[CalibrationRequest], settings: Settings) -> dict[str, Any]:
    req = parsed.request
    inputs = core_inputs(parsed, settings)
    c = calibration(
        inputs.pop("predictions"),
        inputs.pop("labels"),
        n_bins=req.n_bins,
        strategy=req.strategy,
        fit_temperature=req.fit_temperature,
        **inputs,
    )
    out: dict[str, Any] = {
        "n_scored": c.n_scored,
        "ece": c.ece,
        "mce": c.mce,
        "brier": c.brier,
        "nll": c.nll,
        "bins": c.bins,
    }
    if req.fit_temperature:
        out |= {"temperature": c.temperature, "nll_after": c.nll_after, "ece_after": c.ece_after}
    return out


def _view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    return {
        "task": result.task,
        "n_items": result.n_items,
        "n_classes": result.n_classes,
        **ctx.extra,
        "warnings": result.warnings,
        "recorded": ctx.recorded,
    }


@router.post(
    "/calibration",
    response_model=None,
    responses={200: {"model": CalibrationResponse}, **ERRORS},
    openapi_extra=request_body(CalibrationRequest),
    summary="Calibration of a labelled batch",
)
async def calibration_route(request: Request) -> Response:
    """How well confidences match accuracy: `ece`, `mce`, `brier`, `nll` and the reliability
    `bins` (binary or multiclass, labels required); with `fit_temperature`, the temperature that
    minimises the NLL and the figures after scaling."""
    settings: Settings = request.app.state.settings
    return await run_batch(
        request,
        CalibrationRequest,
        _view,
        endpoint="calibration",
        extra=lambda parsed: _figures(parsed, settings),
    )
