"""What a stream keeps of each item (API.md section 9), built from a scored batch.

A kept item keeps its prediction in a form that scores a later label exactly
(:func:`xentcore.feedback.late_outcomes`):

- binary: p (float64);
- multiclass: the K log-probabilities as float32 (the loss is -log p_y: float32 keeps it to
  about 6e-8 relative) when K <= ``max_classes``; above it no row, and a late label gives
  correctness (from the kept predicted class) but no loss;
- multilabel: the K probabilities as float32 under the same cap;
- sequences: confidence, NLL and token count.

Labels that came with the batch are scored on the kept form at full precision: the plain
cross-entropy of the targets as sent (soft ones included; no smoothing, class or sample
weights, as a late label carries none), so every item of the calibration set counts alike; the
true class (section 1) is the kept label and decides correctness; an ignored item keeps no
label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import chunk_rows
from xentcore.feedback import binary_loss
from xentcore.flags import reason_bits
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.types import F64, I64, REASONS, SEQUENCE_REASONS, Bool
from xentcore.validate import Batch

__all__ = ["KeptRows", "keep_batch", "keep_sequences"]


@dataclass(frozen=True)
class KeptRows:
    """What a stream keeps of each item of one batch (arrays of length N).

    ``predicted`` is the class index (-1 for multilabel and sequences; the set is
    ``predicted_set``); ``top_prob`` the top-label probability the calibration bins use
    (binary max(p, 1 - p), multiclass max p, multilabel the least certain entry's
    max(p, 1 - p), sequences the confidence); ``label`` the class (or 0/1, or the verdict)
    when the batch came with labels, else -1 (multilabel: ``label_set``); ``loss`` and
    ``correct`` that label's outcome (NaN / False without one); ``row`` the kept prediction
    (see the module docstring) or None.
    """

    task: str
    n_classes: int
    predicted: I64
    confidence: F64
    top_prob: F64
    flagged: Bool
    reasons: npt.NDArray[np.uint8]
    audit: Bool
    labeled: Bool
    label: I64
    loss: F64
    correct: Bool
    predicted_set: Bool | None = None
    label_set: Bool | None = None
    row: npt.NDArray[Any] | None = None
    nll: F64 | None = None
    n_tokens: I64 | None = None

    def __len__(self) -> int:
        return int(self.predicted.shape[0])


def _probabilities(x: npt.NDArray[Any], input_type: str) -> F64:
    """Binary / multilabel p from the batch's values (float64; logits through a stable
    sigmoid)."""
    v = x.astype(np.float64)
    if input_type == "probabilities":
        return v
    if input_type == "log_probabilities":
        return np.exp(v)
    out: F64 = np.exp(-np.logaddexp(0.0, -v))  # sigmoid without overflow
    return out


def _log_probabilities(x: npt.NDArray[Any], input_type: str, eps: float) -> F64:
    """Multiclass log p (N, K) in float64 from the batch's values: logits through log-softmax,
    probabilities through their clipped log (section 1), log-probabilities clipped alike."""
    v = x.astype(np.float64)
    if input_type == "logits":
        m = v.max(axis=1, keepdims=True)
        shifted = v - m
        out: F64 = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return out
    if input_type == "probabilities":
        return np.log(np.clip(v, eps, 1.0 - eps))
    return np.clip(v, np.log(eps), np.log1p(-eps))


@dataclass(frozen=True)
class _Kind:
    """The task-dependent part of a batch's kept rows."""

    predicted: I64
    top_prob: F64
    label: I64
    loss: F64
    row: npt.NDArray[Any] | None = None
    predicted_set: Bool | None = None
    label_set: Bool | None = None


def _binary(batch: Batch, result: ScoreResult, labeled: Bool) -> _Kind:
    p = _probabilities(batch.x, batch.input_type)
    n = batch.n_items
    label = np.full(n, -1, dtype=np.int64)
    loss = np.full(n, np.nan)
    if result.true_class is not None:
        label = np.where(labeled, result.true_class, -1).astype(np.int64)
        target = batch.labels.target if batch.labels is not None else None
        y = np.clip(label, 0, 1).astype(np.float64) if target is None else target  # soft stays
        loss = np.where(labeled, binary_loss(p, y, batch.options.clip_eps), np.nan)
    predicted = result.predicted_index.astype(np.int64)
    return _Kind(predicted, np.maximum(p, 1.0 - p), label, loss, row=p)


def _multilabel(batch: Batch, result: ScoreResult, labeled: Bool, max_classes: int) -> _Kind:
    p = _probabilities(batch.x, batch.input_type)
    n = batch.n_items
    loss = np.full(n, np.nan)
    label_set = None
    if result.true_class is not None:
        label_set = result.true_class.astype(bool)
        target = batch.labels.target if batch.labels is not None else None
        truth = label_set.astype(np.float64) if target is None else target
        item_loss = binary_loss(p, truth, batch.options.clip_eps).mean(axis=1)
        loss = np.where(labeled, item_loss, np.nan)
    return _Kind(
        predicted=np.full(n, -1, dtype=np.int64),
        top_prob=np.maximum(p, 1.0 - p).min(axis=1),
        label=np.full(n, -1, dtype=np.int64),
        loss=loss,
        row=p.astype(np.float32) if batch.n_classes <= max_classes else None,
        predicted_set=result.predicted_index.astype(bool),
        label_set=label_set,
    )


def _multiclass(batch: Batch, result: ScoreResult, labeled: Bool, max_classes: int) -> _Kind:
    """Log-probabilities computed in chunks of rows, so memory stays bounded; the batch's
    labels scored on them (sparse: -log p_y; distributions: -sum_k q_k log p_k)."""
    n, k = batch.n_items, batch.n_classes
    label = np.full(n, -1, dtype=np.int64)
    if result.true_class is not None:
        label = np.where(labeled, result.true_class, -1).astype(np.int64)
    loss = np.full(n, np.nan)
    rows32 = np.empty((n, k), dtype=np.float32) if k <= max_classes else None
    dense = batch.labels.target if batch.labels is not None else None
    safe = np.clip(label, 0, k - 1)
    for sl in chunk_rows(n, k):
        log_p = _log_probabilities(batch.x[sl], batch.input_type, batch.options.clip_eps)
        if rows32 is not None:
            rows32[sl] = log_p
        if dense is not None:
            loss[sl] = np.where(labeled[sl], -(dense[sl] * log_p).sum(axis=1), np.nan)
        elif result.true_class is not None:
            picked = -log_p[np.arange(log_p.shape[0]), safe[sl]]
            loss[sl] = np.where(labeled[sl], picked, np.nan)
    top = np.full(n, np.nan) if result.top_confidence is None else result.top_confidence
    predicted = result.predicted_index.astype(np.int64)
    return _Kind(predicted, np.asarray(top, dtype=np.float64), label, loss, row=rows32)


def keep_batch(batch: Batch, result: ScoreResult, audit: Bool, max_classes: int) -> KeptRows:
    """What a stream keeps of each item of a scored batch (see the module docstring)."""
    n = batch.n_items
    labeled = np.zeros(n, dtype=bool)
    if result.true_class is not None:
        labeled = np.ones(n, dtype=bool) if result.scored is None else result.scored.copy()
    entries = None if batch.labels is None else batch.labels.entries_scored
    if entries is not None:  # a kept label set cannot hold an unknown entry: kept unlabelled
        labeled &= entries.all(axis=1)
    if batch.task == "binary":
        kind = _binary(batch, result, labeled)
    elif batch.task == "multilabel":
        kind = _multilabel(batch, result, labeled, max_classes)
    else:
        kind = _multiclass(batch, result, labeled, max_classes)
    correct = np.zeros(n, dtype=bool) if result.correct is None else result.correct & labeled
    return KeptRows(
        task=batch.task,
        n_classes=batch.n_classes,
        predicted=kind.predicted,
        confidence=result.confidence,
        top_prob=kind.top_prob,
        flagged=result.flagged,
        reasons=reason_bits([getattr(result.masks, name) for name in REASONS]),
        audit=audit,
        labeled=labeled,
        label=kind.label,
        loss=kind.loss,
        correct=correct,
        predicted_set=kind.predicted_set,
        label_set=kind.label_set,
        row=kind.row,
    )


def keep_sequences(result: SequenceResult, audit: Bool) -> KeptRows:
    """What a stream keeps of each sequence: confidence, NLL and token count (no label until
    a verdict arrives)."""
    n = int(result.n_tokens.shape[0])
    reasons = reason_bits([getattr(result, name) for name in SEQUENCE_REASONS])
    return KeptRows(
        task="sequences",
        n_classes=0,
        predicted=np.full(n, -1, dtype=np.int64),
        confidence=result.confidence,
        top_prob=result.confidence,
        flagged=result.flagged,
        reasons=reasons,
        audit=audit,
        labeled=np.zeros(n, dtype=bool),
        label=np.full(n, -1, dtype=np.int64),
        loss=np.full(n, np.nan),
        correct=np.zeros(n, dtype=bool),
        nll=result.nll,
        n_tokens=result.n_tokens.astype(np.int64),
    )
