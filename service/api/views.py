"""Response bodies of the batch routes: each view picks, from the scored batch, the fields its
route returns (API.md section 4). Numpy arrays go to ``http.dumps`` as they are (orjson writes
them natively); nothing here computes a number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from service.errors import RequestInvalid, error_item
from service.parsing import Parsed
from service.schemas import BatchRequest, CalibrationRequest, SequencesRequest
from xentcore import ScoreResult, SequenceResult
from xentcore.calibration import calibrate
from xentcore.flags import flagged_rows
from xentcore.validate import Batch

__all__ = [
    "NAMES_PER_BYTE",
    "NAMES_SLACK",
    "BatchContext",
    "bound_response",
    "calibration_figures",
    "calibration_view",
    "confidence_view",
    "flag_view",
    "loss_view",
    "score_view",
    "sequences_view",
]


#: Per-item answers repeat a class name for every item (a list of them, multilabel): those names
#: may take at most this many bytes per byte of the request...
NAMES_PER_BYTE = 8
#: ... plus this many. Everything else in an answer is a few dozen bytes per item at most.
NAMES_SLACK = 32 << 20


#: The most JSON bytes a class name (256 characters at most) can take: each one escaped.
_LONGEST_NAME = 256 * 6 + 3


def _sizes(names: Sequence[str]) -> npt.NDArray[np.int64]:
    """Bytes each name takes in a JSON list: quoted, escaped, and a comma."""
    return np.fromiter((len(orjson.dumps(name)) + 1 for name in names), np.int64, len(names))


def names_bytes(result: ScoreResult) -> int:
    """The bytes of JSON the predicted class names of ``result`` take in ``items.predicted``."""
    names = result.class_names
    if not names:
        return 0
    sizes = _sizes(names)
    pred = result.predicted_index
    if result.task == "multilabel":  # a list of names per item
        return int(np.count_nonzero(pred, axis=0) @ sizes) + 2 * result.n_items
    return int(sizes[pred].sum())


def _refuse(size: int, request_bytes: int) -> RequestInvalid:
    return RequestInvalid(
        [
            error_item(
                ("class_names",),
                f"per-item predictions as class names would take {size} bytes of the answer, "
                f"over {NAMES_PER_BYTE} x the request's {request_bytes} bytes + {NAMES_SLACK}: "
                "send shorter class_names, per_item: false, or no class_names (class indices)",
                "value_error",
            )
        ]
    )


def bound_response(
    request: BatchRequest, n_items: int, request_bytes: int, result: ScoreResult | None = None
) -> None:
    """Refuse (422 at ``class_names``) a per-item answer whose predicted class names would take
    more than ``NAMES_PER_BYTE`` x the request + ``NAMES_SLACK`` bytes (long names repeated for
    every item made a 3.8 MiB request a 251 MiB answer), before the batch is recorded.

    Before scoring (``result`` None): one name per item at most, every name the longest, unless
    the task is multilabel; a multilabel answer is measured once scored. Counted for every
    route with ``per_item``, whether or not its answer shows ``predicted``.
    """
    names = request.class_names
    if not request.per_item or not names:
        return
    limit = NAMES_PER_BYTE * request_bytes + NAMES_SLACK
    if result is None:
        if request.task != "multilabel" and n_items * _LONGEST_NAME > limit:
            size = n_items * int(_sizes(names).max())
            if size > limit:
                raise _refuse(size, request_bytes)
        return
    size = names_bytes(result)
    if size > limit:
        raise _refuse(size, request_bytes)


@dataclass(frozen=True)
class BatchContext:
    """What a view needs besides the result: the request, its ids, whether the batch was
    recorded, and the fields an ``extra`` step computed (calibration)."""

    request: BatchRequest
    ids: list[Any] | None
    recorded: bool | None
    extra: dict[str, Any]
    audit: npt.NDArray[np.bool_] | None = None


def _head(result: ScoreResult) -> dict[str, Any]:
    return {"task": result.task, "n_items": result.n_items, "n_classes": result.n_classes}


def audit_block(audit: npt.NDArray[np.bool_], ids: Sequence[Any] | None) -> dict[str, Any]:
    """``{"count", "indices", "ids"}`` of the items an audit draw marked (API.md section 9)."""
    indices = np.flatnonzero(audit)
    out: dict[str, Any] = {"count": int(indices.size), "indices": indices}
    if ids is not None:
        out["ids"] = [ids[i] for i in indices.tolist()]
    return out


def _tail(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out: dict[str, Any] = {"warnings": result.warnings, "recorded": ctx.recorded}
    if ctx.audit is not None:
        out["audit"] = audit_block(ctx.audit, ctx.ids)
    return out


def _with_ids(
    columns: dict[str, Any], ids: list[Any] | None, audit: npt.NDArray[np.bool_] | None = None
) -> dict[str, Any]:
    if ids is not None:
        columns["ids"] = ids
    if audit is not None:
        columns["audit"] = audit
    return columns


def _loss(result: ScoreResult) -> dict[str, Any] | None:
    if result.loss_sum is None:
        return None
    return {"mean": result.loss_mean, "sum": result.loss_sum, "n_scored": result.n_scored}


def _confidence(result: ScoreResult) -> dict[str, Any]:
    return {"method": result.confidence_method, "mean": result.confidence_mean}


def _flagged(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    indices = result.flagged_indices
    out: dict[str, Any] = {
        "count": int(indices.size),
        "rate": indices.size / result.n_items,
        "indices": indices,
    }
    if ctx.ids is not None:
        out["ids"] = [ctx.ids[i] for i in indices.tolist()]
    return out


def _predicted(result: ScoreResult) -> Any:
    """Indices as a numpy array (orjson writes it directly); names and label sets as lists."""
    predicted = result.predicted
    if isinstance(predicted, np.ndarray) and predicted.dtype == object:
        return predicted.tolist()
    return predicted


def score_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {
        **_head(result),
        "loss": _loss(result),
        "accuracy": result.accuracy,
        "confidence": _confidence(result),
        "flagged": _flagged(ctx, result),
    }
    if ctx.request.per_item:
        out["items"] = _with_ids(
            {
                "loss": result.item_loss,
                "confidence": result.confidence,
                "predicted": _predicted(result),
                "flagged": result.flagged,
                "reasons": result.reasons,
            },
            ctx.ids,
            ctx.audit,
        )
    return {**out, **_tail(ctx, result)}


def loss_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {**_head(result), "loss": _loss(result)}
    if ctx.request.per_item:
        out["items"] = _with_ids({"loss": result.item_loss}, ctx.ids, ctx.audit)
    return {**out, **_tail(ctx, result)}


def confidence_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {**_head(result), "confidence": _confidence(result), "accuracy": result.accuracy}
    if ctx.request.per_item:
        out["items"] = _with_ids(
            {"confidence": result.confidence, "predicted": _predicted(result)},
            ctx.ids,
            ctx.audit,
        )
    return {**out, **_tail(ctx, result)}


def flag_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    out = {**_head(result), "flagged": _flagged(ctx, result)}
    if ctx.request.per_item:
        out["items"] = flagged_rows(result, ctx.ids)
    return {**out, **_tail(ctx, result)}


def calibration_figures(
    parsed: Parsed[CalibrationRequest], batch: Batch, result: ScoreResult
) -> dict[str, Any]:
    """The calibration figures of the batch the route has just scored (no second scoring)."""
    req = parsed.request
    c = calibrate(
        batch,
        result,
        n_bins=req.n_bins,
        strategy=req.strategy,
        fit_temperature=req.fit_temperature,
    )
    out: dict[str, Any] = {
        "n_scored": c.n_scored,
        "ece": c.ece,
        "mce": c.mce,
        "brier": c.brier,
        "nll": c.nll,
        "bins": c.bins,
        "classwise_ece": c.classwise_ece,
        "rms_calibration_error": c.rms_calibration_error,
        "reliability_curve": c.reliability_curve,
    }
    if req.fit_temperature:
        out |= {"temperature": c.temperature, "nll_after": c.nll_after, "ece_after": c.ece_after}
    return out


def calibration_view(ctx: BatchContext, result: ScoreResult) -> dict[str, Any]:
    return {
        "task": result.task,
        "n_items": result.n_items,
        "n_classes": result.n_classes,
        **ctx.extra,
        **_tail(ctx, result),
    }


def _column(values: npt.NDArray[Any]) -> list[Any]:
    return list(values.tolist())


def sequences_view(
    req: SequencesRequest,
    r: SequenceResult,
    recorded: bool | None,
    audit: npt.NDArray[np.bool_] | None = None,
) -> dict[str, Any]:
    """One object per sequence in request order, and the batch's token-weighted figures
    (with ``audit_rate``: ``audit`` per sequence and the ``audit`` block)."""
    columns = zip(
        _column(r.n_tokens),
        _column(r.mean_logprob),
        _column(r.nll),
        _column(r.perplexity),
        _column(r.confidence),
        _column(r.min_token_logprob),
        _column(r.min_token_index),
        _column(r.flagged),
        r.reasons,
        strict=True,
    )
    rows = []
    for seq, (n, mean, nll, ppl, conf, low, low_at, flagged, reasons) in zip(
        req.sequences, columns, strict=True
    ):
        row: dict[str, Any] = {} if seq.id is None else {"id": seq.id}
        row |= {
            "n_tokens": n,
            "mean_logprob": mean,
            "nll": nll,
            "perplexity": ppl,
            "confidence": conf,
            "min_token_logprob": low,
            "min_token_index": low_at,
            "flagged": flagged,
            "reasons": reasons,
        }
        rows.append(row)
    if audit is not None:
        for row, marked in zip(rows, audit.tolist(), strict=True):
            row["audit"] = marked
    out: dict[str, Any] = {
        "sequences": rows,
        "nll": r.batch_nll,
        "perplexity": r.batch_perplexity,
        "warnings": r.warnings,
        "recorded": recorded,
    }
    if audit is not None:
        out["audit"] = audit_block(audit, [seq.id for seq in req.sequences])
    return out
