"""Request and response models: strict, documented, and the source of the OpenAPI page.

- ``fields``: constrained scalars and ``STREAM_PATTERN``, the one stream-name pattern;
- ``tensors``: array fields, ``TensorRef`` and the discriminated unions (``UNION_TAGS``);
- ``requests``: the request models (strict: ``extra="forbid"``, no coercion, no NaN);
- ``responses``: the response models;
- ``summaries``: the body and answer of ``POST /v1/streams/{stream}/summaries``.

The literals (task, input type, confidence method, reason) and the default ``clip_eps`` come
from ``xentcore.types``. Every public name is importable from ``service.schemas``.
"""

from __future__ import annotations

from service.schemas.fields import STREAM_PATTERN, StreamName
from service.schemas.requests import (
    BatchRequest,
    CalibrationRequest,
    FlagRules,
    LabelledBatchRequest,
    OpenAILogprobs,
    OpenAIToken,
    OpenAITopLogprob,
    SequenceFlagRules,
    SequenceIn,
    SequencesRequest,
)
from service.schemas.responses import (
    AuditSummary,
    Bin,
    CalibratedBy,
    CalibrationResponse,
    CalibratorResponse,
    CalibratorsResponse,
    ConfidenceColumns,
    ConfidenceResponse,
    ConfidenceSummary,
    ErrorItem,
    FlaggedItem,
    FlaggedItemsResponse,
    FlaggedSummary,
    FlagResponse,
    HealthResponse,
    HTTPError,
    ItemsResponse,
    KeptItem,
    LabelsResponse,
    LossColumns,
    LossResponse,
    LossSummary,
    PoliciesResponse,
    PolicyResponse,
    PolicyUsed,
    RiskCoverageResponse,
    RiskPoint,
    ScoreColumns,
    ScoreResponse,
    SequenceOut,
    SequencesResponse,
    StreamsResponse,
    SummaryResponse,
    ValidationErrorResponse,
)
from service.schemas.summaries import SummaryRecorded, SummaryState
from service.schemas.tensors import TENSOR_DTYPES, UNION_TAGS, TensorDatatype, TensorRef

__all__ = [
    "STREAM_PATTERN",
    "TENSOR_DTYPES",
    "UNION_TAGS",
    "AuditSummary",
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
    "FlaggedItemsResponse",
    "FlaggedSummary",
    "HTTPError",
    "HealthResponse",
    "ItemsResponse",
    "KeptItem",
    "LabelledBatchRequest",
    "LabelsResponse",
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
    "CalibratedBy",
    "CalibratorResponse",
    "CalibratorsResponse",
    "PoliciesResponse",
    "PolicyResponse",
    "PolicyUsed",
    "RiskCoverageResponse",
    "RiskPoint",
    "SequencesResponse",
    "StreamsResponse",
    "SummaryRecorded",
    "SummaryResponse",
    "SummaryState",
    "StreamName",
    "TensorDatatype",
    "TensorRef",
    "ValidationErrorResponse",
]
