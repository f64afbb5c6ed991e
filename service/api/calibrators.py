"""Calibrators over HTTP (API.md section 10): temperature (multiclass) and Platt (binary)
scaling fitted on a stream's calibration set (section 9), stored in versions, and applied by a
batch request's ``"calibrator": name`` before anything else is computed
(``service.convert``).

- ``PUT /v1/streams/{stream}/calibrators/{name}`` fits now (:func:`xentcore.calibrators.
  fit_calibrator` on the kept rows: log-probabilities, or binary p) and stores the next version;
- ``GET /v1/streams/{stream}/calibrators/{name}`` (newest, or ``?version=``) and
  ``GET /v1/streams/{stream}/calibrators`` (the newest of each name).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.fitted import (
    PUT_ERRORS,
    FitName,
    SharedPathRoute,
    body_error,
    calibration_of,
    listed,
    put,
    stored,
    window,
)
from service.api.streams import _ERRORS, StreamName
from service.schemas.responses import CalibratorResponse, CalibratorsResponse
from service.store.calset import CalibrationSet
from xentcore.calibrators import CALIBRATOR_TASKS, fit_calibrator
from xentcore.errors import InputError

__all__ = ["CalibratorRequest", "router"]

router = APIRouter(prefix="/v1/streams", tags=["policies"], route_class=SharedPathRoute)


class CalibratorRequest(BaseModel):
    """A calibrator to fit on the stream's calibration set (API.md section 10)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={"examples": [{"method": "temperature"}]},
    )

    method: Literal["temperature", "platt"] = Field(
        description="`temperature` (multiclass: softmax(log p / T)) or `platt` (binary: "
        "sigmoid(a logit(p) + b)), fitted by plain maximum likelihood."
    )
    since: str | None = Field(None, description="Calibration window start (ISO 8601).")
    until: str | None = Field(None, description="Calibration window end (ISO 8601).")


def _rows(cal: CalibrationSet, method: str) -> tuple[Any, Any]:
    """The kept rows and labels the method fits on; 422 when the stream's task does not fit
    the method or no calibration item kept a row."""
    task = CALIBRATOR_TASKS[method]
    if cal.tasks and cal.tasks != (task,):
        raise body_error(
            "method",
            f"{method} fits {task} streams; this stream's calibration set is "
            f"{', '.join(cal.tasks)}",
        )
    if not cal.rows:
        raise body_error(
            "method",
            "no item of the calibration set kept its prediction (labelled items of batches "
            "sent with ids; multiclass rows up to XENT_KEEP_ROW_MAX_CLASSES classes)",
        )
    if len({r.shape[1:] for r in cal.rows}) > 1:
        raise body_error("method", "the calibration set's batches have different class counts")
    return np.concatenate(cal.rows), np.concatenate(cal.labels)


def _fit(cal: CalibrationSet, req: CalibratorRequest) -> dict[str, Any]:
    rows, labels = _rows(cal, req.method)
    try:
        params = fit_calibrator(req.method, rows, labels)
    except InputError as exc:
        raise body_error("method", f"cannot fit {req.method}: {exc.reason}") from None
    return {
        "method": req.method,
        "since": req.since,
        "until": req.until,
        **params,
        "truncated": cal.truncated,
    }


@router.put(
    "/{stream}/calibrators/{name}",
    summary="Fit a calibrator on the stream's calibration set",
    responses={**PUT_ERRORS, 200: {"model": CalibratorResponse, "description": "The stored fit"}},
)
async def put_calibrator(
    request: Request, stream: StreamName, name: FitName, body: CalibratorRequest
) -> dict[str, Any]:
    """Fit the calibrator on the calibration set's kept rows (items labelled in their batch,
    and audited items with a late label) and store it as the name's next version. The answer
    has the parameters (``temperature``, or ``a`` and ``b``), ``n_calibration`` and the mean
    NLL of those items before and after. A method that does not fit the stream's task, or a
    set with no kept rows, is a 422."""
    t0, t1 = window(body.since, body.until)
    cal = await anyio.to_thread.run_sync(
        lambda: calibration_of(request, stream, "max_probability", t0, t1)
    )
    figures = await anyio.to_thread.run_sync(lambda: _fit(cal, body))
    return await anyio.to_thread.run_sync(lambda: put(request, stream, "calibrator", name, figures))


@router.get(
    "/{stream}/calibrators/{name}",
    summary="A stored calibrator",
    responses={**_ERRORS, 200: {"model": CalibratorResponse, "description": "The calibrator"}},
)
def get_calibrator(
    request: Request,
    stream: StreamName,
    name: FitName,
    version: Annotated[int | None, Query(ge=1, description="A version; default the newest")] = None,
) -> dict[str, Any]:
    """The newest version of the calibrator (or ``version``); 404 when there is none."""
    return stored(request, stream, "calibrator", name, version)


@router.get(
    "/{stream}/calibrators",
    summary="The stream's calibrators",
    responses={**_ERRORS, 200: {"model": CalibratorsResponse, "description": "Newest of each"}},
)
def list_calibrators(request: Request, stream: StreamName) -> dict[str, Any]:
    """The newest version of each of the stream's calibrators, by name."""
    return {"calibrators": listed(request, stream, "calibrator")}
