"""``score_file``: a file scored chunk by chunk, the chunks merged from their sums and counts.

Each chunk of rows is scored by :func:`xentcore.score` exactly as the service would score it,
with the same options (a mapping of its keyword arguments); every chunk after the first is
scored with the first chunk's task. The merge:

    loss.sum        = fsum over chunks of the chunk's loss_sum   (exactly rounded merge)
    loss.mean       = loss.sum / fsum(weight_sum)                (None when no weight)
    accuracy        = sum n_correct / sum n_scored               (None when nothing scored)
    confidence.mean = fsum(chunk sums of the existing confidences) / their count
    flagged.indices = the chunk's flagged indices + the chunk's first row
    warnings        = the clip warning of the summed clip count, then the chunks' other
                      warnings once each in order, then the no-weight warning (whole file)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import xentcore as xc
from xentcore import InputError, ScoreResult
from xentcore.files.outputs import PerItemWriter
from xentcore.files.sources import FileError, RowSource, default_chunk_rows
from xentcore.score import NO_WEIGHT_WARNING, clip_warning
from xentcore.types import DEFAULT_EPS

__all__ = ["MAX_JSON_INDICES", "PER_ITEM_OPTIONS", "OfflineResult", "score_file"]

#: Flagged indices in :meth:`OfflineResult.as_json` by default (``xent score --max-flagged``;
#: all go to a file with ``--flagged-out``).
MAX_JSON_INDICES = 1000
#: Options of :func:`xentcore.score` with one value per item: a chunk cannot take them.
PER_ITEM_OPTIONS = frozenset({"sample_weights"})


@dataclass
class OfflineResult:
    """The merged figures of a file: the ``/v1/score`` answer without ``items``."""

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
        """The ``/v1/score`` response shape, without ``items`` and ``recorded``.

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
        return {
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


@dataclass
class _Totals:
    """The running sums and counts of the chunks scored so far (merged by :meth:`result`)."""

    clip_eps: float
    first: ScoreResult | None = None
    losses: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    confidence_sums: list[float] = field(default_factory=list)
    confidence_count: int = 0
    n_scored: int = 0
    n_correct: int = 0
    n_clipped: int = 0
    flagged: list[npt.NDArray[np.intp]] = field(default_factory=list)
    other_warnings: dict[str, None] = field(default_factory=dict)  # an ordered set

    def add(self, r: ScoreResult, start: int) -> None:
        """Add the chunk ``r`` whose first row is row ``start`` of the file."""
        if self.first is None:
            self.first = r
        if r.loss_sum is not None:
            self.losses.append(r.loss_sum)
            self.weights.append(r.weight_sum or 0.0)
            self.n_scored += r.n_scored or 0
            self.n_correct += r.n_correct or 0
        ok = ~np.isnan(r.confidence)
        self.confidence_sums.append(float(r.confidence[ok].sum()))
        self.confidence_count += int(np.count_nonzero(ok))
        self.flagged.append(r.flagged_indices + start)
        self.n_clipped += r.n_clipped
        # The clip count is summed and the weight warning decided on the whole file (result).
        per_file = {NO_WEIGHT_WARNING, *clip_warning(r.input_type, self.clip_eps, r.n_clipped)}
        for text in r.warnings:
            if text not in per_file:
                self.other_warnings.setdefault(text, None)

    def result(self, n_items: int) -> OfflineResult:
        """The merged figures (see the module docstring); at least one chunk was added."""
        first = self.first
        assert first is not None
        warnings = [*clip_warning(first.input_type, self.clip_eps, self.n_clipped)]
        warnings += self.other_warnings
        has_loss = first.loss_sum is not None
        loss_sum = math.fsum(self.losses) if has_loss else None
        weight_sum = math.fsum(self.weights) if has_loss else None
        if has_loss and not weight_sum:
            warnings.append(NO_WEIGHT_WARNING)
        return OfflineResult(
            task=first.task,
            input_type=first.input_type,
            n_items=n_items,
            n_classes=first.n_classes,
            confidence_method=first.confidence_method,
            loss_sum=loss_sum,
            weight_sum=weight_sum,
            n_scored=self.n_scored if has_loss else None,
            n_correct=self.n_correct if has_loss else None,
            confidence_sum=math.fsum(self.confidence_sums),
            confidence_count=self.confidence_count,
            flagged_indices=np.concatenate(self.flagged),
            warnings=warnings,
        )


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of every chunk; one empty chunk for an empty file (the core decides)."""
    if n == 0:
        yield 0, 0
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _global(err: InputError, start: int) -> InputError:
    """The same error with the chunk's row index made global (offset by the chunk's start)."""
    loc = err.location
    if start and len(loc) > 1 and loc[0] in ("predictions", "labels") and isinstance(loc[1], int):
        return InputError((loc[0], loc[1] + start, *loc[2:]), err.reason, kind=err.kind)
    return err


def _score_chunk(
    predictions: RowSource,
    labels: RowSource | None,
    start: int,
    stop: int,
    options: Mapping[str, Any],
) -> ScoreResult:
    """``xentcore.score`` of rows ``start:stop``; an InputError names the global row."""
    x = predictions.read(start, stop)
    y = None if labels is None else labels.read(start, stop)
    try:
        return xc.score(x, y, **options)
    except InputError as err:
        raise _global(err, start) from None


def score_file(
    predictions: RowSource,
    labels: RowSource | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    per_item: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> OfflineResult:
    """Score a file chunk by chunk; merge the chunks' sums exactly (see the module docstring).

    ``options`` maps keyword arguments of :func:`xentcore.score` (``task``, ``input_type``,
    ``confidence``, ``flag``, ``ignore_index``...) to their values; those with one value per
    item (:data:`PER_ITEM_OPTIONS`) raise ValueError. ``chunk_rows``: rows per chunk (default
    :func:`default_chunk_rows`); the per-item figures do not depend on it, the sums only by
    float rounding. ``per_item``: write the columns of :class:`PerItemWriter` to this ``.npz``.
    ``progress(rows_done)`` is called after every chunk.

    Raises :class:`InputError` (global row index in its location) for invalid data, and
    :class:`FileError` when the files do not fit together.
    """
    call = dict(options or {})
    if not PER_ITEM_OPTIONS.isdisjoint(call):
        raise ValueError(f"score_file takes no per-item options ({', '.join(PER_ITEM_OPTIONS)})")
    n = predictions.n_rows
    if labels is not None and labels.n_rows != n:
        raise FileError(f"{labels.name} has {labels.n_rows:,} rows, {predictions.name} has {n:,}")
    size = chunk_rows or default_chunk_rows(predictions.shape)
    totals = _Totals(clip_eps=float(call.get("clip_eps", DEFAULT_EPS)))
    items = PerItemWriter(per_item, n) if per_item is not None else None
    try:
        for start, stop in _chunks(n, size):
            r = _score_chunk(predictions, labels, start, stop, call)
            call["task"] = r.task  # every chunk the same task as the first
            totals.add(r, start)
            if items is not None:
                items.add(r, start)
            if progress is not None:
                progress(stop)
        if items is not None:
            items.finish()
    finally:
        if items is not None:
            items.discard()
    return totals.result(n)
