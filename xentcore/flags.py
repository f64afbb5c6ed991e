"""Flag rules -> boolean masks; the one builder of reason lists and of flagged-item rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import _rowops
from xentcore.types import F64, REASONS, Bool, FlagRules

if TYPE_CHECKING:  # score.py imports this module: the type only
    from xentcore.score import ScoreResult

__all__ = [
    "FlagMasks",
    "apply_rules",
    "flagged_rows",
    "reason_bits",
    "reason_lists",
    "risk_mask",
    "truth_columns",
]


@dataclass(frozen=True)
class FlagMasks:
    """One boolean mask per rule (all False where the rule is off), and their union."""

    low_confidence: Bool
    high_loss: Bool
    misclassified: Bool
    risk_policy: Bool
    flagged: Bool

    def counts(self) -> dict[str, int]:
        """Number of items each reason fires for."""
        return {name: int(np.count_nonzero(getattr(self, name))) for name in REASONS}


def risk_mask(
    thresholds: tuple[float, ...], confidence: F64, predicted: npt.NDArray[Any] | None
) -> Bool:
    """Items a risk policy does not accept: not (confidence >= threshold), the threshold of
    the item's predicted class when there is one per class (``predicted``: class indices)."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.size > 1 and (predicted is None or predicted.ndim != 1):
        raise ValueError("per-class thresholds need one predicted class per item")
    limit = t[0] if t.size == 1 else t[predicted]
    out: Bool = ~(confidence >= limit)
    return out


def apply_rules(
    rules: FlagRules,
    confidence: F64,
    loss: F64 | None,
    correct: Bool | None,
    scored: Bool | None,
    predicted: npt.NDArray[Any] | None = None,
) -> FlagMasks:
    """Evaluate the rules that are on.

    ``low_confidence``: confidence < min_confidence (NaN confidence never fires);
    ``high_loss``: loss > max_loss (items without a loss never fire);
    ``misclassified``: predicted != true class, for scored items only;
    ``risk_policy``: not accepted by the policy's thresholds (:func:`risk_mask`).
    """
    n = confidence.shape[0]
    off = np.zeros(n, dtype=bool)
    low = confidence < rules.min_confidence if rules.min_confidence is not None else off
    high = loss > rules.max_loss if rules.max_loss is not None and loss is not None else off
    if rules.misclassified and correct is not None:
        mis = ~correct if scored is None else ~correct & scored
    else:
        mis = off
    if rules.risk_thresholds is not None:
        risk = risk_mask(rules.risk_thresholds, confidence, predicted)
    else:
        risk = off
    return FlagMasks(low, high, mis, risk, low | high | mis | risk)


def reason_bits(masks: Sequence[Bool]) -> npt.NDArray[np.uint8]:
    """One uint8 per item from up to 8 boolean masks (mask b -> bit b)."""
    if len(masks) > 8:
        raise ValueError("at most 8 reasons fit a uint8 mask")
    out = np.zeros(masks[0].shape[0] if masks else 0, dtype=np.uint8)
    for b, mask in enumerate(masks):
        out |= mask.astype(np.uint8) << np.uint8(b)
    return out


def reason_lists(masks: FlagMasks, indices: npt.NDArray[np.intp] | None = None) -> list[list[str]]:
    """The reasons of the items at ``indices`` (every item when None), in the order of
    ``REASONS``: a Python list per item, empty for an item no rule fires for.

    One compiled pass when ``xentcore._rowops`` is built (the lists hold the shared name
    strings); else Python work per firing reason only (one ``flatnonzero`` per rule), not per
    item and rule.
    """
    if _rowops is not None and hasattr(_rowops, "reason_lists"):
        rows = tuple(np.ascontiguousarray(getattr(masks, name)) for name in REASONS)
        picked = None if indices is None else np.ascontiguousarray(indices, dtype=np.int64)
        lists: list[list[str]] = _rowops.reason_lists(rows, REASONS, picked)
        return lists
    n = masks.flagged.shape[0] if indices is None else indices.shape[0]
    out: list[list[str]] = [[] for _ in range(n)]
    for name in REASONS:
        mask: Bool = getattr(masks, name)
        for j in np.flatnonzero(mask if indices is None else mask[indices]).tolist():
            out[j].append(name)
    return out


def flagged_rows(
    result: ScoreResult, ids: Sequence[Any] | None, *, truth: bool = False
) -> list[dict[str, Any]]:
    """One row per flagged item, ascending: ``index``, ``id`` (only when ``ids`` are given),
    ``confidence``, ``loss`` (None without labels; NaN for an ignored item) and ``reasons``.

    With ``truth``, also ``predicted`` (as ``result.predicted`` renders it) and ``label``: the
    item's true class (its name with class names; multilabel: the list of true classes), None
    without labels or for an ignored item. Values are Python values (NaN stays NaN).
    """
    indices = result.flagged_indices
    confidence = result.confidence[indices].tolist()
    loss = result.item_loss[indices].tolist() if result.item_loss is not None else None
    reasons = reason_lists(result.masks, indices)
    extra = truth_columns(result, indices) if truth else None
    rows = []
    for j, i in enumerate(indices.tolist()):
        row: dict[str, Any] = {"index": i}
        if ids is not None:
            row["id"] = ids[i]
        row["confidence"] = confidence[j]
        row["loss"] = None if loss is None else loss[j]
        row["reasons"] = reasons[j]
        if extra is not None:
            row["predicted"], row["label"] = extra[0][j], extra[1][j]
        rows.append(row)
    return rows


def truth_columns(
    result: ScoreResult, indices: npt.NDArray[np.intp]
) -> tuple[list[Any], list[Any]]:
    """``predicted`` and ``label`` of the items at ``indices`` as Python values (see
    :func:`flagged_rows`): class names with class names, else class indices; multilabel: lists
    of classes. ``label`` is None without labels and for an item that was not scored.

    Vectorized over the items; Python work only for multilabel rows and unscored items.
    """
    rows = indices.tolist()
    predicted = result.predicted
    if isinstance(predicted, list):  # multilabel: a list per item
        shown = [predicted[i] for i in rows]
    else:
        shown = predicted[indices].tolist()
    if result.true_class is None:
        return shown, [None] * len(rows)
    names = result.class_names
    labels: list[Any]
    if result.task == "multilabel":
        truth = result.true_class[indices]
        labels = [
            [names[k] for k in np.flatnonzero(t).tolist()] if names else np.flatnonzero(t).tolist()
            for t in truth
        ]
    else:
        true = result.true_class[indices]
        valid = true >= 0
        picked = np.where(valid, true, 0)
        labels = (np.asarray(names, dtype=object)[picked] if names else picked).tolist()
    if result.scored is not None:
        for j in np.flatnonzero(~result.scored[indices]).tolist():
            labels[j] = None
    return shown, labels
