"""Flag rules -> boolean masks, and the per-item reason lists built from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from xentcore.types import REASONS, FlagRules

__all__ = ["FlagMasks", "apply_rules", "reason_lists"]

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class FlagMasks:
    """One boolean mask per rule (all False where the rule is off), and their union."""

    low_confidence: Bool
    high_loss: Bool
    misclassified: Bool
    flagged: Bool

    def counts(self) -> dict[str, int]:
        """Number of items each reason fires for."""
        return {name: int(np.count_nonzero(getattr(self, name))) for name in REASONS}


def apply_rules(
    rules: FlagRules, confidence: F64, loss: F64 | None, correct: Bool | None, scored: Bool | None
) -> FlagMasks:
    """Evaluate the rules that are on.

    ``low_confidence``: confidence < min_confidence (NaN confidence never fires);
    ``high_loss``: loss > max_loss (items without a loss never fire);
    ``misclassified``: predicted != true class, for scored items only.
    """
    n = confidence.shape[0]
    off = np.zeros(n, dtype=bool)
    low = confidence < rules.min_confidence if rules.min_confidence is not None else off
    high = loss > rules.max_loss if rules.max_loss is not None and loss is not None else off
    if rules.misclassified and correct is not None:
        mis = ~correct if scored is None else ~correct & scored
    else:
        mis = off
    return FlagMasks(low, high, mis, low | high | mis)


def reason_lists(masks: FlagMasks) -> list[list[str]]:
    """The reasons of every item, in the order of ``REASONS``; a Python list per item."""
    out: list[list[str]] = [[] for _ in range(masks.flagged.shape[0])]
    for name in REASONS:
        for i in np.flatnonzero(getattr(masks, name)).tolist():
            out[i].append(name)
    return out
