"""Binary and multilabel entries: every (i, k) is an independent two-class decision.

Loss of one entry (the contract's section 2), with y' = y (1 - e) + e / 2 and pos_weight w+:
    l = -[w1 w+ y' log p + w0 (1 - y') log(1 - p)]  x  (1 - p_t)^gamma  x  alpha_t
where p_t = p y' + (1 - p)(1 - y') and alpha_t = alpha y' + (1 - alpha)(1 - y') (torchvision's
``sigmoid_focal_loss``; a multilabel alpha may be one per class, Keras'
``binary_focal_crossentropy`` broadcast over the columns). Class weights: binary (w0, w1) weigh
the negative and the positive term (for a hard label, w_y l: torch's ``BCELoss(weight=w[y])``;
for a soft one, torch's ``cross_entropy`` of the two-class distribution (1 - y', y') with
``weight=(w0, w1)``); multilabel w_k weighs the whole entry of class k, w0 = w1 = w_k (torch's
``BCEWithLogitsLoss(weight=w)``, broadcast over the K columns). Logits go through log-sigmoid,
log p = -softplus(-z) and log(1 - p) = -softplus(z) (``np.logaddexp(0, .)``), never exp then
log, so |z| = 1e300 is finite. Probabilities are clipped to [eps, 1 - eps] on each side before
the log, as scikit-learn does.

A multilabel item is a row of K entries: its loss is the mean of its scored entries' losses
(every entry but those whose label is ``ignore_index``) and its confidence the least confident
entry's. ``sweep`` reads its options from one checked :class:`~xentcore.types.ScoreOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.rowstats import RowStats
from xentcore.types import F64, ConfidenceMethod, FloatArray, ScoreOptions

__all__ = ["Entries", "entries", "entry_confidence", "entry_loss", "sweep"]

_LOG2 = float(np.log(2.0))


@dataclass(frozen=True)
class Entries:
    """log p, log(1 - p) and p of every entry (float64, the input's shape)."""

    log_p: F64
    log_q: F64
    p: F64
    n_clipped: int


def _expit(z: F64) -> F64:
    # exp(-softplus(-z)): exact in both tails, no overflow warning for large |z|
    return np.exp(-np.logaddexp(0.0, -z))


def entries(x: FloatArray, input_type: str, eps: float) -> Entries:
    """Log-probabilities of both outcomes of each entry, from any input form."""
    x64: F64 = x.astype(np.float64, copy=False)
    x = x64
    if input_type == "logits":
        return Entries(-np.logaddexp(0.0, -x64), -np.logaddexp(0.0, x64), _expit(x64), 0)
    if input_type == "probabilities":
        p, q = np.clip(x, eps, 1 - eps), np.clip(1.0 - x, eps, 1 - eps)
        n_clipped = int(np.count_nonzero((x < eps) | (x > 1 - eps)))
        return Entries(np.log(p), np.log(q), x64, n_clipped)
    lo, hi = np.log(eps), np.log1p(-eps)
    log_p: F64 = np.clip(x64, lo, hi)
    log_q = np.log(np.clip(-np.expm1(x), eps, 1 - eps))  # log(1 - p), precise near p = 0
    n_clipped = int(np.count_nonzero((x < lo) | (x > hi)))
    return Entries(log_p, log_q, np.exp(x), n_clipped)


def entry_loss(e: Entries, y: F64, options: ScoreOptions) -> F64:
    """Per-entry binary cross-entropy (optionally weighted, focal), same shape as ``y``.

    Reads ``pos_weight``, ``class_weights``, ``label_smoothing``, ``focal_gamma`` and
    ``focal_alpha`` (a number, or one per column) of the checked ``options``.
    """
    pos_weight, smoothing = options.pos_weight, options.label_smoothing
    gamma, alpha, weights = options.focal_gamma, options.focal_alpha, options.class_weights
    y_s = y * (1.0 - smoothing) + smoothing / 2 if smoothing > 0 else y
    pos = y_s * e.log_p
    if pos_weight is not None:
        pos = pos * pos_weight
    neg = (1.0 - y_s) * e.log_q
    if weights is not None and y.ndim == 1:  # binary: (w0, w1) weigh the two terms
        pos *= weights[1]
        neg *= weights[0]
    loss = -(pos + neg)
    if weights is not None and y.ndim == 2:  # multilabel: w_k weighs column k
        loss *= weights
    if gamma > 0:
        p = np.exp(e.log_p)  # p as it entered the loss (clipped for probabilities)
        p_t = p * y_s + (1.0 - p) * (1.0 - y_s)
        loss *= (1.0 - p_t) ** gamma
    if alpha is not None:
        loss *= alpha * y_s + (1.0 - alpha) * (1.0 - y_s)
    return loss


def entry_confidence(e: Entries, method: ConfidenceMethod, truth: npt.NDArray[Any] | None) -> F64:
    """Binary confidence of each entry: max(p, 1-p), |2p - 1|, 1 - H/log 2, or p of the truth."""
    p = e.p
    if method == "margin":
        return np.abs(2.0 * p - 1.0)
    if method == "entropy":
        h = -(p * e.log_p + (1.0 - p) * e.log_q)
        return np.clip(1.0 - h / _LOG2, 0.0, 1.0)
    if method == "true_class":
        assert truth is not None
        return np.where(truth.astype(bool), p, 1.0 - p)
    return np.maximum(p, 1.0 - p)


def _scored_mean(values: F64, entries_scored: npt.NDArray[np.bool_]) -> F64:
    """Row means over the scored entries (NaN for a row with none: it has no loss)."""
    count = np.count_nonzero(entries_scored, axis=1)
    total = np.where(entries_scored, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0: an item with no scored entry
        mean: F64 = total / count
    return mean


def sweep(
    x: FloatArray,
    options: ScoreOptions,
    *,
    target: F64 | None = None,
    truth: npt.NDArray[Any] | None = None,
    entries_scored: npt.NDArray[np.bool_] | None = None,
) -> RowStats:
    """Per-item loss, confidence, top-label confidence and prediction of binary or multilabel
    predictions (``options.task`` says which).

    ``x``: checked (N,) or (N, K) predictions of ``options.input_type``; ``target``: targets in
    [0, 1] of the same shape (None: no loss); ``truth``: the true class of each entry (0 / 1 or
    booleans), needed by ``true_class`` confidence; ``entries_scored`` (multilabel): the (N, K)
    mask of entries that have a loss (None: all), an item's loss and ``true_class`` confidence
    taken over those only. Binary items are predicted 1 when p >= ``decision_threshold``; their
    top-label confidence is max(p, 1 - p). ``n_clipped`` counts every clipped entry of a
    labelled batch, scored or not.
    """
    o = options
    e = entries(x, o.input_type, o.clip_eps)
    conf = entry_confidence(e, o.confidence, truth)
    pred = e.p >= o.decision_threshold
    loss = None if target is None else entry_loss(e, target, o)
    n_clipped = e.n_clipped if loss is not None else 0  # clipping matters only to a loss
    if o.task == "binary":
        top = np.maximum(e.p, 1.0 - e.p)
        return RowStats(pred.astype(np.int64), conf, top, loss, n_clipped)
    if entries_scored is None:
        mean_loss = None if loss is None else loss.mean(axis=1)
        return RowStats(pred, conf.min(axis=1), None, mean_loss, n_clipped)
    mean_loss = None if loss is None else _scored_mean(loss, entries_scored)
    if o.confidence == "true_class":  # the least p given to a known true value
        conf = np.where(entries_scored, conf, np.inf).min(axis=1)
        conf[np.isinf(conf)] = np.nan
    else:
        conf = conf.min(axis=1)
    return RowStats(pred, conf, None, mean_loss, n_clipped)
