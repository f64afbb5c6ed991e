"""The body and the answer of ``POST /v1/streams/{stream}/summaries``.

The body is :meth:`xentcore.Summary.to_dict` as it comes (format 1): the exact, mergeable state
of a set scored elsewhere (``xent score`` on a file, a Spark or Dask job), recorded as one batch
of the stream. This model checks its shape, field by field (so a 422 names the field, the bin
and the half of a pair); :meth:`xentcore.Summary.from_dict` then checks the values as the core
reads them, and the route the relations between the counts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.fields import STRICT
from xentcore.types import Task

__all__ = ["MAX_COUNT", "SummaryRecorded", "SummaryState", "SummaryTask"]

#: The largest count a recorded summary may hold (2**53: exact as a float, and in JSON).
MAX_COUNT = 2**53
#: Bins of a summary (the store's 15 uniform calibration bins).
N_BINS = 15

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Pair = Annotated[
    tuple[float, float],
    Field(
        description="A double-double sum `[hi, lo]`: hi = fl(hi + lo), the sum rounded to "
        "float64, and lo the rest. Finite numbers only: a summary whose sums overflow is not "
        "recorded."
    ),
]
Bins = Annotated[list[Pair], Field(min_length=N_BINS, max_length=N_BINS)]
#: The tasks a Summary carries (``xentcore.state.SUMMARY_TASKS``).
SummaryTask = Literal[Task, "sequences"]


def _bins(values: dict[int, float]) -> list[list[float]]:
    return [[values.get(b, 0.0), 0.0] for b in range(N_BINS)]


#: ``Summary.from_result(xentcore.score([0.9, 0.2, 0.6, 0.5], [1, 0, 0, 1])).to_dict()``.
_EXAMPLE: dict[str, Any] = {
    "format": 1,
    "task": "binary",
    "n_classes": 2,
    "n_items": 4,
    "n_scored": 4,
    "loss_sum": [1.9379419794061363, -5.551115123125783e-17],
    "weight_sum": [4.0, 0.0],
    "confidence_sum": [2.8, 2.220446049250313e-16],
    "confidence_count": 4,
    "flagged": 0,
    "low_confidence": 0,
    "high_loss": 0,
    "misclassified": 0,
    "low_token_probability": 0,
    "risk_policy": 0,
    "n_classified": 4,
    "correct": 3,
    "bin_count": _bins({7: 1.0, 8: 1.0, 11: 1.0, 13: 1.0}),
    "bin_confidence_sum": _bins({7: 0.5, 8: 0.6, 11: 0.8, 13: 0.9}),
    "bin_correct_sum": _bins({7: 1.0, 11: 1.0, 13: 1.0}),
}


class SummaryState(BaseModel):
    """``xentcore.Summary.to_dict()``: the exact state of a scored set (format 1).

    Counts are integers in [0, 2**53]; sums are `[hi, lo]` pairs of finite numbers; each bin
    field is 15 such pairs (the 15 uniform calibration bins of the top-label confidence).
    """

    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [_EXAMPLE]})

    format: Literal[1] = Field(description="The layout's version: 1.")
    task: SummaryTask = Field(description="The task of the scored set.")
    n_classes: Annotated[int, Field(ge=1, le=1 << 31)] | None = Field(
        description="K (null for sequences)."
    )
    n_items: Count
    n_scored: Count
    loss_sum: Pair
    weight_sum: Pair
    confidence_sum: Pair
    confidence_count: Count
    flagged: Count
    low_confidence: Count
    high_loss: Count
    misclassified: Count
    low_token_probability: Count
    risk_policy: Count
    n_classified: Count
    correct: Count
    bin_count: Bins
    bin_confidence_sum: Bins
    bin_correct_sum: Bins


class SummaryRecorded(BaseModel):
    """``POST /v1/streams/{stream}/summaries``: the summary is in the store."""

    model_config = ConfigDict(extra="forbid")
    stream: str
    task: SummaryTask
    n_items: int = Field(description="Items of the recorded summary.")
    duplicate: bool = Field(
        description="True when this `Idempotency-Key` was already recorded for the stream: "
        "nothing was written again."
    )
