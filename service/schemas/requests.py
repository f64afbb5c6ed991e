"""Request models: strict (``STRICT``: no unknown keys, no coercion, no NaN or infinity) and the
source of the OpenAPI request schemas.

The literals ``Task``, ``InputType`` and ``ConfidenceMethod`` and the default ``clip_eps`` come from
``xentcore.types``, so a request accepts exactly what the core does. ``FlagRules`` here is the
request's JSON object; ``service`` turns it into the core's frozen ``xentcore.types.FlagRules``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from service.schemas.fields import STRICT, Int64, StreamName, Unit
from service.schemas.tensors import (
    NUMBER,
    STRINGS,
    VECTOR,
    Ids,
    LabelArray,
    OneId,
    PosWeight,
    Predictions,
    Strings,
    VectorOrTensor,
)
from xentcore.types import DEFAULT_EPS, ConfidenceMethod, InputType, Task

__all__ = [
    "BatchRequest",
    "CalibrationRequest",
    "FlagRules",
    "LabelledBatchRequest",
    "OpenAILogprobs",
    "OpenAIToken",
    "OpenAITopLogprob",
    "SequenceFlagRules",
    "SequenceIn",
    "SequencesRequest",
    "tokens_mismatch",
]


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
    policy: StreamName | None = Field(
        None,
        description="Flag `risk_policy` for items a risk-controlled policy of the request's "
        "`stream` does not accept (PUT /v1/streams/{stream}/policies/{name}).",
    )


def _number_or_list(value: Any) -> str:
    return VECTOR if isinstance(value, list) else NUMBER


def _number_or_name(value: Any) -> str:
    return STRINGS if isinstance(value, str) else NUMBER


#: ``focal_alpha``: a number in [0, 1], or one number >= 0 per class (the core checks the count
#: and, for multilabel, the upper bound 1).
FocalAlpha = Annotated[
    Annotated[Unit, Tag(NUMBER)]
    | Annotated[list[Annotated[float, Field(ge=0)]], Field(fail_fast=True), Tag(VECTOR)],
    Discriminator(_number_or_list),
]
#: ``clip_eps``: a number in (0, 0.5), or "dtype" (the predictions' machine epsilon).
ClipEps = Annotated[
    Annotated[float, Field(gt=0, lt=0.5), Tag(NUMBER)] | Annotated[Literal["dtype"], Tag(STRINGS)],
    Discriminator(_number_or_name),
]

#: An audit seed: a non-negative 64-bit integer (numpy's generators take no negative seed).
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]

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
        None,
        description="One weight >= 0 per class. Multiclass: K weights w_k (torch "
        "`cross_entropy(weight=)`); binary: 2, the negative class then the positive (hard "
        "labels: torch `BCELoss(weight=w[y])`); multilabel: K, one per column (torch "
        "`BCEWithLogitsLoss(weight=)`). Binary and multilabel means divide by the number of "
        "items, not by the weights.",
        examples=[[1.0, 2.0, 0.5]],
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
        description="Items (multiclass class indices, binary labels) or entries (multilabel) "
        "whose label is this value have no loss. Not for multiclass target distributions.",
        examples=[-100],
    )
    focal_gamma: Annotated[float, Field(ge=0)] = Field(
        0.0, description="Focal loss gamma (0 = plain cross-entropy)."
    )
    focal_alpha: FocalAlpha | None = Field(
        None,
        description="Focal loss alpha: a number in [0, 1], or (multiclass, multilabel) one per "
        "class: >= 0 for multiclass (Keras `CategoricalFocalCrossentropy(alpha=[...])`), in "
        "[0, 1] for multilabel (alpha_k y + (1 - alpha_k)(1 - y) per column).",
        examples=[0.25],
    )
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
    clip_eps: ClipEps = Field(
        DEFAULT_EPS,
        description="Probabilities are clipped to [eps, 1 - eps] before logs: a number in "
        '(0, 0.5), or `"dtype"` for the machine epsilon of the predictions\' dtype as sent '
        "(scikit-learn `log_loss`: JSON numbers are float64, 2.22e-16; FP32 tensors 1.19e-7; "
        "FP16 tensors 9.77e-4).",
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
    calibrator: StreamName | None = Field(
        None,
        description="A calibrator of `stream` (PUT /v1/streams/{stream}/calibrators/{name}) "
        "applied to the predictions before anything else is computed.",
    )
    keep_items: bool = Field(
        True,
        description="With `stream` and `ids`: keep every item for late labels (API.md "
        "section 9); false turns keeping off for this request.",
    )
    audit_rate: Unit | None = Field(
        None,
        description="Mark each item for review independently with this probability (needs "
        "`stream` and `ids`); the answer lists them in `audit`.",
    )
    audit_seed: Seed | None = Field(
        None, description="Seed of the audit draw (the same seed draws the same items)."
    )


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


#: OpenAI objects: strict types, but unknown keys (e.g. `bytes`) are ignored, not rejected.
OPENAI = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class OpenAITopLogprob(BaseModel):
    """One of `top_logprobs` of an OpenAI token (other fields, e.g. `bytes`, are ignored)."""

    model_config = OPENAI

    token: str | None = None
    logprob: Annotated[float, Field(le=0)]


class OpenAIToken(BaseModel):
    """One entry of an OpenAI `logprobs.content` list; -9999 means "not in the top 20"."""

    model_config = OPENAI

    token: str | None = None
    logprob: Annotated[float, Field(le=0)]
    top_logprobs: list[OpenAITopLogprob] | None = None


class OpenAILogprobs(BaseModel):
    """`choices[i].logprobs` of an OpenAI chat completion, as it comes (unknown keys ignored)."""

    model_config = OPENAI

    content: list[OpenAIToken]


def tokens_mismatch(n_tokens: int, n_logprobs: int) -> str | None:
    """The error of a sequence whose ``tokens`` and ``token_logprobs`` differ in length."""
    if n_tokens == n_logprobs:
        return None
    return f"tokens has {n_tokens} entries, token_logprobs {n_logprobs}"


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
        if self.tokens is not None and isinstance(self.token_logprobs, list):
            problem = tokens_mismatch(len(self.tokens), len(self.token_logprobs))
            if problem is not None:
                raise ValueError(problem)
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
    policy: StreamName | None = Field(
        None,
        description="Flag `risk_policy` for sequences a risk-controlled policy of the "
        "request's `stream` (fitted with confidence `sequence`) does not accept.",
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
    keep_items: bool = Field(
        True,
        description="With `stream` and an `id` on every sequence: keep every sequence for "
        "late verdicts (API.md section 9).",
    )
    audit_rate: Unit | None = Field(
        None,
        description="Mark each sequence for review with this probability (needs `stream` and "
        "an `id` on every sequence).",
    )
    audit_seed: Seed | None = Field(None, description="Seed of the audit draw.")
