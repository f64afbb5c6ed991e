"""Recording scored batches under a ``stream``: the store write and the per-stream metrics.

Scoring never fails because of monitoring: :func:`record_batch` and :func:`record_sequences`
catch every store error, log it, count it in ``xent_store_errors_total`` and return False (the
response then says ``"recorded": false``). The flagged-row builders turn a result's flagged
items into the rows the store keeps (:class:`service.store.FlaggedRow`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from service.metrics import StreamMetrics
from service.store import FlaggedRow, Store
from xentcore.flags import flagged_rows as core_flagged_rows
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.summary import summarize, summarize_sequences

__all__ = ["flagged_rows", "record_batch", "record_sequences", "sequence_rows"]

log = logging.getLogger("xent.monitoring")


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (ids may come as numpy integers); else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _finite(value: float | None) -> float | None:
    """None for NaN (no confidence, or no loss: an unlabelled or ignored item)."""
    return None if value is None or math.isnan(value) else float(value)


def flagged_rows(result: ScoreResult, ids: Sequence[Any] | None) -> list[FlaggedRow]:
    """The flagged items of a result as the store keeps them (xentcore's flagged rows, with
    the prediction and the true class)."""
    return [
        FlaggedRow(
            index=row["index"],
            item_id=_plain(row["id"]) if "id" in row else None,
            confidence=_finite(row["confidence"]),
            loss=_finite(row["loss"]),
            predicted=row["predicted"],
            label=row["label"],
            reasons=row["reasons"],
        )
        for row in core_flagged_rows(result, ids, truth=True)
    ]


def sequence_rows(result: SequenceResult, ids: Sequence[Any] | None) -> list[FlaggedRow]:
    """The flagged sequences of a result, as the store keeps them (loss = the NLL)."""
    rows = []
    for i in result.flagged_indices.tolist():  # flagged sequences only
        rows.append(
            FlaggedRow(
                index=i,
                item_id=None if ids is None else _plain(ids[i]),
                confidence=float(result.confidence[i]),
                loss=float(result.nll[i]),
                predicted=None,
                label=None,
                reasons=result.reasons[i],
            )
        )
    return rows


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
    return _record(
        store,
        stream=stream,
        task="sequences",
        result=result,
        write=lambda s: s.record(
            stream=stream,
            task="sequences",
            summary=summarize_sequences(result),
            flagged=sequence_rows(result, ids),
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
    return _record(
        store,
        stream=stream,
        task=task,
        result=result,
        write=lambda s: s.record(
            stream=stream,
            task=task,
            summary=summarize(result),
            flagged=flagged_rows(result, ids),
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
    write: Callable[[Store], bool],
    metrics: StreamMetrics | None,
) -> bool:
    """Write through ``write(store)``; count errors and (unless a duplicate) the metrics."""
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
