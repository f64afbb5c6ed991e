"""Recording scored batches under a ``stream``: the store write and the per-stream metrics.

Scoring never fails because of monitoring: :func:`record_batch` catches every store error, logs
it, counts it in ``xent_store_errors_total`` and returns False (the response then says
``"recorded": false``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Histogram

from service.store import FlaggedRow, Store
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.summary import summarize, summarize_sequences
from xentcore.types import REASONS

__all__ = [
    "OTHER_STREAM",
    "StreamMetrics",
    "flagged_rows",
    "record_batch",
    "record_sequences",
    "sequence_rows",
]

log = logging.getLogger("xent.monitoring")

#: The label that streams beyond ``XENT_MAX_STREAMS`` are folded into in /metrics.
OTHER_STREAM = "other"
_UNIT_BUCKETS = tuple(i / 10 for i in range(11))
_LOSS_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


class StreamMetrics:
    """Per-stream Prometheus series, with the number of distinct stream labels capped."""

    def __init__(self, registry: CollectorRegistry | None = None, max_streams: int = 1000) -> None:
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.max_streams = max_streams
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.items = Counter(
            "xent_stream_items_scored_total",
            "Items scored under a stream",
            ["stream", "task"],
            **kw,
        )
        self.flagged = Counter(
            "xent_stream_items_flagged_total",
            "Items flagged under a stream, by reason",
            ["stream", "task", "reason"],
            **kw,
        )
        self.loss = Histogram(
            "xent_stream_item_loss",
            "Per-item loss of scored items",
            ["stream", "task"],
            buckets=_LOSS_BUCKETS,
            **kw,
        )
        self.confidence = Histogram(
            "xent_stream_item_confidence",
            "Per-item confidence",
            ["stream", "task"],
            buckets=_UNIT_BUCKETS,
            **kw,
        )
        self.store_errors = Counter(
            "xent_store_errors_total", "Batches that could not be recorded in the store", **kw
        )

    def label(self, stream: str) -> str:
        """The stream's label, or ``other`` once ``max_streams`` distinct labels exist."""
        with self._lock:
            if stream in self._seen:
                return stream
            if len(self._seen) < self.max_streams:
                self._seen.add(stream)
                return stream
        return OTHER_STREAM

    def observe(self, stream: str, task: str, result: ScoreResult | SequenceResult) -> None:
        """Count the batch's items and flags; observe its losses and confidences.

        For sequences the task label is ``sequences`` and the loss is each sequence's NLL.
        """
        name = self.label(stream)
        loss: npt.NDArray[np.float64] | None
        if isinstance(result, SequenceResult):
            n, loss = int(result.n_tokens.size), result.nll
            counts = {
                "low_confidence": int(np.count_nonzero(result.low_confidence)),
                "low_token_probability": int(np.count_nonzero(result.low_token_probability)),
            }
        else:
            n, loss, counts = result.n_items, result.item_loss, result.masks.counts()
        self.items.labels(name, task).inc(n)
        for reason, count in counts.items():
            if count:
                self.flagged.labels(name, task, reason).inc(count)
        _observe_all(self.confidence.labels(name, task), result.confidence)
        if loss is not None:
            _observe_all(self.loss.labels(name, task), loss)


def _observe_all(hist: Any, values: np.ndarray[Any, Any]) -> None:
    """Observe many values at once, exactly as ``observe`` would one by one.

    prometheus_client has no bulk observe and a call per item costs ~1 us (0.2 s for a 200k
    batch), so this adds per-bucket counts and the sum to the histogram's own value cells
    (``_buckets`` are per-bucket, non-cumulative counts; ``_upper_bounds`` ends with +Inf).
    tests/store/test_stream_metrics.py checks it against ``observe``.
    """
    values = values[~np.isnan(values)]
    if values.size == 0:
        return
    edges = np.asarray(hist._upper_bounds[:-1])
    idx = np.searchsorted(edges, values, side="left")
    counts = np.bincount(idx, minlength=edges.size + 1).tolist()
    for b, n in enumerate(counts):
        if n:
            hist._buckets[b].inc(n)
    hist._sum.inc(float(values.sum()))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def flagged_rows(result: ScoreResult, ids: Sequence[Any] | None) -> list[FlaggedRow]:
    """The flagged items of a result, as the store keeps them (label = the true class)."""
    idx = result.flagged_indices.tolist()
    if not idx:
        return []
    predicted = result.predicted
    names = result.class_names
    rows = []
    for i in idx:  # flagged items only
        label: Any = None
        if result.true_class is not None and (result.scored is None or result.scored[i]):
            truth = result.true_class[i]
            if result.task == "multilabel":
                label = [names[k] if names else k for k in np.flatnonzero(truth).tolist()]
            else:
                label = names[int(truth)] if names else int(truth)
        rows.append(
            FlaggedRow(
                index=i,
                item_id=None if ids is None else _plain(ids[i]),
                confidence=_finite(float(result.confidence[i])),
                loss=None if result.item_loss is None else _finite(float(result.item_loss[i])),
                predicted=_plain(predicted[i]),
                label=label,
                reasons=[r for r in REASONS if getattr(result.masks, r)[i]],
            )
        )
    return rows


def sequence_rows(result: SequenceResult, ids: Sequence[Any] | None) -> list[FlaggedRow]:
    """The flagged sequences of a result, as the store keeps them (loss = the NLL)."""
    rows = []
    for i in np.flatnonzero(result.flagged).tolist():  # flagged sequences only
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
