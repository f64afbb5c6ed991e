"""The one adapter from a parsed request to xentcore: arrays, a raw ``ScoreOptions`` and the
flag rules. Every check and number is xentcore's; this module only renames and fills in the
server's defaults (``XENT_SUM_TOLERANCE``, ``XENT_MIN_CONFIDENCE``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from service.api.views import bound_response
from service.parsing import Parsed
from service.policyuse import thresholds_of
from service.schemas import BatchRequest, FlagRules, SequencesRequest
from service.settings import Settings
from xentcore import InputError, SequenceResult, fastpath, score_sequences
from xentcore.calibrators import CALIBRATOR_TASKS, calibrated_logits
from xentcore.fastpath import check_batch
from xentcore.feedback import audit_mask
from xentcore.score import ScoreResult, score_batch
from xentcore.sequences import openai_logprobs
from xentcore.types import FlagRules as CoreFlagRules
from xentcore.types import ScoreOptions
from xentcore.validate import Batch, check_flag_rules, check_ids

__all__ = [
    "audit_of",
    "check_audit",
    "fast_score_request",
    "flag_rules",
    "score_options",
    "score_request",
    "score_sequences_request",
]

B = TypeVar("B", bound=BatchRequest)


def score_options(parsed: Parsed[B], settings: Settings) -> ScoreOptions:
    """The request's options, unchecked (binary tensors in place of their refs; the server's
    ``sum_tolerance`` when the request gives none)."""
    req = parsed.request
    return ScoreOptions(
        task=req.task,
        input_type=req.input_type,
        class_weights=parsed.array(("class_weights",), req.class_weights),
        sample_weights=parsed.array(("sample_weights",), req.sample_weights),
        pos_weight=parsed.array(("pos_weight",), req.pos_weight),
        label_smoothing=req.label_smoothing,
        ignore_index=req.ignore_index,
        focal_gamma=req.focal_gamma,
        focal_alpha=req.focal_alpha,
        confidence=req.confidence,
        decision_threshold=req.decision_threshold,
        renormalize=req.renormalize,
        sum_tolerance=settings.sum_tolerance if req.sum_tolerance is None else req.sum_tolerance,
        clip_eps=req.clip_eps,
        class_names=req.class_names,
    )


def flag_rules(flag: FlagRules | None, settings: Settings) -> CoreFlagRules:
    """The request's ``flag`` object (None: ``min_confidence`` = the server setting alone);
    its ``policy`` is read by the route (:mod:`service.policyuse`)."""
    if flag is None:  # the server's rules: one frozen object per setting
        rules = _SERVER_RULES.get(settings.min_confidence)
        if rules is None:
            rules = check_flag_rules(None, default_min_confidence=settings.min_confidence)
            _SERVER_RULES[settings.min_confidence] = rules
        return rules
    raw = flag.model_dump(exclude_none=True, exclude={"policy"})
    return check_flag_rules(raw, default_min_confidence=settings.min_confidence)


#: The rules of a request without ``flag``, by ``XENT_MIN_CONFIDENCE``.
_SERVER_RULES: dict[float, CoreFlagRules] = {}


def _with_policy(rules: CoreFlagRules, batch: Batch, policy: dict[str, Any]) -> CoreFlagRules:
    """``rules`` with the policy's thresholds; 422 when the request's confidence method is
    not the one the policy was fitted for."""
    method = batch.options.confidence
    if policy["confidence"] != method:
        raise InputError(
            ("flag", "policy"),
            f"the policy was fitted for confidence {policy['confidence']!r}, "
            f"the request uses {method!r}",
        )
    if policy.get("thresholds") is not None and batch.task == "multilabel":
        raise InputError(("flag", "policy"), "a per-class policy needs one predicted class")
    return replace(rules, risk_thresholds=thresholds_of(policy, batch.n_classes))


def check_audit(rate: float | None, stream: str | None, has_ids: bool, keep: bool) -> None:
    """``audit_rate`` needs ``stream``, ids and kept items: an audit marks kept items for
    review."""
    if rate is None:
        return
    if stream is None or not has_ids:
        raise InputError(
            ("audit_rate",),
            "needs stream and ids (an id on every item): audited items are kept for review",
        )
    if not keep:
        raise InputError(("audit_rate",), "needs keep_items: audited items are kept for review")


def audit_of(rate: float | None, seed: int | None, n: int) -> npt.NDArray[np.bool_] | None:
    """The audit draw of a request with ``audit_rate`` (None without)."""
    return None if rate is None else audit_mask(n, rate, seed)


def _calibrated(batch: Batch, labels: Any, options: ScoreOptions, fit: dict[str, Any]) -> Batch:
    """The batch after the stored calibrator ``fit``: its calibrated logits, checked again (as
    logits: the request's renormalisation and sum tolerance no longer apply)."""
    method = fit["method"]
    task = CALIBRATOR_TASKS[method]
    if batch.task != task:
        raise InputError(
            ("calibrator",), f"a {method} calibrator fits {task} batches, this one is {batch.task}"
        )
    z = calibrated_logits(
        batch.x,
        input_type=batch.input_type,
        method=method,
        temperature=fit.get("temperature") or 1.0,
        a=fit.get("a", 1.0),
        b=fit.get("b", 0.0),
        eps=batch.options.clip_eps,
    )
    as_logits = replace(options, input_type="logits", renormalize=False, task=batch.task)
    return check_batch(z, labels, as_logits)


def score_request(
    parsed: Parsed[B],
    settings: Settings,
    policy: dict[str, Any] | None = None,
    calibrator: dict[str, Any] | None = None,
) -> tuple[Batch, ScoreResult]:
    """Check and score a parsed batch request (InputError -> the route's 422); ``policy`` and
    ``calibrator``: the stored fits its ``flag.policy`` and ``calibrator`` name (the
    calibrator is applied to the checked predictions before anything else)."""
    req = parsed.request
    check_audit(req.audit_rate, req.stream, req.ids is not None, req.keep_items)
    predictions = parsed.array(("predictions",), req.predictions)
    labels = parsed.array(("labels",), req.labels)
    bound_response(req, len(predictions), parsed.size)  # the answer's size, before scoring
    options = score_options(parsed, settings)
    batch = check_batch(predictions, labels, options)
    if calibrator is not None:
        batch = _calibrated(batch, labels, options, calibrator)
    check_ids(req.ids, batch.n_items)
    rules = flag_rules(req.flag, settings)
    if policy is not None:
        rules = _with_policy(rules, batch, policy)
    result = score_batch(batch, rules, threads=settings.threads)
    bound_response(req, batch.n_items, parsed.size, result)  # ... and multilabel, once scored
    return batch, result


def fast_score_request(parsed: Parsed[B], settings: Settings) -> ScoreResult | None:
    """``score_request(parsed, settings)[1]`` for a batch that xentcore's small-batch fast path
    takes (``xentcore.fastpath.score``: multiclass rows as an array, class-index labels or
    none, plain options), with no batch object made; None for every other request (and for
    any input the fast path finds wrong): ``score_request`` then scores it or words the error.
    Requests naming a stream, policy, calibrator or audit are the caller's to keep out."""
    req = parsed.request
    x = parsed.tensors.get(("predictions",))
    y = parsed.tensors.get(("labels",))
    if (
        x is None
        or (y is None and req.labels is not None)
        or req.class_weights is not None
        or req.sample_weights is not None
        or req.pos_weight is not None
        or req.focal_alpha is not None
        or req.class_names is not None
        or req.ignore_index is not None
        or req.renormalize
    ):
        return None
    tol = settings.sum_tolerance if req.sum_tolerance is None else req.sum_tolerance
    result = fastpath.score(
        x,
        y,
        req.task,
        req.input_type,
        req.label_smoothing,
        req.focal_gamma,
        req.confidence,
        flag_rules(req.flag, settings),
        req.decision_threshold,
        tol,
        req.clip_eps,
        settings.threads,
        lazy=False,  # the answer reads most fields
    )
    if result is not None:
        check_ids(req.ids, result.n_items)
    return result


def _token_arrays(
    parsed: Parsed[SequencesRequest],
) -> tuple[list[Any], list[npt.NDArray[np.int64] | None], list[str]]:
    """One log-prob array (or list) per sequence, token positions where some were left out,
    and the censoring warnings."""
    arrays: list[Any] = []
    positions: list[npt.NDArray[np.int64] | None] = []
    warnings: list[str] = []
    for i, seq in enumerate(parsed.request.sequences):
        if seq.logprobs is not None:  # parsing keeps its content as arrays
            values, kept, notes = openai_logprobs(parsed.openai[i], i)
            arrays.append(values)
            positions.append(kept)
            warnings.extend(notes)
        else:
            arrays.append(parsed.array(("sequences", i, "token_logprobs"), seq.token_logprobs))
            positions.append(None)
    return arrays, positions, warnings


def score_sequences_request(
    parsed: Parsed[SequencesRequest], settings: Settings, policy: dict[str, Any] | None = None
) -> SequenceResult:
    """Score a parsed sequences request (OpenAI objects read as xentcore reads them; an error in
    one is located at its ``logprobs.content``; no ``flag``: the server's ``min_confidence``)."""
    req = parsed.request
    has_ids = all(seq.id is not None for seq in req.sequences)
    check_audit(req.audit_rate, req.stream, has_ids, req.keep_items)
    arrays, positions, warnings = _token_arrays(parsed)
    rules = parsed.request.flag
    risk = None
    if policy is not None:
        if policy["confidence"] != "sequence":
            raise InputError(
                ("flag", "policy"),
                f"the policy was fitted for confidence {policy['confidence']!r}; sequences "
                "use 'sequence' (fit it on a sequences stream)",
            )
        risk = thresholds_of(policy, 1)[0]
    try:
        result = score_sequences(
            arrays,
            min_confidence=settings.min_confidence if rules is None else rules.min_confidence,
            min_token_probability=None if rules is None else rules.min_token_probability,
            positions=positions,
            risk_threshold=risk,
        )
    except InputError as exc:
        raise _relocated(exc, parsed.request) from None
    result.warnings[:0] = warnings
    return result


def _relocated(exc: InputError, req: SequencesRequest) -> InputError:
    """Point an error about an OpenAI-form sequence at its ``logprobs.content``."""
    loc = exc.location
    if (
        len(loc) >= 3
        and loc[0] == "sequences"
        and isinstance(loc[1], int)
        and req.sequences[loc[1]].logprobs is not None
    ):
        return InputError(("sequences", loc[1], "logprobs", "content"), exc.reason, kind=exc.kind)
    return exc
