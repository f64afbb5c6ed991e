"""``POST /v1/calibration``: reliability bins, ECE / MCE / RMS, classwise ECE, Brier, NLL, the
binary reliability curve and a temperature fit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.pipeline import run_batch
from service.api.views import calibration_figures, calibration_view
from service.openapi import ERRORS, request_body
from service.schemas import CalibrationRequest, CalibrationResponse

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["calibration"])


@router.post(
    "/calibration",
    response_model=None,
    responses={200: {"model": CalibrationResponse}, **ERRORS},
    openapi_extra=request_body(CalibrationRequest),
    summary="Calibration of a labelled batch",
)
async def calibration_route(request: Request) -> Response:
    """How well confidences match accuracy: `ece`, `mce`, `rms_calibration_error`,
    `classwise_ece`, `brier`, `nll` and the reliability `bins` (binary or multiclass, labels
    required), and for a binary task the positive-class `reliability_curve`; with
    `fit_temperature`, the temperature that minimises the NLL and the figures after scaling."""
    return await run_batch(
        request,
        CalibrationRequest,
        calibration_view,
        endpoint="calibration",
        extra=calibration_figures,
    )
