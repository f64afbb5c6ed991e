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

from service.metrics import StreamMetrics
from service.store import Store
from service.store.payload import FlaggedItems, reason_bits
from xentcore.flags import truth_columns
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.summary import BatchSummary, summarize, summarize_sequences
from xentcore.types import REASONS

__all__ = ["flagged_items", "record_batch", "record_sequences", "sequence_items"]

#: The warning of a batch not recorded because its sums are not finite.
NOT_FINITE = (
    "not recorded: the batch's loss or weight sum overflows float64 (weights too large); "
    "the store keeps only finite sums"
)
#: The reasons a sequence is flagged for, in the order of its bit masks.
SEQUENCE_REASONS = ("low_confidence", "low_token_probability")

log = logging.getLogger("xent.monitoring")


def _picked(values: Sequence[Any], rows: list[int]) -> list[Any]:
    """``values[i]`` for each i in ``rows`` (ids as the request sent them; numpy scalars are
    written by orjson as their values), gathered in C by ``operator.itemgetter``."""
    if isinstance(values, np.ndarray):
        return list(values[rows]) if rows else []
    if len(rows) < 2:
        return [values[i] for i in rows]
    return list(operator.itemgetter(*rows)(values))


def flagged_items(result: ScoreResult, ids: Sequence[Any] | None) -> FlaggedItems | None:
    """The flagged items of a result, column by column, as the store keeps them (with the
    prediction and the true class as the response shows them); None when none is flagged."""
    indices = result.flagged_indices
    if indices.size == 0:
        return None
    predicted, label = truth_columns(result, indices)
    rows = indices.tolist()
    return FlaggedItems(
        index=indices.astype(np.int64),
        confidence=result.confidence[indices],
        loss=None if result.item_loss is None else result.item_loss[indices],
        reason_names=REASONS,
        reasons=reason_bits([getattr(result.masks, name)[indices] for name in REASONS]),
        ids=None if ids is None else _picked(ids, rows),
        predicted=predicted,
        label=None if result.true_class is None else label,
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


def record_sequences(
    store: Store | None,
    *,
    stream: str,
    result: SequenceResult,
    ids: Sequence[Any] | None = None,
    idempotency_key: str | None = None,
    metrics: StreamMetrics | None = None,
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
