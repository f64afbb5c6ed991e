"""Mergeable batch summaries: what the monitoring store keeps, and the figures it recomputes.

A :class:`BatchSummary` holds only sums and counts, so summaries of any set of batches add up
exactly (``a + b``) and every windowed figure is a ratio of sums:

    loss_mean = sum loss_sum / sum weight_sum          (the weighted mean of section 2)
    confidence_mean = sum confidence_sum / sum confidence_count
    flag_rate = sum flagged / sum n_items,   accuracy = sum correct / sum n_classified
    ece = sum_b |correct_sum_b - confidence_sum_b| / sum_b count_b   (15 uniform bins)

Sequence batches (LLM outputs) are summarised too: their items are sequences, their loss the
token-weighted NLL (loss_sum = -sum of token log-probs, weight_sum = tokens), and they have no
true class (n_classified = 0, no accuracy, no calibration bins).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from xentcore.calibration import BinStats, bin_stats
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult

__all__ = [
    "N_BINS",
    "BatchSummary",
    "figures",
    "reliability",
    "summarize",
    "summarize_sequences",
]

#: Calibration bins kept per batch (uniform, as /v1/calibration's default).
N_BINS = 15


def _zeros() -> list[float]:
    return [0.0] * N_BINS


@dataclass
class BatchSummary:
    """Sums and counts of one batch (or of several, merged with ``+``)."""

    n_items: int = 0
    n_scored: int = 0
    loss_sum: float = 0.0
    weight_sum: float = 0.0
    confidence_sum: float = 0.0
    confidence_count: int = 0
    flagged: int = 0
    low_confidence: int = 0
    high_loss: int = 0
    misclassified: int = 0
    low_token_probability: int = 0
    n_classified: int = 0
    correct: int = 0
    bin_count: list[float] = field(default_factory=_zeros)
    bin_confidence_sum: list[float] = field(default_factory=_zeros)
    bin_correct_sum: list[float] = field(default_factory=_zeros)

    def __add__(self, other: BatchSummary) -> BatchSummary:
        out = BatchSummary()
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            setattr(
                out,
                f.name,
                [x + y for x, y in zip(a, b, strict=True)] if isinstance(a, list) else a + b,
            )
        return out


def summarize(result: ScoreResult) -> BatchSummary:
    """The summary of one scored batch (bins over scored items' top-label confidence)."""
    conf = result.confidence[~np.isnan(result.confidence)]
    counts = result.masks.counts()
    s = BatchSummary(
        n_items=result.n_items,
        confidence_sum=float(conf.sum()),
        confidence_count=int(conf.size),
        flagged=int(np.count_nonzero(result.flagged)),
        low_confidence=counts["low_confidence"],
        high_loss=counts["high_loss"],
        misclassified=counts["misclassified"],
    )
    if result.n_scored is None:
        return s
    s.n_scored = result.n_scored
    s.loss_sum = float(result.loss_sum or 0.0)
    s.weight_sum = float(result.weight_sum or 0.0)
    s.correct = int(result.n_correct or 0)
    s.n_classified = result.n_scored
    if result.top_confidence is not None and result.correct is not None:
        keep = slice(None) if result.scored is None else result.scored
        stats = bin_stats(result.top_confidence[keep], result.correct[keep], n_bins=N_BINS)
        s.bin_count = stats.count.astype(float).tolist()
        s.bin_confidence_sum = stats.confidence_sum.tolist()
        s.bin_correct_sum = stats.correct_sum.tolist()
    return s


def summarize_sequences(result: SequenceResult) -> BatchSummary:
    """The summary of one scored batch of sequences (loss: token-weighted NLL)."""
    n = int(result.n_tokens.size)
    counts = result.counts()
    return BatchSummary(
        n_items=n,
        n_scored=n,
        loss_sum=float(np.dot(result.nll, result.n_tokens)),
        weight_sum=float(result.n_tokens.sum()),
        confidence_sum=float(result.confidence.sum()),
        confidence_count=n,
        flagged=int(result.flagged_indices.size),
        low_confidence=counts["low_confidence"],
        low_token_probability=counts["low_token_probability"],
    )


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def figures(s: BatchSummary) -> dict[str, float | int | None]:
    """The windowed figures of the contract's section 5 from a (merged) summary."""
    total_binned = float(sum(s.bin_count))
    gaps = np.abs(np.subtract(s.bin_correct_sum, s.bin_confidence_sum))
    return {
        "n_items": s.n_items,
        "n_scored": s.n_scored,
        "loss_mean": _ratio(s.loss_sum, s.weight_sum) if s.n_scored else None,
        "confidence_mean": _ratio(s.confidence_sum, s.confidence_count),
        "flag_rate": _ratio(s.flagged, s.n_items),
        "accuracy": _ratio(s.correct, s.n_classified),
        "ece": _ratio(float(gaps.sum()), total_binned),
        "flagged": s.flagged,
        "low_confidence": s.low_confidence,
        "high_loss": s.high_loss,
        "misclassified": s.misclassified,
        "low_token_probability": s.low_token_probability,
    }


def reliability(s: BatchSummary) -> list[dict[str, float | int | None]]:
    """The merged reliability bins: [{lower, upper, count, mean_confidence, accuracy}]."""
    count = np.asarray(s.bin_count)
    stats = BinStats(
        edges=np.linspace(0.0, 1.0, N_BINS + 1),
        count=count.astype(np.int64),
        weight=count.astype(np.float64),
        confidence_sum=np.asarray(s.bin_confidence_sum, dtype=np.float64),
        correct_sum=np.asarray(s.bin_correct_sum, dtype=np.float64),
    )
    return stats.rows()
