"""Flags with a guarantee over HTTP (API.md section 10): risk-controlled policies and the
risk-coverage curve of a stream's calibration set (section 9).

- ``PUT /v1/streams/{stream}/policies/{name}`` fits a policy on the calibration set now
  (:func:`xentcore.risk.risk_control`) and stores it as the name's next version;
- ``GET /v1/streams/{stream}/policies/{name}`` (the newest version, or ``?version=``) and
  ``GET /v1/streams/{stream}/policies`` (the newest of each name);
- ``GET /v1/streams/{stream}/risk-coverage`` (:func:`xentcore.risk.risk_coverage`).

A batch request uses a policy with ``"flag": {"policy": name}`` (``service.api.pipeline``).
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
from service.api.streams import (
    _ERRORS,
    Since,
    StreamName,
    Until,
)
from service.schemas.responses import PoliciesResponse, PolicyResponse, RiskCoverageResponse
from service.store.calset import CalibrationSet
from xentcore.errors import InputError
from xentcore.risk import risk_control, risk_coverage
from xentcore.types import ConfidenceMethod

__all__ = ["PolicyRequest", "router"]


router = APIRouter(prefix="/v1/streams", tags=["policies"], route_class=SharedPathRoute)

#: A policy's confidence: a classifier's method, or ``sequence`` (a sequences stream).
PolicyConfidence = ConfidenceMethod | Literal["sequence"]


class PolicyRequest(BaseModel):
    """A risk-controlled policy to fit on the stream's calibration set (API.md section 10)."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"alpha": 0.05, "delta": 0.1}]},
    )

    alpha: float = Field(gt=0, lt=1, description="Target error rate among accepted items.")
    delta: float = Field(
        0.1, gt=0, lt=1, description="Allowed probability that the guarantee fails."
    )
    confidence: PolicyConfidence = Field(
        "max_probability",
        description="The confidence the threshold applies to: the method of the batches that "
        "will use the policy (`sequence` for a sequences stream).",
    )
    per_class: bool = Field(False, description="One threshold per predicted class (Mondrian).")
    since: str | None = Field(None, description="Calibration window start (ISO 8601).")
    until: str | None = Field(None, description="Calibration window end (ISO 8601).")
    min_calibration: int = Field(
        100, ge=1, description="Fewer calibration items (per class with per_class): infeasible."
    )


def _task_check(cal: CalibrationSet, req: PolicyRequest) -> None:
    """422 for a confidence or per_class that does not fit the stream's task."""
    sequences = "sequences" in cal.tasks
    if sequences and req.confidence != "sequence":
        raise body_error("confidence", "a sequences stream's policy uses confidence 'sequence'")
    if not sequences and cal.tasks and req.confidence == "sequence":
        raise body_error("confidence", "'sequence' is the confidence of sequences streams only")
    if req.per_class and (sequences or "multilabel" in cal.tasks):
        raise body_error("per_class", "per-class thresholds need one predicted class per item")


def _fit(cal: CalibrationSet, req: PolicyRequest) -> dict[str, Any]:
    classes = cal.predicted if req.per_class else None
    try:
        fit = risk_control(
            cal.confidence,
            cal.correct,
            alpha=req.alpha,
            delta=req.delta,
            classes=classes,
            min_calibration=req.min_calibration,
        )
    except InputError as exc:  # the request's values are checked above: a stored-data problem
        raise body_error(str(exc.location[-1]) if exc.location else "alpha", str(exc)) from None
    return {
        "alpha": req.alpha,
        "delta": req.delta,
        "confidence": req.confidence,
        "per_class": req.per_class,
        "since": req.since,
        "until": req.until,
        "min_calibration": req.min_calibration,
        **fit.to_dict(),
        "other_method": cal.other_method,
        "truncated": cal.truncated,
    }


@router.put(
    "/{stream}/policies/{name}",
    summary="Fit a risk-controlled policy on the stream's calibration set",
    responses={**PUT_ERRORS, 200: {"model": PolicyResponse, "description": "The stored policy"}},
)
async def put_policy(
    request: Request, stream: StreamName, name: FitName, body: PolicyRequest
) -> dict[str, Any]:
    """Fit the confidence threshold whose error rate among accepted items is at most
    ``alpha`` with probability at least 1 - ``delta`` (fixed-sequence testing with exact
    Clopper-Pearson bounds; API.md section 10) and store it as the name's next version.

    Too few calibration items, or no threshold meeting ``alpha``: ``"feasible": false``, and
    a batch using the policy has every item flagged. ``other_method`` counts calibration items
    left out because their batch used another confidence method."""
    t0, t1 = window(body.since, body.until)
    cal = await anyio.to_thread.run_sync(
        lambda: calibration_of(request, stream, body.confidence, t0, t1)
    )
    _task_check(cal, body)
    figures = await anyio.to_thread.run_sync(lambda: _fit(cal, body))
    return await anyio.to_thread.run_sync(lambda: put(request, stream, "policy", name, figures))


@router.get(
    "/{stream}/policies/{name}",
    summary="A stored risk-controlled policy",
    responses={**_ERRORS, 200: {"model": PolicyResponse, "description": "The policy"}},
)
def get_policy(
    request: Request,
    stream: StreamName,
    name: FitName,
    version: Annotated[int | None, Query(ge=1, description="A version; default the newest")] = None,
) -> dict[str, Any]:
    """The newest version of the policy (or ``version``); 404 when there is none."""
    return stored(request, stream, "policy", name, version)


@router.get(
    "/{stream}/policies",
    summary="The stream's policies",
    responses={**_ERRORS, 200: {"model": PoliciesResponse, "description": "Newest of each"}},
)
def list_policies(request: Request, stream: StreamName) -> dict[str, Any]:
    """The newest version of each of the stream's policies, by name."""
    return {"policies": listed(request, stream, "policy")}


@router.get(
    "/{stream}/risk-coverage",
    summary="Risk against coverage over the stream's calibration set",
    responses={**_ERRORS, 200: {"model": RiskCoverageResponse, "description": "The curve"}},
)
def get_risk_coverage(
    request: Request,
    stream: StreamName,
    since: Since = None,
    until: Until = None,
    confidence: Annotated[
        PolicyConfidence, Query(description="The confidence method of the curve")
    ] = "max_probability",
    delta: Annotated[float, Query(gt=0, lt=1, description="For risk_upper_bound")] = 0.1,
) -> dict[str, Any]:
    """One point per distinct confidence of the calibration set (at most 101, spread evenly
    in coverage, coverage descending): ``threshold``, ``coverage``, ``risk`` (the error rate
    among items accepted at it) and ``risk_upper_bound`` (its 1 - delta Clopper-Pearson
    bound), and the AURC (Geifman, Uziel & El-Yaniv 2019)."""
    t0, t1 = window(since, until)
    cal = calibration_of(request, stream, confidence, t0, t1)
    out: dict[str, Any] = risk_coverage(
        np.asarray(cal.confidence), np.asarray(cal.correct), delta=delta
    ).to_dict()
    return {**out, "truncated": cal.truncated}
