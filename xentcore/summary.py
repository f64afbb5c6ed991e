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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.calibration import BinStats, bin_stats
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult

__all__ = [
    "BIN_FIELDS",
    "COUNT_FIELDS",
    "N_BINS",
    "SCALAR_FIELDS",
    "SUM_FIELDS",
    "BatchSummary",
    "figures",
    "figures_rows",
    "ratios",
    "reliability",
    "summarize",
    "summarize_sequences",
    "summary_from_columns",
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
    risk_policy: int = 0
    n_classified: int = 0
    correct: int = 0
    bin_count: list[float] = field(default_factory=_zeros)
    bin_confidence_sum: list[float] = field(default_factory=_zeros)
    bin_correct_sum: list[float] = field(default_factory=_zeros)

    def is_finite(self) -> bool:
        """True when every sum is a finite float (no overflow to inf, no NaN)."""
        floats = (self.loss_sum, self.weight_sum, self.confidence_sum)
        bins = (*self.bin_confidence_sum, *self.bin_correct_sum)
        return all(math.isfinite(v) for v in (*floats, *bins))

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
        risk_policy=counts["risk_policy"],
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
        risk_policy=counts["risk_policy"],
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
        "risk_policy": s.risk_policy,
    }


#: The integer and float scalar fields of a BatchSummary, in declaration order.
SCALAR_FIELDS = (
    "n_items",
    "n_scored",
    "loss_sum",
    "weight_sum",
    "confidence_sum",
    "confidence_count",
    "flagged",
    "low_confidence",
    "high_loss",
    "misclassified",
    "low_token_probability",
    "risk_policy",
    "n_classified",
    "correct",
)
#: The float sums among them, and the counts (the rest, in the same order).
SUM_FIELDS = ("loss_sum", "weight_sum", "confidence_sum")
COUNT_FIELDS = tuple(name for name in SCALAR_FIELDS if name not in SUM_FIELDS)
#: The (n, 15) bin fields of a BatchSummary.
BIN_FIELDS = ("bin_count", "bin_confidence_sum", "bin_correct_sum")
#: The keys of :func:`figures`, in order.
_FIGURES = (
    "n_items",
    "n_scored",
    "loss_mean",
    "confidence_mean",
    "flag_rate",
    "accuracy",
    "ece",
    "flagged",
    "low_confidence",
    "high_loss",
    "misclassified",
    "low_token_probability",
    "risk_policy",
)
_COUNTS = ("n_items", "n_scored", "flagged", "low_confidence", "high_loss", "misclassified",
           "low_token_probability", "risk_policy")  # fmt: skip


def ratios(num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]) -> list[float | None]:
    """num / den where den > 0, else None, as Python values."""
    ok = den > 0
    out = np.divide(num, den, out=np.zeros_like(num), where=ok).tolist()
    return [v if good else None for v, good in zip(out, ok.tolist(), strict=True)]


def figures_rows(
    columns: Mapping[str, npt.NDArray[np.float64]],
) -> list[dict[str, float | int | None]]:
    """:func:`figures` of many summaries at once, equal to it value for value.

    ``columns`` maps each of :data:`SCALAR_FIELDS` to an array over the summaries and each of
    :data:`BIN_FIELDS` to an (n, 15) array. Vectorized: a 720-bucket window costs a few numpy
    passes, not 720 Python merges.
    """
    c = columns
    gaps = np.abs(c["bin_correct_sum"] - c["bin_confidence_sum"]).sum(axis=1)
    binned = c["bin_count"].sum(axis=1)
    loss = ratios(c["loss_sum"], c["weight_sum"])
    scored = (c["n_scored"] > 0).tolist()
    values = {
        "loss_mean": [v if ok else None for v, ok in zip(loss, scored, strict=True)],
        "confidence_mean": ratios(c["confidence_sum"], c["confidence_count"]),
        "flag_rate": ratios(c["flagged"], c["n_items"]),
        "accuracy": ratios(c["correct"], c["n_classified"]),
        "ece": ratios(gaps, binned),
    }
    counts = {name: c[name].astype(np.int64).tolist() for name in _COUNTS}
    merged = {**counts, **values}
    order = _FIGURES
    return [
        dict(zip(order, row, strict=True)) for row in zip(*(merged[k] for k in order), strict=True)
    ]


def summary_from_columns(columns: Mapping[str, npt.NDArray[np.float64]], i: int) -> BatchSummary:
    """The BatchSummary at row ``i`` of columns shaped as :func:`figures_rows` takes them."""
    scalars: dict[str, Any] = {
        name: (float(columns[name][i]) if name.endswith("_sum") else int(columns[name][i]))
        for name in SCALAR_FIELDS
    }
    bins: dict[str, Any] = {
        name: columns[name][i].astype(np.float64).tolist() for name in BIN_FIELDS
    }
    return BatchSummary(**scalars, **bins)


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
