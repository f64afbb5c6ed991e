"""Request and response models: strict, documented, and the source of the OpenAPI page.

Requests are strict (``extra="forbid"``, no string-to-number or bool-to-int coercion, no NaN or
infinity). Array fields that take several shapes (``predictions``: N or N x K numbers; ``labels``:
numbers, class names or N x K targets) are unions picked by a discriminator that looks at the
first element only, so a 1,000,000-number batch is validated once, in pydantic-core, with an
exact error location. The tags of those unions (``<N>``, ``<N x K>``, ...) never reach a client:
``service.errors`` strips them from error locations.

Response models document what the routes return; the routes serialize plain dicts with orjson
(fast, NaN -> null) and the tests check every answer against these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from xentcore.validate import DEFAULT_EPS

__all__ = [
    "UNION_TAGS",
    "BatchRequest",
    "Bin",
    "CalibrationRequest",
    "CalibrationResponse",
    "ConfidenceColumns",
    "ConfidenceResponse",
    "ConfidenceSummary",
    "ErrorItem",
    "FlagResponse",
    "FlagRules",
    "FlaggedItem",
    "FlaggedSummary",
    "HTTPError",
    "HealthResponse",
    "LabelledBatchRequest",
    "LossColumns",
    "LossResponse",
    "LossSummary",
    "OpenAILogprobs",
    "OpenAIToken",
    "OpenAITopLogprob",
    "ScoreColumns",
    "ScoreResponse",
    "SequenceFlagRules",
    "SequenceIn",
    "SequenceOut",
    "SequencesRequest",
    "SequencesResponse",
    "TensorRef",
    "ValidationErrorResponse",
]

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# --- union tags (stripped from error locations by service.errors) ---------------------------
VECTOR, MATRIX, NAMES, STRINGS, INTEGERS, NUMBER, TENSOR = (
    "<N>",
    "<N x K>",
    "<names>",
    "<strings>",
    "<integers>",
    "<number>",
    "<tensor>",
)
UNION_TAGS = frozenset({VECTOR, MATRIX, NAMES, STRINGS, INTEGERS, NUMBER, TENSOR})

# --- reusable constrained types ---------------------------------------------------------------
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Unit = Annotated[float, Field(ge=0, le=1)]
Id = Annotated[str, Field(max_length=256)]
StreamName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_.:-]{1,128}$",
        description="Monitoring stream to record the batch under (`[A-Za-z0-9_.:-]{1,128}`).",
        examples=["fraud-model:v3"],
    ),
]
# fail_fast: a list of a million strings gives one error, not a million.
Vector = Annotated[list[float], Field(fail_fast=True)]
Matrix = Annotated[list[Vector], Field(fail_fast=True)]
Strings = Annotated[list[Id], Field(fail_fast=True)]
Integers = Annotated[list[Int64], Field(fail_fast=True)]


class TensorRef(BaseModel):
    """An array sent as raw bytes after the JSON (KServe binary data; README, "Binary tensors").

    The request carries the header `Inference-Header-Content-Length: L`; the body is L bytes of
    JSON, then the bytes of every tensor, little-endian and row-major, in the order the fields
    appear in the JSON.
    """

    model_config = STRICT

    datatype: Literal["FP16", "FP32", "FP64", "INT32", "INT64"]
    shape: Annotated[
        list[Annotated[int, Field(ge=0, le=INT64_MAX)]], Field(min_length=1, max_length=2)
    ]
    binary_data_size: Annotated[int, Field(ge=0, le=INT64_MAX)]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def _vector_or_matrix(value: Any) -> str:
    if isinstance(value, dict):
        return TENSOR
    return MATRIX if isinstance(_first(value), list) else VECTOR


def _label_form(value: Any) -> str:
    if isinstance(value, dict):
        return TENSOR
    first = _first(value)
    if isinstance(first, list):
        return MATRIX
    return NAMES if isinstance(first, str) else VECTOR


def _ids_form(value: Any) -> str:
    return STRINGS if isinstance(_first(value), str) else INTEGERS


def _number_or_vector(value: Any) -> str:
    return VECTOR if isinstance(value, list) else NUMBER


def _id_form(value: Any) -> str:
    return STRINGS if isinstance(value, str) else INTEGERS


Predictions = Annotated[
    Annotated[Vector, Tag(VECTOR)]
    | Annotated[Matrix, Tag(MATRIX)]
    | Annotated[TensorRef, Tag(TENSOR)],
    Discriminator(_vector_or_matrix),
]
LabelArray = Annotated[
    Annotated[Vector, Tag(VECTOR)]
    | Annotated[Strings, Tag(NAMES)]
    | Annotated[Matrix, Tag(MATRIX)]
    | Annotated[TensorRef, Tag(TENSOR)],
    Discriminator(_label_form),
]
VectorOrTensor = Annotated[
    Annotated[Vector, Tag(VECTOR)] | Annotated[TensorRef, Tag(TENSOR)],
    Discriminator(_vector_or_matrix),
]
Ids = Annotated[
    Annotated[Strings, Tag(STRINGS)] | Annotated[Integers, Tag(INTEGERS)],
    Discriminator(_ids_form),
]
OneId = Annotated[
    Annotated[Id, Tag(STRINGS)] | Annotated[Int64, Tag(INTEGERS)], Discriminator(_id_form)
]
PosWeight = Annotated[
    Annotated[float, Field(ge=0), Tag(NUMBER)] | Annotated[Vector, Tag(VECTOR)],
    Discriminator(_number_or_vector),
]

Task = Literal["binary", "multiclass", "multilabel"]
InputType = Literal["probabilities", "logits", "log_probabilities"]
ConfidenceMethod = Literal["max_probability", "margin", "entropy", "true_class"]
Reason = Literal["low_confidence", "high_loss", "misclassified"]


# ============================================================================================
# requests


class FlagRules(BaseModel):
    """Which items to flag; an item is flagged when any given rule fires."""

    model_config = STRICT

    min_confidence: Unit | None = Field(
        None, description="Flag `low_confidence` when confidence < this.", examples=[0.6]
    )
    max_loss: Annotated[float, Field(ge=0)] | None = Field(
        None,
        description="Flag `high_loss` when the item's loss > this (needs labels).",
        examples=[2.0],
    )
    misclassified: bool | None = Field(
        None, description="Flag `misclassified` when predicted != label (needs labels)."
    )


_BATCH_EXAMPLE: dict[str, Any] = {
    "predictions": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.4, 0.35, 0.25]],
    "labels": [0, 2, 0],
    "ids": ["a", "b", "c"],
}


class BatchRequest(BaseModel):
    """A batch of model outputs (README, "Endpoints"). Only `predictions` is required."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [_BATCH_EXAMPLE]},
    )

    predictions: Predictions = Field(
        description="N numbers (binary: p of the positive class) or N rows of K numbers "
        "(multiclass / multilabel), in the form given by `input_type`.",
        examples=[[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]],
    )
    labels: LabelArray | None = Field(
        None,
        description="Optional. Binary: N numbers in [0, 1] or names from `class_names`. "
        "Multiclass: N class indices in [0, K), N names from `class_names`, or N x K target "
        "distributions. Multilabel: N x K numbers in [0, 1].",
        examples=[[0, 2]],
    )
    task: Task | None = Field(
        None, description="Default: `binary` for 1-D predictions, `multiclass` for 2-D."
    )
    input_type: InputType = Field("probabilities", description="What `predictions` holds.")
    class_weights: VectorOrTensor | None = Field(
        None, description="Multiclass: K weights w_k (torch `weight=`)."
    )
    sample_weights: VectorOrTensor | None = Field(
        None, description="N weights s_i of the reduction."
    )
    pos_weight: PosWeight | None = Field(
        None, description="Binary: a number; multilabel: a number or K numbers."
    )
    label_smoothing: Unit = Field(0.0, description="Label smoothing e in [0, 1].")
    ignore_index: Int64 | None = Field(
        None,
        description="Sparse multiclass: items with this label have no loss.",
        examples=[-100],
    )
    focal_gamma: Annotated[float, Field(ge=0)] = Field(
        0.0, description="Focal loss gamma (0 = plain cross-entropy)."
    )
    focal_alpha: Unit | None = Field(None, description="Focal loss alpha.")
    confidence: ConfidenceMethod = Field(
        "max_probability", description="How each item's confidence is computed."
    )
    flag: FlagRules | None = Field(
        None,
        description="Flag rules. Without this object `min_confidence` = the server's "
        "`XENT_MIN_CONFIDENCE` applies alone.",
    )
    decision_threshold: Unit = Field(
        0.5, description="Binary / multilabel: predicted positive when p >= this."
    )
    renormalize: bool = Field(
        False,
        description="Divide multiclass probability rows by their sums instead of "
        "rejecting rows that do not sum to 1.",
    )
    sum_tolerance: Unit | None = Field(
        None, description="Tolerance of row sums; default the server's `XENT_SUM_TOLERANCE`."
    )
    clip_eps: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        DEFAULT_EPS, description="Probabilities are clipped to [eps, 1 - eps] before logs."
    )
    class_names: Strings | None = Field(
        None,
        description="K names (binary: 2, negative then positive); predictions are "
        "reported as names and labels may be names.",
        examples=[["cat", "dog", "bird"]],
    )
    ids: Ids | None = Field(
        None, description="N item ids (all strings or all integers), echoed back."
    )
    per_item: bool = Field(True, description="Include the per-item `items` columns.")
    stream: StreamName | None = None


class LabelledBatchRequest(BatchRequest):
    """A batch whose `labels` are required."""

    labels: LabelArray = Field(
        description="Binary: N numbers in [0, 1] or names from `class_names`. Multiclass: N "
        "class indices in [0, K), N names, or N x K target distributions. Multilabel: N x K "
        "numbers in [0, 1].",
        examples=[[0, 2]],
    )


class CalibrationRequest(LabelledBatchRequest):
    """A labelled binary or multiclass batch, and how to bin it."""

    n_bins: Annotated[int, Field(ge=1, le=10_000)] = Field(15, description="Number of bins B.")
    strategy: Literal["uniform", "quantile"] = Field(
        "uniform", description="`uniform`: equal-width bins; `quantile`: equal-mass bins."
    )
    fit_temperature: bool = Field(
        False,
        description="Also fit a temperature T (logits / log-probabilities input) and "
        "report `temperature`, `nll_after`, `ece_after`.",
    )


class OpenAITopLogprob(BaseModel):
    """One of `top_logprobs` of an OpenAI token (other fields, e.g. `bytes`, are ignored)."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    token: str | None = None
    logprob: Annotated[float, Field(le=0)]


class OpenAIToken(BaseModel):
    """One entry of an OpenAI `logprobs.content` list; -9999 means "not in the top 20"."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    token: str | None = None
    logprob: Annotated[float, Field(le=0)]
    top_logprobs: list[OpenAITopLogprob] | None = None


class OpenAILogprobs(BaseModel):
    """`choices[i].logprobs` of an OpenAI chat completion, as it comes (unknown keys ignored)."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    content: list[OpenAIToken]


class SequenceIn(BaseModel):
    """One generated sequence: `token_logprobs`, or an OpenAI `logprobs` object."""

    model_config = STRICT

    id: OneId | None = Field(None, description="Echoed back.")
    token_logprobs: VectorOrTensor | None = Field(
        None,
        description="Natural-log probability (<= 0) of each token.",
        examples=[[-0.1, -0.2, -2.0]],
    )
    tokens: Strings | None = Field(None, description="The tokens (same length; informative).")
    logprobs: OpenAILogprobs | None = Field(
        None, description="An OpenAI `choices[i].logprobs` object instead of `token_logprobs`."
    )

    @model_validator(mode="after")
    def _one_source(self) -> SequenceIn:
        if (self.token_logprobs is None) == (self.logprobs is None):
            raise ValueError("give exactly one of token_logprobs and logprobs")
        if (
            self.tokens is not None
            and isinstance(self.token_logprobs, list)
            and len(self.tokens) != len(self.token_logprobs)
        ):
            raise ValueError(
                f"tokens has {len(self.tokens)} entries, token_logprobs {len(self.token_logprobs)}"
            )
        return self


class SequenceFlagRules(BaseModel):
    """Which sequences to flag; only the given rules apply."""

    model_config = STRICT

    min_confidence: Unit | None = Field(
        None, description="Flag `low_confidence` when exp(mean log-prob) < this."
    )
    min_token_probability: Unit | None = Field(
        None,
        description="Flag `low_token_probability` when the least likely token's "
        "probability < this.",
    )


class SequencesRequest(BaseModel):
    """Generated sequences (LLM outputs) to score by their token log-probs."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "sequences": [
                        {"id": "a", "token_logprobs": [-0.1, -0.2, -2.0]},
                        {
                            "id": "b",
                            "logprobs": {
                                "content": [{"token": "Hi", "logprob": -0.05, "top_logprobs": []}]
                            },
                        },
                    ],
                    "flag": {"min_confidence": 0.5, "min_token_probability": 0.2},
                }
            ]
        },
    )

    sequences: list[SequenceIn]
    flag: SequenceFlagRules | None = Field(
        None, description="Without this object `min_confidence` = `XENT_MIN_CONFIDENCE` alone."
    )
    stream: StreamName | None = None


# ============================================================================================
# responses

OUT = ConfigDict(extra="forbid")
Predicted = int | str | list[int] | list[str]


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


class LossColumns(BaseModel):
    model_config = OUT
    loss: list[float | None]
    ids: list[str] | list[int] | None = None


class ConfidenceColumns(BaseModel):
    model_config = OUT
    confidence: list[float | None]
    predicted: list[Predicted]
    ids: list[str] | list[int] | None = None


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
    reasons: list[Literal["low_confidence", "low_token_probability"]]


class SequencesResponse(BaseModel):
    model_config = OUT
    sequences: list[SequenceOut]
    nll: float = Field(description="Token-weighted: -sum of all log-probs / total tokens.")
    perplexity: float
    warnings: list[str]
    recorded: bool | None


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
