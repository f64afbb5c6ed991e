"""Hints appended to an error message when the mistake behind it is recognisable.

They are computed on the error path only (valid input never pays for them) and fire only on
evidence that rounding cannot produce (``HINT_MARGIN``) and a few stray values cannot either.
"""

from __future__ import annotations

import numpy as np

from xentcore._kernels import row_logsumexp, row_sums
from xentcore.types import F64, Bool, FloatArray, Task

__all__ = [
    "HINT_MARGIN",
    "LOGITS_HINT",
    "LOG_PROBABILITIES_HINT",
    "MULTILABEL_HINT",
    "PROBABILITIES_HINT",
    "log_probabilities_hint",
    "probabilities_hint",
    "row_sum_hint",
]

#: How far outside a bound a value must be to count as evidence (rounding stays far below).
HINT_MARGIN = 0.01

LOGITS_HINT = '; these look like logits: pass input_type="logits"'
LOG_PROBABILITIES_HINT = '; these look like log-probabilities: pass input_type="log_probabilities"'
PROBABILITIES_HINT = '; these look like probabilities: pass input_type="probabilities"'
MULTILABEL_HINT = '; rows of independent probabilities? pass task="multilabel"'


def _sums_to_one(row: FloatArray) -> bool:
    return abs(float(row.sum(dtype=np.float64)) - 1.0) <= HINT_MARGIN


def probabilities_hint(x: FloatArray, bad: Bool, flat: int, task: Task, tol: float) -> str:
    """Why probabilities are outside [0, 1], when it is recognisable (else "").

    Logits: values below -0.01 and above 1.01 both occur, at least a quarter of all values are
    outside [0, 1] (a few stray values are not logits), and, for multiclass, the offending row
    (the one holding flat index ``flat``) does not sum to 1 (a row such as [1.2, -0.2] is a
    damaged probability row, not logits). Log-probabilities (multiclass): no value is positive
    and every row has logsumexp 0 within ``tol``.
    """
    lo, hi = float(x.min()), float(x.max())
    if lo < -HINT_MARGIN and hi > 1 + HINT_MARGIN and 4 * np.count_nonzero(bad) >= x.size:
        if task != "multiclass" or not _sums_to_one(x[np.unravel_index(flat, x.shape)[0]]):
            return LOGITS_HINT
    if task == "multiclass" and hi <= 0 and float(np.abs(row_logsumexp(x)).max()) <= tol:
        return LOG_PROBABILITIES_HINT
    return ""


def log_probabilities_hint(x: FloatArray, task: Task, tol: float) -> str:
    """Why log-probabilities are positive, when it is recognisable (else "").

    Logits: values above 0.01 and below -0.01 both occur (rounding gives neither; probabilities
    are never negative). Probabilities: every value is in [0, 1] and, for multiclass, every row
    sums to 1 within ``tol``.
    """
    lo, hi = float(x.min()), float(x.max())
    if hi > HINT_MARGIN and lo < -HINT_MARGIN:
        return LOGITS_HINT
    if lo >= 0 and hi <= 1:
        if task != "multiclass" or float(np.abs(row_sums(x) - 1.0).max()) <= tol:
            return PROBABILITIES_HINT
    return ""


def row_sum_hint(sums: F64, task_given: bool) -> str:
    """Multiclass rows that look multilabel: ``task`` was not given and more than half of the
    rows are off 1 by more than 0.01 (beyond rounding; one damaged row among good ones is not
    multilabel). Every entry is in [0, 1] already."""
    if task_given:
        return ""
    off = np.count_nonzero(np.abs(sums - 1.0) > HINT_MARGIN)
    return MULTILABEL_HINT if 2 * off > sums.shape[0] else ""
