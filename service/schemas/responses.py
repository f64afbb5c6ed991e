"""Response models: what the routes return, documented for the OpenAPI page.

The routes serialize plain dicts with orjson (fast, NaN -> null); the tests check every answer
against these models. ``Reason`` and ``ConfidenceMethod`` come from ``xentcore.types``.

Optional fields default to None and the server omits them when they do not apply (``audit``
without ``audit_rate``, ``ids`` without ids, ``nll`` / ``n_tokens`` of a classifier's kept item):
a model accepts an answer with or without them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xentcore.types import ConfidenceMethod, Reason, Task

__all__ = [
    "AuditSummary",
    "Bin",
    "CalibrationResponse",
    "ConfidenceColumns",
    "ConfidenceResponse",
    "ConfidenceSummary",
    "ErrorItem",
    "FlagResponse",
    "FlaggedItem",
    "FlaggedSummary",
    "HTTPError",
    "HealthResponse",
    "ItemsResponse",
    "KeptItem",
    "LabelsResponse",
    "LossColumns",
    "LossResponse",
    "LossSummary",
    "ReliabilityCurve",
    "ScoreColumns",
    "ScoreResponse",
    "SequenceOut",
    "SequencesResponse",
    "ValidationErrorResponse",
]

OUT = ConfigDict(extra="forbid")
Predicted = int | str | list[int] | list[str]
#: A label as the kept items show it: a class index or name, a multilabel set, a verdict 0/1.
Label = int | str | list[int] | list[str]
Ids = list[str] | list[int]


class LossSummary(BaseModel):
    model_config = OUT
    mean: float | None = Field(description="Weighted mean loss (null when nothing is scored).")
    sum: float = Field(description="sum_i s_i loss_i over scored items.")
    n_scored: int = Field(description="Items with a loss (labelled, not ignored).")


class ConfidenceSummary(BaseModel):
    model_config = OUT
    method: ConfidenceMethod
    mean: float | None = Field(description="Plain mean confidence over the items.")


class FlaggedSummary(BaseModel):
    model_config = OUT
    count: int
    rate: float = Field(description="count / n_items.")
    indices: list[int] = Field(description="Indices of the flagged items, ascending.")
    ids: list[str] | list[int] | None = Field(None, description="Their ids, when given.")


class CalibratedBy(BaseModel):
    """The calibrator a request's ``calibrator`` applied before scoring."""

    model_config = OUT
    name: str
    version: int
    method: Literal["temperature", "platt"]
    temperature: float | None = None
    a: float | None = None
    b: float | None = None


class PolicyUsed(BaseModel):
    """The risk policy a request's ``flag.policy`` applied (API.md section 10)."""

    model_config = OUT
    name: str
    version: int
    threshold: float | None = Field(
        None, description="Accept confidence >= this (null: infeasible, nothing accepted)."
    )
    thresholds: dict[str, float | None] | None = Field(
        None, description="Per predicted class (null: that class is always flagged)."
    )
    alpha: float
    delta: float
    feasible: bool


class AuditSummary(BaseModel):
    """The items an ``audit_rate`` draw marked for review (API.md section 9)."""

    model_config = OUT
    count: int
    indices: list[int] = Field(description="Indices of the audited items, ascending.")
    ids: Ids | None = Field(None, description="Their ids, when given.")


class ScoreColumns(BaseModel):
    """Per-item results, one array per field (index i = item i)."""

    model_config = OUT
    loss: list[float | None] | None = Field(description="null without labels / when ignored.")
    confidence: list[float | None]
    predicted: list[Predicted] = Field(
        description="Class index (or name); multilabel: the list of predicted classes."
    )
    flagged: list[bool]
    reasons: list[list[Reason]]
    ids: list[str] | list[int] | None = None
    audit: list[bool] | None = Field(
        None, description="Whether each item was drawn for review; only with `audit_rate`."
    )


class LossColumns(BaseModel):
    model_config = OUT
    loss: list[float | None]
    ids: list[str] | list[int] | None = None
    audit: list[bool] | None = Field(
        None, description="Whether each item was drawn for review; only with `audit_rate`."
    )


class ConfidenceColumns(BaseModel):
    model_config = OUT
    confidence: list[float | None]
    predicted: list[Predicted]
    ids: list[str] | list[int] | None = None
    audit: list[bool] | None = Field(
        None, description="Whether each item was drawn for review; only with `audit_rate`."
    )


class _BatchHead(BaseModel):
    model_config = OUT
    task: Task
    n_items: int
    n_classes: int


class _BatchTail(BaseModel):
    model_config = OUT
    warnings: list[str] = Field(description="Short notes, e.g. how many inputs were clipped.")
    recorded: bool | None = Field(
        description="Whether the batch was written to the monitoring store (null: no `stream`)."
    )
    audit: AuditSummary | None = Field(None, description="Present only with `audit_rate`.")
    policy: PolicyUsed | None = Field(None, description="Present only with `flag.policy`.")
    calibrated: CalibratedBy | None = Field(None, description="Present only with `calibrator`.")


class ScoreResponse(_BatchHead, _BatchTail):
    loss: LossSummary | None = Field(description="null without labels.")
    accuracy: float | None
    confidence: ConfidenceSummary
    flagged: FlaggedSummary
    items: ScoreColumns | None = Field(None, description="Omitted when `per_item` is false.")


class LossResponse(_BatchHead, _BatchTail):
    loss: LossSummary
    items: LossColumns | None = Field(None, description="Omitted when `per_item` is false.")


class ConfidenceResponse(_BatchHead, _BatchTail):
    confidence: ConfidenceSummary
    accuracy: float | None = Field(description="null without labels.")
    items: ConfidenceColumns | None = Field(None, description="Omitted when `per_item` is false.")


class FlaggedItem(BaseModel):
    model_config = OUT
    index: int
    id: str | int | None = None
    confidence: float | None
    loss: float | None
    reasons: list[Reason]


class FlagResponse(_BatchHead, _BatchTail):
    flagged: FlaggedSummary
    items: list[FlaggedItem] | None = Field(
        None, description="The flagged items only; omitted when `per_item` is false."
    )


class Bin(BaseModel):
    model_config = OUT
    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


class ReliabilityCurve(BaseModel):
    """The positive-class reliability curve (scikit-learn's ``calibration_curve``)."""

    model_config = OUT
    prob_true: list[float] = Field(description="Fraction of positives, per non-empty bin.")
    prob_pred: list[float] = Field(description="Mean predicted p of the positive class, per bin.")
    count: list[int] = Field(description="Items per non-empty bin.")


class CalibrationResponse(_BatchHead, _BatchTail):
    n_scored: int
    ece: float | None
    mce: float | None
    brier: float | None
    nll: float | None
    bins: list[Bin]
    temperature: float | None = None
    nll_after: float | None = None
    ece_after: float | None = None
    classwise_ece: float | None = Field(
        None,
        description="Mean over classes of the ECE of each class's probability against its "
        "frequency, in the same bins (Kull et al. 2019); null when nothing is scored.",
    )
    rms_calibration_error: float | None = Field(
        None,
        description="sqrt(sum_b (n_b / N) (acc_b - conf_b)^2) over the ECE's bins "
        "(torchmetrics' `l2` norm); null when nothing is scored.",
    )
    reliability_curve: ReliabilityCurve | None = Field(
        None,
        description="Binary tasks: the positive-class curve in `n_bins` bins of p with "
        "`strategy` (scikit-learn's `calibration_curve`); null for multiclass.",
    )


class SequenceOut(BaseModel):
    model_config = OUT
    id: str | int | None = None
    n_tokens: int
    mean_logprob: float
    nll: float
    perplexity: float
    confidence: float
    min_token_logprob: float
    min_token_index: int
    flagged: bool
    reasons: list[Literal["low_confidence", "low_token_probability", "risk_policy"]]
    audit: bool | None = Field(None, description="Drawn for review; only with `audit_rate`.")


class SequencesResponse(BaseModel):
    model_config = OUT
    sequences: list[SequenceOut]
    nll: float = Field(description="Token-weighted: -sum of all log-probs / total tokens.")
    perplexity: float
    warnings: list[str]
    recorded: bool | None
    audit: AuditSummary | None = Field(None, description="Present only with `audit_rate`.")
    policy: PolicyUsed | None = Field(None, description="Present only with `flag.policy`.")


class LabelsResponse(BaseModel):
    """``POST /v1/streams/{stream}/labels``: what the late labels did (API.md section 9)."""

    model_config = OUT
    matched: int = Field(description="Ids that found a kept item.")
    replaced: int = Field(description="Of those, items that already had a label (replaced).")
    unknown: int = Field(description="Ids never kept, or past XENT_ITEM_RETENTION.")
    unknown_ids: Ids = Field(description="The first 100 unknown ids.")


class KeptItem(BaseModel):
    """One kept item of ``GET /v1/streams/{stream}/items``."""

    model_config = OUT
    id: str | int
    time: str = Field(description="When its batch was recorded (ISO 8601, UTC).")
    index: int = Field(description="Its index in that batch.")
    predicted: Predicted | None = Field(description="null for a sequence.")
    confidence: float | None
    flagged: bool
    reasons: list[str]
    audit: bool = Field(description="Drawn for review by the batch's `audit_rate`.")
    label: Label | None = Field(description="null until labelled; a sequence's verdict 0/1.")
    label_source: Literal["batch", "late"] | None = Field(
        description="`batch`: sent with the batch; `late`: by /labels; null: no label yet."
    )
    loss: float | None = Field(description="The loss of the label (null without one or a row).")
    correct: bool | None = Field(description="Whether the prediction matches the label.")
    nll: float | None = Field(None, description="Sequences only.")
    n_tokens: int | None = Field(None, description="Sequences only.")


class ItemsResponse(BaseModel):
    """``GET /v1/streams/{stream}/items``: kept items newest first, and the next page's cursor."""

    model_config = OUT
    items: list[KeptItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class SummaryResponse(BaseModel):
    """``GET /v1/streams/{stream}/summary``: the window read and its figures (README, "Stream
    summary"): ``total`` (with ``reliability``, ``labeled`` and ``reviewed``) and ``buckets``,
    each a mapping of the figures the README lists."""

    model_config = OUT
    stream: str
    since: str | None = Field(description="The window's start as read (null: the first batch).")
    until: str
    total: dict[str, Any]
    buckets: list[dict[str, Any]]


class FlaggedItemsResponse(BaseModel):
    """``GET /v1/streams/{stream}/flagged``: flagged items newest first, and the next cursor."""

    model_config = OUT
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class StreamsResponse(BaseModel):
    """``GET /v1/streams``: every stream with ``stream``, ``n_batches``, ``last_seen``,
    ``tasks`` and lifetime ``total`` figures."""

    model_config = OUT
    streams: list[dict[str, Any]]


class PolicyResponse(BaseModel):
    """A stored risk-controlled policy (API.md section 10)."""

    model_config = OUT
    name: str
    stream: str
    version: int
    fitted_at: str
    alpha: float
    delta: float
    confidence: str
    per_class: bool
    since: str | None
    until: str | None
    min_calibration: int
    feasible: bool
    threshold: float | None
    thresholds: dict[str, float | None] | None = Field(None, description="With per_class.")
    n_calibration: int
    n_accepted: int
    errors: int
    risk_upper_bound: float | None
    coverage: float
    method: str
    other_method: int = Field(description="Calibration items of batches of another method.")
    truncated: bool = Field(
        description="The window held more than XENT_MAX_CALIBRATION_ITEMS: the newest were used."
    )


class CalibratorResponse(BaseModel):
    """A stored calibrator (API.md section 10)."""

    model_config = OUT
    name: str
    stream: str
    version: int
    fitted_at: str
    method: Literal["temperature", "platt"]
    since: str | None
    until: str | None
    temperature: float | None = Field(None, description="temperature: softmax(log p / T).")
    a: float | None = Field(None, description="platt: sigmoid(a logit(p) + b).")
    b: float | None = None
    n_calibration: int
    nll_before: float = Field(description="Mean NLL of the calibration items before.")
    nll_after: float = Field(description="... and after the calibrator.")
    truncated: bool = Field(
        description="The window held more than XENT_MAX_CALIBRATION_ITEMS: the newest were used."
    )


class CalibratorsResponse(BaseModel):
    model_config = OUT
    calibrators: list[CalibratorResponse]


class PoliciesResponse(BaseModel):
    model_config = OUT
    policies: list[PolicyResponse]


class RiskPoint(BaseModel):
    model_config = OUT
    threshold: float
    coverage: float
    risk: float
    risk_upper_bound: float


class RiskCoverageResponse(BaseModel):
    """``GET /v1/streams/{stream}/risk-coverage``."""

    model_config = OUT
    n: int
    aurc: float | None
    points: list[RiskPoint]
    truncated: bool = Field(
        description="The window held more than XENT_MAX_CALIBRATION_ITEMS: the newest were used."
    )


class HealthResponse(BaseModel):
    model_config = OUT
    status: str


class ErrorItem(BaseModel):
    model_config = OUT
    loc: list[str | int] = Field(examples=[["body", "predictions", 12]])
    msg: str = Field(examples=["row sums to 0.87, expected 1 ± 0.0001"])
    type: str = Field(examples=["value_error"])


class ValidationErrorResponse(BaseModel):
    """422: every invalid field, with its location (never the submitted value)."""

    model_config = OUT
    detail: list[ErrorItem]


class HTTPError(BaseModel):
    """Any other error: a short message (and, for a 500, the request id to look up)."""

    model_config = OUT
    detail: str
    request_id: str | None = None
