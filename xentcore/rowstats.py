"""``RowStats``: what a kernel sweep returns for every item, binary, multilabel or multiclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from xentcore.types import F64

__all__ = ["RowStats"]


@dataclass(frozen=True)
class RowStats:
    """Per-item results of a sweep over a batch's predictions (arrays of length N).

    ``predicted``: the argmax class (int64; binary: p >= decision_threshold as 0 / 1), or for
    multilabel the (N, K) boolean set p_ik >= decision_threshold. ``confidence``: the chosen
    confidence method (multilabel: the least confident entry of the row). ``top_confidence``:
    the probability of the predicted class, max(p, 1 - p) for binary (calibration reads it);
    None for multilabel. ``loss``: the per-item loss before masking ignored items, None without
    labels (multilabel: the mean over classes). ``n_clipped``: input values clipped by
    ``clip_eps`` on their way into a log (counted only when there is a loss).
    """

    predicted: npt.NDArray[Any]
    confidence: F64
    top_confidence: F64 | None
    loss: F64 | None
    n_clipped: int
