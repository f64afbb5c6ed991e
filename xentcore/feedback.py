"""The feedback loop's arithmetic (API.md section 9): audit draws, late labels scored on kept
rows (``xentcore.keep``), and the sums of the calibration set ("labeled") and of the other late
labels ("reviewed").

Late labels. Binary: -[y log p + (1 - y) log(1 - p)], p clipped to [eps, 1 - eps] (the batch's
``clip_eps``); multiclass: -log p_y from the kept log-probabilities (no loss above the row
cap); multilabel: the mean over k of the binary loss, correct = the predicted set equals the
true set; sequences: a verdict (1 = acceptable, 0 = wrong), correct = verdict 1, no loss.

Sums. Each labelled item adds to the sums of the batch it was scored in (and so to that
batch's minute, hour, day and lifetime): in the calibration set (its batch came with labels,
or it was audited) ``lab_n``, ``lab_correct``, ``lab_loss_sum`` / ``lab_loss_n`` (items with a
loss), ``lab_unflagged`` / ``lab_unflagged_wrong`` and the 15 uniform top-label bins;
otherwise (a late label on an item neither audited nor labelled in its batch) ``rev_n`` and
``rev_correct``. A replaced label adds the difference (new minus old), so sums stay those of the
current labels. The figures::

    labeled.accuracy = lab_correct / lab_n
    labeled.loss_mean = lab_loss_sum / lab_loss_n
    labeled.accepted_error_rate = lab_unflagged_wrong / lab_unflagged
    labeled.ece = sum_b |correct_b - conf_b| / sum_b n_b
    reviewed.accuracy = rev_correct / rev_n
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.calibration import uniform_bin_index
from xentcore.summary import ratios
from xentcore.types import DEFAULT_EPS, F64, I64, Bool

__all__ = [
    "LABEL_SCALARS",
    "LABEL_SUMS",
    "N_LABEL_BINS",
    "audit_mask",
    "binary_loss",
    "label_contributions",
    "label_figures_rows",
    "labeled_figures",
    "late_outcomes",
    "reviewed_figures",
]

#: Calibration-set bins (uniform over the top-label probability, as section 4's default).
N_LABEL_BINS = 15
#: The scalar label sums, in the order of :data:`LABEL_SUMS`.
LABEL_SCALARS = (
    "lab_n",
    "lab_correct",
    "lab_loss_sum",
    "lab_loss_n",
    "lab_unflagged",
    "lab_unflagged_wrong",
    "rev_n",
    "rev_correct",
)
#: Every label sum kept per batch and rollup row: the scalars, then the 15 bins' item count,
#: top-label probability sum and correct count.
LABEL_SUMS = (
    *LABEL_SCALARS,
    *(f"lab_bin_n_{b}" for b in range(N_LABEL_BINS)),
    *(f"lab_bin_conf_{b}" for b in range(N_LABEL_BINS)),
    *(f"lab_bin_correct_{b}" for b in range(N_LABEL_BINS)),
)
_S = {name: i for i, name in enumerate(LABEL_SUMS)}
_BIN0 = len(LABEL_SCALARS)


def audit_mask(n: int, rate: float, seed: int | None = None) -> Bool:
    """Each of ``n`` items marked for audit independently with probability ``rate``.

    ``numpy.random.default_rng(seed).random(n) < rate``: the same seed, rate and n draw the
    same items; without a seed each call draws afresh. Rate 0 marks none, rate 1 all.
    """
    if rate <= 0.0:
        return np.zeros(n, dtype=bool)
    draws: F64 = np.random.default_rng(seed).random(n)
    return draws < rate


def binary_loss(p: F64, y: F64, eps: float = DEFAULT_EPS) -> F64:
    """-[y log p + (1 - y) log(1 - p)], p clipped to [eps, 1 - eps] (section 2, no options)."""
    q = np.clip(p, eps, 1.0 - eps)
    out: F64 = -(y * np.log(q) + (1.0 - y) * np.log1p(-q))
    return out


def late_outcomes(
    task: str,
    predicted: I64,
    labels: npt.NDArray[Any],
    *,
    rows: npt.NDArray[Any] | None = None,
    predicted_set: Bool | None = None,
    eps: float = DEFAULT_EPS,
) -> tuple[F64, Bool]:
    """(loss, correct) of late ``labels`` for kept items of one shape (vectorized).

    ``labels``: class indices (multiclass), 0/1 (binary), an (n, K) 0/1 matrix (multilabel) or
    verdicts (sequences). ``rows``: the kept rows of the items, (n, K) / (n,), or None (no loss:
    NaN). ``predicted_set`` is the multilabel prediction; ``eps`` the clipping of probabilities
    (the batch's ``clip_eps``).
    """
    n = predicted.shape[0]
    loss = np.full(n, np.nan)
    if task == "sequences":
        return loss, labels.astype(np.int64) == 1
    if task == "multilabel":
        assert predicted_set is not None
        truth = labels.astype(bool)
        correct = np.all(predicted_set == truth, axis=1)
        if rows is not None:
            p = rows.astype(np.float64)
            loss = binary_loss(p, truth.astype(np.float64), eps).mean(axis=1)
        return loss, correct
    y = labels.astype(np.int64)
    correct = predicted == y
    if rows is not None:
        if task == "binary":
            loss = binary_loss(rows.astype(np.float64), y.astype(np.float64), eps)
        else:
            loss = -rows[np.arange(n), y].astype(np.float64)
    return loss, correct


def label_contributions(
    *, correct: Bool, loss: F64, top_prob: F64, flagged: Bool, in_calibration: Bool
) -> F64:
    """Each item's addition to the label sums, an (n, len(LABEL_SUMS)) matrix (see the module
    docstring): calibration-set items add to the ``lab_*`` sums, the others to ``rev_*``."""
    n = correct.shape[0]
    out = np.zeros((n, len(LABEL_SUMS)))
    cal = in_calibration
    rev = ~cal
    has_loss = cal & np.isfinite(loss)
    out[:, _S["lab_n"]] = cal
    out[:, _S["lab_correct"]] = cal & correct
    out[:, _S["lab_loss_sum"]] = np.where(has_loss, loss, 0.0)
    out[:, _S["lab_loss_n"]] = has_loss
    out[:, _S["lab_unflagged"]] = cal & ~flagged
    out[:, _S["lab_unflagged_wrong"]] = cal & ~flagged & ~correct
    out[:, _S["rev_n"]] = rev
    out[:, _S["rev_correct"]] = rev & correct
    binned = cal & np.isfinite(top_prob)
    rows = np.flatnonzero(binned)
    b = uniform_bin_index(top_prob[rows], N_LABEL_BINS)
    out[rows, _BIN0 + b] = 1.0
    out[rows, _BIN0 + N_LABEL_BINS + b] = top_prob[rows]
    out[rows, _BIN0 + 2 * N_LABEL_BINS + b] = correct[rows]
    return out


def labeled_figures(sums: Mapping[str, float]) -> dict[str, float | int | None]:
    """``{"n", "accuracy", "loss_mean", "ece", "accepted_error_rate"}`` of the calibration set
    from its sums by name (None where a figure has no items)."""
    return _one_row(sums)["labeled"]


def reviewed_figures(sums: Mapping[str, float]) -> dict[str, float | int | None]:
    """``{"n", "accuracy"}`` of late labels outside the calibration set."""
    return _one_row(sums)["reviewed"]


def _one_row(sums: Mapping[str, float]) -> dict[str, dict[str, float | int | None]]:
    return label_figures_rows(np.array([[sums[name] for name in LABEL_SUMS]]))[0]


def label_figures_rows(sums: F64) -> list[dict[str, dict[str, float | int | None]]]:
    """``{"labeled": ..., "reviewed": ...}`` for each row of an (n, len(LABEL_SUMS)) matrix of
    label sums (None where a figure has no items)."""
    c = {name: sums[:, i] for name, i in _S.items()}
    bins = sums[:, _BIN0:]
    count = bins[:, :N_LABEL_BINS].sum(axis=1)
    conf = bins[:, N_LABEL_BINS : 2 * N_LABEL_BINS]
    right = bins[:, 2 * N_LABEL_BINS :]
    ece = ratios(np.abs(right - conf).sum(axis=1), count)
    n = c["lab_n"].astype(np.int64).tolist()
    accuracy = ratios(c["lab_correct"], c["lab_n"])
    loss = ratios(c["lab_loss_sum"], c["lab_loss_n"])
    accepted = ratios(c["lab_unflagged_wrong"], c["lab_unflagged"])
    rev_n = c["rev_n"].astype(np.int64).tolist()
    rev_acc = ratios(c["rev_correct"], c["rev_n"])
    return [
        {
            "labeled": {
                "n": n[i],
                "accuracy": accuracy[i],
                "loss_mean": loss[i],
                "ece": ece[i],
                "accepted_error_rate": accepted[i],
            },
            "reviewed": {"n": rev_n[i], "accuracy": rev_acc[i]},
        }
        for i in range(sums.shape[0])
    ]
