"""The mergeable result of scored rows (:class:`Partial`), and the figures of a whole file
(:class:`OfflineResult`).

A :class:`Partial` holds what the figures of ``/v1/score`` are made of, for any run of
consecutive rows: a :class:`xentcore.Summary` (the exact, mergeable sums and counts: loss and
weight sums, confidence sum, correct and flagged counts, in double-double), the flagged rows
(numbered from the partial's first row), the clip count and the other warnings, and with
``--calibration`` the sums of 15 uniform reliability bins and of the Brier score
(:class:`CalibrationSums`: weighted by the sample weights, as ``/v1/calibration`` weights
them). ``a + b`` is the partial of a's rows followed by b's: b's flagged rows are shifted by
a's row count, so pieces scored anywhere (another process, another machine) merge in row order
into the answer of one pass:

    loss.sum        = the Summary's loss_sum                 (double-double, rounded once)
    loss.mean       = loss.sum / its weight_sum              (None when nothing carries weight)
    accuracy        = correct / n_scored
    confidence.mean = confidence_sum / confidence_count
    calibration     = ECE, MCE, RMS, bins from the summed bins; brier = the summed weighted
                      Brier sums / their weight; nll = loss.mean
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.calibration import (
    BinStats,
    bin_stats,
    calibrate,
    calibration_error,
    rms_calibration_error,
)
from xentcore.errors import InputError
from xentcore.score import NO_WEIGHT_WARNING, ScoreResult, clip_warning
from xentcore.state import DoubleDouble, Summary
from xentcore.validate import Batch

__all__ = ["CALIBRATION_BINS", "MAX_JSON_INDICES", "CalibrationSums", "OfflineResult", "Partial"]

#: Flagged indices in :meth:`OfflineResult.as_json` by default (``xent score --max-flagged``;
#: all go to a file with ``--flagged-out``).
MAX_JSON_INDICES = 1000
#: Uniform reliability bins of ``--calibration`` (those the monitoring store keeps).
CALIBRATION_BINS = 15


Sums = tuple[DoubleDouble, ...]


def _pairs(values: npt.NDArray[np.float64]) -> Sums:
    return tuple(DoubleDouble(float(v), 0.0) for v in values.tolist())


def _added(a: Sums, b: Sums) -> Sums:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _rounded(sums: Sums) -> npt.NDArray[np.float64]:
    return np.array([float(d) for d in sums])


@dataclass
class CalibrationSums:
    """Per-bin sums of top-label confidence and correctness over scored items (weighted by the
    sample weights; counts unweighted), and the weighted Brier sum and its weight. Float sums
    are :class:`~xentcore.state.DoubleDouble`, so merges agree in any order and grouping, as
    the :class:`~xentcore.Summary` beside them."""

    count: npt.NDArray[np.int64]
    weight: Sums
    confidence_sum: Sums
    correct_sum: Sums
    brier_sum: DoubleDouble
    brier_weight: DoubleDouble

    @classmethod
    def of(cls, batch: Batch, result: ScoreResult) -> CalibrationSums:
        """The sums of one scored chunk. Raises :class:`InputError` located at
        ``("calibration",)`` when the chunk cannot be calibrated (no labels, multilabel, a
        decision threshold other than 0.5)."""
        try:
            brier = calibrate(batch, result, n_bins=CALIBRATION_BINS).brier
        except InputError as err:
            raise InputError(("calibration",), err.reason) from None
        assert result.top_confidence is not None and result.correct is not None
        keep = np.ones(result.n_items, dtype=bool) if result.scored is None else result.scored
        s = batch.options.sample_weights
        w = None if s is None else s[keep]
        stats = bin_stats(
            result.top_confidence[keep],
            result.correct[keep],
            n_bins=CALIBRATION_BINS,
            weights=w,
        )
        weight = float(np.count_nonzero(keep)) if w is None else float(w.sum())
        return cls(
            stats.count,
            _pairs(stats.weight),
            _pairs(stats.confidence_sum),
            _pairs(stats.correct_sum),
            DoubleDouble(brier * weight if brier is not None else 0.0, 0.0),
            DoubleDouble(weight, 0.0),
        )

    def __add__(self, other: CalibrationSums) -> CalibrationSums:
        return CalibrationSums(
            self.count + other.count,
            _added(self.weight, other.weight),
            _added(self.confidence_sum, other.confidence_sum),
            _added(self.correct_sum, other.correct_sum),
            self.brier_sum + other.brier_sum,
            self.brier_weight + other.brier_weight,
        )

    def figures(self, nll: float | None) -> dict[str, Any]:
        """``n_bins``, ``ece``, ``mce``, ``rms_calibration_error``, ``brier``, ``nll``,
        ``n_scored`` and ``bins`` as ``/v1/calibration`` reports them."""
        stats = BinStats(
            np.linspace(0.0, 1.0, CALIBRATION_BINS + 1),
            self.count,
            _rounded(self.weight),
            _rounded(self.confidence_sum),
            _rounded(self.correct_sum),
        )
        ece, mce = calibration_error(stats)
        weight = float(self.brier_weight)
        return {
            "n_bins": CALIBRATION_BINS,
            "ece": ece,
            "mce": mce,
            "rms_calibration_error": rms_calibration_error(stats),
            "brier": float(self.brier_sum) / weight if weight > 0 else None,
            "nll": nll,
            "n_scored": int(self.count.sum()),
            "bins": stats.rows(),
        }


@dataclass
class OfflineResult:
    """The merged figures of a file: the ``/v1/score`` answer without ``items`` (and, with
    ``--calibration``, the calibration figures). ``summary`` is the file's
    :class:`xentcore.Summary` (the exact state its figures come from), when it was scored in
    pieces."""

    task: str
    input_type: str
    n_items: int
    n_classes: int
    confidence_method: str
    loss_sum: float | None
    weight_sum: float | None
    n_scored: int | None
    n_correct: int | None
    confidence_sum: float
    confidence_count: int
    flagged_indices: npt.NDArray[np.intp]
    warnings: list[str]
    calibration: dict[str, Any] | None = None
    summary: Summary | None = None

    @property
    def loss_mean(self) -> float | None:
        """loss_sum / weight_sum (None without labels or weight)."""
        if self.loss_sum is None or not self.weight_sum:
            return None
        return self.loss_sum / self.weight_sum

    @property
    def accuracy(self) -> float | None:
        """n_correct / n_scored (None without labels or scored items)."""
        if self.n_correct is None or not self.n_scored:
            return None
        return self.n_correct / self.n_scored

    @property
    def confidence_mean(self) -> float | None:
        """confidence_sum / confidence_count: the plain mean of the confidences that exist
        (None if none do)."""
        return self.confidence_sum / self.confidence_count if self.confidence_count else None

    def as_json(self, max_indices: int | None = MAX_JSON_INDICES) -> dict[str, Any]:
        """The ``/v1/score`` response shape, without ``items`` and ``recorded`` (and with
        ``calibration`` when it was asked for).

        ``flagged.indices`` holds the first ``max_indices`` flagged rows (all with None), and
        ``flagged.indices_truncated`` says whether rows were left out; ``count`` and ``rate``
        (count / n_items, 0.0 for no items) always cover them all. (A file of millions of rows
        can flag millions: 24 MB of JSON.)
        """
        loss = None
        if self.loss_sum is not None:
            loss = {"mean": self.loss_mean, "sum": self.loss_sum, "n_scored": self.n_scored}
        count = int(self.flagged_indices.size)
        shown = self.flagged_indices if max_indices is None else self.flagged_indices[:max_indices]
        out: dict[str, Any] = {
            "task": self.task,
            "n_items": self.n_items,
            "n_classes": self.n_classes,
            "loss": loss,
            "accuracy": self.accuracy,
            "confidence": {"method": self.confidence_method, "mean": self.confidence_mean},
            "flagged": {
                "count": count,
                "rate": count / self.n_items if self.n_items else 0.0,
                "indices": shown.tolist(),
                "indices_truncated": shown.size < count,
            },
            "warnings": self.warnings,
        }
        if self.calibration is not None:
            out["calibration"] = self.calibration
        return out


@dataclass
class Partial:
    """The mergeable figures of consecutive scored rows (see the module docstring).

    ``flagged`` holds arrays of row indices counted from this partial's first row. Made by
    :meth:`of` from one scored chunk; ``a + b`` (or ``a += b``) appends b's rows after a's.
    """

    input_type: str
    confidence_method: str
    clip_eps: float
    summary: Summary
    has_loss: bool = False
    n_clipped: int = 0
    flagged: list[npt.NDArray[np.intp]] = field(default_factory=list)
    other_warnings: dict[str, None] = field(default_factory=dict)  # an ordered set
    calibration: CalibrationSums | None = None

    @property
    def task(self) -> str:
        """The task of the rows (that of the first chunk)."""
        assert self.summary.task is not None
        return self.summary.task

    @property
    def n_items(self) -> int:
        """Rows scored."""
        return self.summary.n_items

    @classmethod
    def of(
        cls, r: ScoreResult, *, clip_eps: float, calibration: CalibrationSums | None = None
    ) -> Partial:
        """The partial of one scored chunk (``clip_eps``: the checked option, for the clip
        warning's text)."""
        part = cls(
            r.input_type,
            r.confidence_method,
            clip_eps,
            Summary.from_result(r),
            has_loss=r.loss_sum is not None,
            n_clipped=r.n_clipped,
            flagged=[r.flagged_indices],
            calibration=calibration,
        )
        # The clip count is summed and the weight warning decided on the whole file (result).
        per_file = {NO_WEIGHT_WARNING, *clip_warning(r.input_type, clip_eps, r.n_clipped)}
        for text in r.warnings:
            if text not in per_file:
                part.other_warnings.setdefault(text, None)
        return part

    def __iadd__(self, other: Partial) -> Partial:
        """Append ``other``'s rows after this partial's (ValueError when their task, number of
        classes, input type or confidence method differ)."""
        mine = (self.input_type, self.confidence_method)
        theirs = (other.input_type, other.confidence_method)
        if mine != theirs:
            raise ValueError(f"cannot merge the partial of {theirs} into that of {mine}")
        self.flagged += [f + self.n_items for f in other.flagged]
        self.summary = self.summary + other.summary
        self.has_loss = self.has_loss or other.has_loss
        self.n_clipped += other.n_clipped
        for text in other.other_warnings:
            self.other_warnings.setdefault(text, None)
        if self.calibration is not None and other.calibration is not None:
            self.calibration = self.calibration + other.calibration
        return self

    def __add__(self, other: Partial) -> Partial:
        out = copy.copy(self)
        out.flagged = list(self.flagged)
        out.other_warnings = dict(self.other_warnings)
        out += other
        return out

    def result(self) -> OfflineResult:
        """The merged figures (see the module docstring)."""
        s = self.summary
        warnings = [*clip_warning(self.input_type, self.clip_eps, self.n_clipped)]
        warnings += self.other_warnings
        loss_sum = float(s.loss_sum) if self.has_loss else None
        weight_sum = float(s.weight_sum) if self.has_loss else None
        if self.has_loss and not weight_sum:
            warnings.append(NO_WEIGHT_WARNING)
        assert s.task is not None and s.n_classes is not None
        out = OfflineResult(
            task=s.task,
            input_type=self.input_type,
            n_items=s.n_items,
            n_classes=s.n_classes,
            confidence_method=self.confidence_method,
            loss_sum=loss_sum,
            weight_sum=weight_sum,
            n_scored=s.n_scored if self.has_loss else None,
            n_correct=s.correct if self.has_loss else None,
            confidence_sum=float(s.confidence_sum),
            confidence_count=s.confidence_count,
            flagged_indices=np.concatenate(self.flagged),
            warnings=warnings,
            summary=s,
        )
        if self.calibration is not None:
            out.calibration = self.calibration.figures(out.loss_mean)
        return out
