"""Recording scored batches under a ``stream``: the store write and the per-stream metrics.

Scoring never fails because of monitoring: :func:`record_batch` and :func:`record_sequences`
catch every store error, log it, count it in ``xent_store_errors_total`` and return False (the
response then says ``"recorded": false``). The flagged-item builders turn a result's flagged
items into the columns the store keeps (:class:`service.store.payload.FlaggedItems`).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from service.metrics import StreamMetrics
from service.store import Store
from service.store.kept import Kept
from service.store.payload import ClassColumn, FlaggedItems, class_dtype, reason_bits
from xentcore.flags import truth_columns
from xentcore.keep import keep_batch, keep_sequences
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.summary import BatchSummary, summarize, summarize_sequences
from xentcore.types import REASONS, SEQUENCE_REASONS
from xentcore.validate import Batch

__all__ = [
    "flagged_items",
    "kept_batch",
    "kept_sequences",
    "record_batch",
    "record_sequences",
    "sequence_items",
]

#: The warning of a batch not recorded because its sums are not finite.
NOT_FINITE = (
    "not recorded: the batch's loss or weight sum overflows float64 (weights too large); "
    "the store keeps only finite sums"
)

log = logging.getLogger("xent.monitoring")


def _picked(values: Sequence[Any], rows: list[int]) -> list[Any]:
    """``values[i]`` for each i in ``rows`` (ids as the request sent them; numpy scalars are
    written by orjson as their values), gathered in C by ``operator.itemgetter``."""
    if isinstance(values, np.ndarray):
        return list(values[rows]) if rows else []
    if len(rows) < 2:
        return [values[i] for i in rows]
    return list(operator.itemgetter(*rows)(values))


def _class_columns(
    result: ScoreResult, indices: npt.NDArray[np.intp]
) -> tuple[ClassColumn, ClassColumn]:
    """``predicted`` and ``label`` of the items at ``indices`` as the store keeps them: class
    indices (-1 = none: no labels, or an item not scored) for single-label tasks, the
    response's lists of classes for multilabel rows."""
    if result.task == "multilabel":
        predicted, label = truth_columns(result, indices)
        return predicted, None if result.true_class is None else label
    dtype = class_dtype(result.n_classes)
    predicted_column = result.predicted_index[indices].astype(dtype)
    if result.true_class is None:
        return predicted_column, None
    true = result.true_class[indices]
    known = true >= 0
    if result.scored is not None:
        known &= result.scored[indices]
    return predicted_column, np.where(known, true, -1).astype(dtype)


def flagged_items(result: ScoreResult, ids: Sequence[Any] | None) -> FlaggedItems | None:
    """The flagged items of a result, column by column, as the store keeps them (the
    prediction and the true class as class indices shown through the batch's class names);
    None when none is flagged."""
    indices = result.flagged_indices
    if indices.size == 0:
        return None
    predicted, label = _class_columns(result, indices)
    names = result.class_names
    kept, whole = None, False
    if isinstance(ids, list) and 2 * indices.size >= len(ids):
        kept, whole = ids, True  # most items flagged: the request's list, whole (no gather)
    elif ids is not None:
        kept = _picked(ids, indices.tolist())
    return FlaggedItems(
        index=indices.astype(np.int64),
        confidence=result.confidence[indices],
        loss=None if result.item_loss is None else result.item_loss[indices],
        reason_names=REASONS,
        reasons=reason_bits([getattr(result.masks, name)[indices] for name in REASONS]),
        ids=kept,
        predicted=predicted,
        label=label,
        class_names=None if names is None else tuple(names),
        batch_items=result.n_items,
        ids_of_batch=whole,
    )


def sequence_items(result: SequenceResult, ids: Sequence[Any] | None) -> FlaggedItems | None:
    """The flagged sequences of a result, as the store keeps them (loss = the NLL)."""
    indices = result.flagged_indices
    if indices.size == 0:
        return None
    return FlaggedItems(
        index=indices.astype(np.int64),
        confidence=result.confidence[indices],
        loss=result.nll[indices],
        reason_names=SEQUENCE_REASONS,
        reasons=reason_bits([getattr(result, name)[indices] for name in SEQUENCE_REASONS]),
        ids=None if ids is None else _picked(ids, indices.tolist()),
        predicted=None,
        label=None,
    )


def kept_batch(
    batch: Batch,
    result: ScoreResult,
    ids: Sequence[Any],
    *,
    audit: npt.NDArray[np.bool_] | None,
    audit_rate: float | None,
    max_classes: int,
) -> Kept:
    """What the store keeps of a batch recorded with ids (API.md section 9)."""
    drawn = np.zeros(result.n_items, dtype=bool) if audit is None else audit
    return Kept(
        rows=keep_batch(batch, result, drawn, max_classes),
        ids=ids,
        class_names=result.class_names,
        audit_rate=audit_rate,
        clip_eps=batch.options.clip_eps,
        confidence=result.confidence_method,
    )


def kept_sequences(
    result: SequenceResult,
    ids: Sequence[Any],
    *,
    audit: npt.NDArray[np.bool_] | None,
    audit_rate: float | None,
) -> Kept:
    """What the store keeps of a batch of sequences recorded with ids."""
    drawn = np.zeros(len(ids), dtype=bool) if audit is None else audit
    return Kept(
        rows=keep_sequences(result, drawn), ids=ids, audit_rate=audit_rate, confidence="sequence"
    )


def record_sequences(
    store: Store | None,
    *,
    stream: str,
    result: SequenceResult,
    ids: Sequence[Any] | None = None,
    idempotency_key: str | None = None,
    metrics: StreamMetrics | None = None,
    kept: Kept | None = None,
) -> bool:
    """Record a scored batch of sequences under ``stream`` (task ``sequences``); never raises."""
    summary = summarize_sequences(result)
    return _record(
        store,
        stream=stream,
        task="sequences",
        result=result,
        summary=summary,
        write=lambda s: s.record(
            stream=stream,
            task="sequences",
            summary=summary,
            flagged=sequence_items(result, ids),
            idempotency_key=idempotency_key,
            kept=kept,
        ),
        metrics=metrics,
    )


def record_batch(
    store: Store | None,
    *,
    stream: str,
    task: str,
    result: ScoreResult,
    ids: Sequence[Any] | None = None,
    idempotency_key: str | None = None,
    metrics: StreamMetrics | None = None,
    kept: Kept | None = None,
) -> bool:
    """Record a scored batch under ``stream``; True if the store has it, never raises.

    A batch whose ``idempotency_key`` the stream already has is not written again and not
    counted again in the metrics, and still returns True (the store has it).
    """
    summary = summarize(result)
    return _record(
        store,
        stream=stream,
        task=task,
        result=result,
        summary=summary,
        write=lambda s: s.record(
            stream=stream,
            task=task,
            summary=summary,
            flagged=flagged_items(result, ids),
            idempotency_key=idempotency_key,
            kept=kept,
        ),
        metrics=metrics,
    )


def _record(
    store: Store | None,
    *,
    stream: str,
    task: str,
    result: ScoreResult | SequenceResult,
    summary: BatchSummary,
    write: Callable[[Store], bool],
    metrics: StreamMetrics | None,
) -> bool:
    """Write through ``write(store)``; count errors and (unless a duplicate) the metrics.

    A batch whose sums are not finite (its weighted loss overflows float64: sample weights
    near 1e308) is not recorded: one such batch would make every window holding it show
    ``loss_mean`` null for good. The answer says ``"recorded": false`` and carries a warning.
    """
    if not summary.is_finite():
        log.warning("batch for stream %r not recorded: its sums overflow float64", stream)
        result.warnings.append(NOT_FINITE)
        return False
    recorded, fresh = False, True
    if store is None:
        log.error("batch for stream %r not recorded: no store", stream)
    else:
        try:
            fresh = write(store)
            recorded = True
        except Exception:
            log.exception("batch for stream %r not recorded", stream)
    if metrics is not None:
        if not recorded:
            metrics.store_errors.inc()
        if fresh:  # a retried batch (same Idempotency-Key) counts once here as in the store
            metrics.observe(stream, task, result)
    return recorded
