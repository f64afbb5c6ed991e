"""Calibration: reliability bins, ECE / MCE / RMS, classwise ECE, Brier score, NLL, the binary
reliability curve and a temperature fit.

Top-label confidence c_i and correctness a_i = [predicted_i == label_i]. With B equal-width bins,
item i falls in bin ``min(max(ceil(c_i B) - 1, 0), B - 1)`` (bins are (lower, upper], the first
also holds 0); ``strategy="quantile"`` uses equal-mass bins whose edges are quantiles of c.

    ECE = sum_b (n_b / N) |acc_b - conf_b| = sum_b |correct_sum_b - conf_sum_b| / N
    MCE = max over non-empty bins of |acc_b - conf_b|

    RMS = sqrt(sum_b (n_b / N) (acc_b - conf_b)^2)      (torchmetrics' ``norm="l2"``)

so all three are exact functions of per-bin (count, confidence sum, correct sum): the monitoring
store merges those sums across batches and recomputes the same figures. Sample weights, when
given, weight every sum (counts stay item counts).

Classwise ECE (Kull, Perello-Nieto, Kängsepp, Silva Filho, Song & Flach 2019) bins every class's
probability p_ik separately (the same B bins and strategy; quantile edges per class) and
compares it with the frequency of that class:

    classwise ECE = (1 / K) sum_k sum_b (n_kb / N) |freq_kb - mean_p_kb|
                  = sum_k sum_b |sum_{i in B_kb} ([y_i = k] - p_ik)| / (K N)

(binary: K = 2, the columns 1 - p and p). The reliability curve of a binary task follows
scikit-learn's ``calibration_curve``: the positive-class probability p in B bins (uniform edges
``linspace(0, 1, B + 1)`` or quantile edges ``percentile(p, linspace(0, 1, B + 1) * 100)``, bin
``searchsorted(edges[1:-1], p)``), and per non-empty bin the fraction of positives
``prob_true``, the mean p ``prob_pred`` and the item ``count``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import chunk_rows, rowsum64
from xentcore.errors import InputError
from xentcore.score import ScoreResult, score_batch
from xentcore.types import F64, Bool, FlagRules, ScoreOptions
from xentcore.validate import Batch, check_batch

__all__ = [
    "BinStats",
    "CalibrationResult",
    "bin_stats",
    "calibrate",
    "calibration",
    "calibration_error",
    "classwise_calibration_error",
    "optimal_temperature",
    "reliability_curve",
    "rms_calibration_error",
    "uniform_bin_index",
]

#: Temperatures are searched in [1 / BETA_MAX, 1 / BETA_MIN].
BETA_MIN, BETA_MAX = 1e-3, 1e3
_NO_FLAGS = FlagRules(min_confidence=None)


@dataclass(frozen=True)
class BinStats:
    """Per-bin sums: item count, weight, confidence sum and correct sum; bin edges (B + 1)."""

    edges: F64
    count: npt.NDArray[np.int64]
    weight: F64
    confidence_sum: F64
    correct_sum: F64

    def rows(self) -> list[dict[str, float | int | None]]:
        """The bins as the contract's ``bins`` objects (nulls for empty bins)."""
        out: list[dict[str, float | int | None]] = []
        for b in range(self.count.shape[0]):
            w = float(self.weight[b])
            out.append(
                {
                    "lower": float(self.edges[b]),
                    "upper": float(self.edges[b + 1]),
                    "count": int(self.count[b]),
                    "mean_confidence": float(self.confidence_sum[b]) / w if w > 0 else None,
                    "accuracy": float(self.correct_sum[b]) / w if w > 0 else None,
                }
            )
        return out


def uniform_bin_index(conf: F64, n_bins: int) -> npt.NDArray[np.intp]:
    """The uniform bin of each confidence: bin b holds (b / n, (b + 1) / n], bin 0 also 0."""
    return np.clip(np.ceil(conf * n_bins).astype(np.intp) - 1, 0, n_bins - 1)


def bin_stats(
    confidence: F64,
    correct: Bool,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    weights: F64 | None = None,
) -> BinStats:
    """Reliability-bin sums of top-label confidences and their correctness."""
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        idx = uniform_bin_index(confidence, n_bins)
    else:
        edges = (
            np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
            if confidence.size
            else np.linspace(0.0, 1.0, n_bins + 1)
        )
        idx = np.searchsorted(edges[1:-1], confidence, side="left")
    w = np.ones_like(confidence) if weights is None else weights

    def total(values: F64) -> F64:
        return np.bincount(idx, weights=values, minlength=n_bins).astype(np.float64)

    return BinStats(
        edges=edges,
        count=np.bincount(idx, minlength=n_bins).astype(np.int64),
        weight=total(w),
        confidence_sum=total(w * confidence),
        correct_sum=total(w * correct),
    )


def calibration_error(stats: BinStats) -> tuple[float | None, float | None]:
    """(ECE, MCE) from bin sums; (None, None) when the bins are empty."""
    total = float(stats.weight.sum())
    if total <= 0:
        return None, None
    gap = np.abs(stats.correct_sum - stats.confidence_sum)
    nonempty = stats.weight > 0
    ece = float(gap.sum() / total)
    mce = float((gap[nonempty] / stats.weight[nonempty]).max())
    return ece, mce


def rms_calibration_error(stats: BinStats) -> float | None:
    """sqrt(sum_b (w_b / W) (acc_b - conf_b)^2) from bin sums; None when the bins are empty.

    torchmetrics' ``calibration_error(..., norm="l2")`` (without its optional debiasing):
    (w_b / W) (gap_b / w_b)^2 = gap_b^2 / (w_b W), with gap_b = correct_sum_b - conf_sum_b.
    """
    total = float(stats.weight.sum())
    if total <= 0:
        return None
    nonempty = stats.weight > 0
    gap = stats.correct_sum[nonempty] - stats.confidence_sum[nonempty]
    return float(np.sqrt(np.sum(gap * gap / stats.weight[nonempty]) / total))


def _class_bins(p: F64, n_bins: int, edges: F64 | None) -> npt.NDArray[np.intp]:
    """The bin of every entry of p (N, K) as the flat index k * n_bins + b.

    ``edges`` None: uniform bins; else (n_bins + 1, K) quantile edges, one column per class.
    """
    if edges is None:
        idx = uniform_bin_index(p, n_bins)
    else:
        idx = np.empty(p.shape, dtype=np.intp)
        for k in range(p.shape[1]):  # each class has its own edges
            idx[:, k] = np.searchsorted(edges[1:-1, k], p[:, k], side="left")
    idx += np.arange(p.shape[1]) * n_bins
    return idx


def _signed_class_gaps(
    p: F64, true_class: npt.NDArray[np.int64], w: F64, n_bins: int, edges: F64 | None
) -> F64:
    """Per (class, bin): sum_i w_i ([y_i = k] - p_ik), flat of length K * n_bins."""
    d = p * -w[:, None]
    d[np.arange(p.shape[0]), true_class] += w
    k = p.shape[1]
    idx = _class_bins(p, n_bins, edges).ravel()
    flat = np.bincount(idx, weights=d.ravel(), minlength=k * n_bins)
    return flat.astype(np.float64)


def _class_edges(p: F64, n_bins: int) -> F64:
    """Quantile edges of every class's probabilities, shape (n_bins + 1, K)."""
    return np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1), axis=0)


def classwise_calibration_error(
    probabilities: F64,
    true_class: npt.NDArray[np.int64],
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    weights: F64 | None = None,
) -> float | None:
    """Classwise ECE of checked arrays: p (N, K) rows of probabilities, true classes (N,).

    ``(1 / K) sum_k sum_b (w_kb / W) |freq_kb - mean_p_kb|`` (Kull et al. 2019), each class's
    probabilities binned on their own (uniform, or quantile edges per class); the mean over
    classes of the positive-class ECE of "class k versus the rest". None when nothing carries
    weight.

    >>> p = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    >>> round(classwise_calibration_error(p, np.array([0, 1, 1]), n_bins=2), 4)  # (0.7 + 0.7) / 6
    0.2333
    """
    w = np.ones(probabilities.shape[0]) if weights is None else weights
    total = float(w.sum())
    if probabilities.shape[0] == 0 or total <= 0:
        return None
    edges = None if strategy == "uniform" else _class_edges(probabilities, n_bins)
    gaps = _signed_class_gaps(probabilities, true_class, w, n_bins, edges)
    return float(np.abs(gaps).sum() / (probabilities.shape[1] * total))


def reliability_curve(
    p: F64,
    y: F64,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    weights: F64 | None = None,
) -> dict[str, list[Any]]:
    """The positive-class reliability curve, as scikit-learn's ``calibration_curve``.

    p: positive-class probabilities (N,); y: 1 for a positive item, else 0. Returns
    ``{"prob_true", "prob_pred", "count"}``, one entry per non-empty bin in increasing p (see
    the module docstring for the bins). With ``weights`` the fractions and means are weighted
    (``count`` stays the item count) and a bin is non-empty when its weight is > 0.

    >>> reliability_curve(np.array([0.1, 0.2, 0.9]), np.array([0.0, 1.0, 1.0]), n_bins=2)
    {'prob_true': [0.5, 1.0], 'prob_pred': [0.15000000000000002, 0.9], 'count': [2, 1]}
    """
    if strategy == "uniform" or p.size == 0:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:  # percentile(q * 100), as scikit-learn computes it, so the edges agree exactly
        edges = np.percentile(p, np.linspace(0.0, 1.0, n_bins + 1) * 100)
    idx = np.searchsorted(edges[1:-1], p)
    count = np.bincount(idx, minlength=n_bins)
    if weights is None:
        total = count.astype(np.float64)
        p_sum = np.bincount(idx, weights=p, minlength=n_bins)
        y_sum = np.bincount(idx, weights=y, minlength=n_bins)
    else:
        total = np.bincount(idx, weights=weights, minlength=n_bins).astype(np.float64, copy=False)
        p_sum = np.bincount(idx, weights=weights * p, minlength=n_bins)
        y_sum = np.bincount(idx, weights=weights * y, minlength=n_bins)
    nonempty = total > 0
    return {
        "prob_true": (y_sum[nonempty] / total[nonempty]).tolist(),
        "prob_pred": (p_sum[nonempty] / total[nonempty]).tolist(),
        "count": count[nonempty].tolist(),
    }


@dataclass(frozen=True)
class CalibrationResult:
    """What ``calibration`` returns; ``temperature``, ``nll_after``, ``ece_after`` need a fit.

    ``reliability_curve`` (binary only, else None): ``{"prob_true", "prob_pred", "count"}``.
    """

    ece: float | None
    mce: float | None
    brier: float | None
    nll: float | None
    bins: list[dict[str, float | int | None]]
    n_scored: int
    temperature: float | None = None
    nll_after: float | None = None
    ece_after: float | None = None
    classwise_ece: float | None = None
    rms_calibration_error: float | None = None
    reliability_curve: dict[str, list[Any]] | None = None


def _scored_weights(r: ScoreResult, b: Batch) -> tuple[Bool, F64]:
    keep = np.ones(b.n_items, dtype=bool) if r.scored is None else r.scored
    s = b.options.sample_weights
    return keep, (np.ones(b.n_items) if s is None else s)


def _brier(b: Batch, r: ScoreResult) -> float | None:
    """mean_i sum_k (p_ik - y_ik)^2 (binary: mean (p - y)^2), sample-weighted, scored items."""
    assert b.labels is not None
    keep, s = _scored_weights(r, b)
    if b.task == "binary":
        from xentcore.binary import entries  # local: only calibration needs p here

        p = entries(b.x, b.input_type, b.options.clip_eps).p
        assert b.labels.target is not None
        per_item = (p - b.labels.target) ** 2
    else:
        per_item = np.empty(b.n_items)
        for sl in chunk_rows(b.n_items, b.n_classes):
            p = _probabilities(b.x[sl].astype(np.float64), b.input_type)
            if b.labels.index is not None:
                p[np.arange(p.shape[0]), b.labels.index[sl]] -= 1.0
            else:
                assert b.labels.target is not None
                p -= b.labels.target[sl]
            per_item[sl] = rowsum64(p * p)
    weight = float(s[keep].sum())
    return float(np.dot(s[keep], per_item[keep]) / weight) if weight > 0 else None


def _probabilities(x: F64, input_type: str) -> F64:
    if input_type == "probabilities":
        return x.copy()
    if input_type == "log_probabilities":
        return np.exp(x)
    e: F64 = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _as_logits(b: Batch) -> F64:
    """The input as multiclass logits (binary as [0, z]); probabilities via their clipped log."""
    eps = b.options.clip_eps
    x = b.x.astype(np.float64)
    if b.task == "binary":
        if b.input_type == "logits":
            z = x
        elif b.input_type == "probabilities":
            p = np.clip(x, eps, 1 - eps)
            z = np.log(p) - np.log1p(-p)
        else:
            z = np.clip(x, np.log(eps), np.log1p(-eps))
            z = z - np.log(-np.expm1(z))
        return np.stack([np.zeros_like(z), z], axis=1)
    if b.input_type == "probabilities":
        return np.log(np.clip(x, eps, 1 - eps))
    return x


def _nll_derivatives(
    z: F64, q_index: npt.NDArray[np.int64] | None, q: F64 | None, s: F64, beta: float
) -> tuple[float, float]:
    """First and second derivative in beta of the weighted mean NLL of softmax(beta z)."""
    g = h = 0.0
    for sl in chunk_rows(z.shape[0], z.shape[1]):
        zc = z[sl]
        a = beta * zc
        a -= a.max(axis=1, keepdims=True)
        np.exp(a, out=a)
        a /= a.sum(axis=1, keepdims=True)
        ez = np.einsum("ij,ij->i", a, zc)
        ez2 = np.einsum("ij,ij->i", a, zc * zc)
        if q_index is not None:
            qz = zc[np.arange(zc.shape[0]), q_index[sl]]
        else:
            assert q is not None
            qz = np.einsum("ij,ij->i", q[sl], zc)
        g += float(np.dot(s[sl], ez - qz))
        h += float(np.dot(s[sl], np.maximum(ez2 - ez * ez, 0.0)))
    total = float(s.sum())
    return g / total, h / total


def optimal_temperature(
    z: F64,
    s: F64,
    *,
    index: npt.NDArray[np.int64] | None = None,
    target: F64 | None = None,
    max_iter: int = 100,
) -> float:
    """Temperature T > 0 minimising the weighted mean NLL of softmax(z / T).

    The NLL is convex in beta = 1 / T (its second derivative is a variance), so a Newton
    iteration safeguarded by a shrinking bracket (geometric bisection when Newton leaves it)
    converges from any start. Returns T in [1e-3, 1e3]; the bound when the optimum lies beyond
    (for example T -> 0 when every item is classified right with a margin).
    """
    lo, hi = BETA_MIN, BETA_MAX
    g_lo, _ = _nll_derivatives(z, index, target, s, lo)
    if g_lo >= 0:
        return 1.0 / lo
    g_hi, _ = _nll_derivatives(z, index, target, s, hi)
    if g_hi <= 0:
        return 1.0 / hi
    beta = 1.0
    for _ in range(max_iter):
        g, h = _nll_derivatives(z, index, target, s, beta)
        if g == 0:
            break
        lo, hi = (beta, hi) if g < 0 else (lo, beta)
        step = beta - g / h if h > 0 else -1.0
        beta_next = step if lo < step < hi else float(np.sqrt(lo * hi))
        if abs(beta_next - beta) <= 1e-12 * beta or hi / lo < 1 + 1e-12:
            beta = beta_next
            break
        beta = beta_next
    return 1.0 / beta


def _ece_of(r: ScoreResult, b: Batch, n_bins: int, strategy: str) -> tuple[BinStats, Bool]:
    keep, s = _scored_weights(r, b)
    assert r.top_confidence is not None and r.correct is not None
    stats = bin_stats(
        r.top_confidence[keep],
        r.correct[keep],
        n_bins=n_bins,
        strategy=strategy,
        weights=s[keep] if b.options.sample_weights is not None else None,
    )
    return stats, keep


def _check_binning(n_bins: Any, strategy: Any) -> None:
    if (
        isinstance(n_bins, bool)
        or not isinstance(n_bins, int | np.integer)
        or not 1 <= n_bins <= 10_000
    ):
        raise InputError(("n_bins",), f"expected an integer in [1, 10000], got {n_bins!r}")
    if strategy not in ("uniform", "quantile"):
        raise InputError(
            ("strategy",), f"{strategy!r} is not one of uniform, quantile", kind="enum"
        )


def _check_calibrated(b: Batch) -> None:
    """Calibration judges binary and multiclass top-label predictions, with labels."""
    if b.labels is None:
        raise InputError(("labels",), "calibration needs labels")
    if b.task == "multilabel":
        raise InputError(("task",), "calibration is for binary and multiclass tasks")
    if b.options.decision_threshold != 0.5:
        raise InputError(
            ("decision_threshold",),
            "calibration judges the top-label prediction (binary: p >= 0.5); leave it at 0.5",
        )


def _fit_temperature(
    b: Batch, r: ScoreResult, keep: Bool, n_bins: int, strategy: str
) -> tuple[float, float | None, float | None]:
    """``temperature``, ``nll_after`` and ``ece_after`` of the scored items (see calibration)."""
    assert b.labels is not None
    z = _as_logits(b)
    _, s = _scored_weights(r, b)
    index, target = b.labels.index, b.labels.target
    if b.task == "binary":
        assert target is not None
        index, target = None, np.stack([1.0 - target, target], axis=1)
    kept = np.flatnonzero(keep)
    t = optimal_temperature(
        z[kept],
        s[kept],
        index=None if index is None else index[kept],
        target=None if target is None else target[kept],
    )
    logits = replace(b.options, input_type="logits")
    scaled = replace(b, x=np.ascontiguousarray(_scaled(b, z, t)), options=logits)
    r_after = score_batch(scaled, _NO_FLAGS)
    ece_after, _ = calibration_error(_ece_of(r_after, scaled, n_bins, strategy)[0])
    return t, r_after.loss_mean, ece_after


def calibrate(
    batch: Batch,
    result: ScoreResult,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    fit_temperature: bool = False,
) -> CalibrationResult:
    """Calibration figures of a labelled binary or multiclass batch already scored.

    ``result`` is ``score_batch(batch, rules)`` (any flag rules: they do not enter the figures),
    so a caller that scored the batch does not score it again. See :func:`calibration` for the
    figures. Raises :class:`InputError` without labels, for multilabel, and for a
    ``decision_threshold`` other than 0.5.
    """
    _check_calibrated(batch)
    _check_binning(n_bins, strategy)
    stats, keep = _ece_of(result, batch, n_bins, strategy)
    ece, mce = calibration_error(stats)
    brier = _brier(batch, result)
    n_scored = int(np.count_nonzero(keep))
    out = CalibrationResult(
        ece,
        mce,
        brier,
        result.loss_mean,
        stats.rows(),
        n_scored,
        classwise_ece=_classwise_of(batch, result, keep, n_bins, strategy),
        rms_calibration_error=rms_calibration_error(stats),
        reliability_curve=_curve_of(batch, result, keep, n_bins, strategy),
    )
    if not fit_temperature or not keep.any():
        return out
    t, nll_after, ece_after = _fit_temperature(batch, result, keep, n_bins, strategy)
    return replace(out, temperature=t, nll_after=nll_after, ece_after=ece_after)


def calibration(
    predictions: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    fit_temperature: bool = False,
    **options: Any,
) -> CalibrationResult:
    """Calibration figures of a labelled binary or multiclass batch.

    Takes the input options of :func:`xentcore.score` (``task``, ``input_type``,
    ``class_weights``, ...). ``nll`` is ``score(...).loss_mean`` with those options; ``brier`` is
    ``mean_i sum_k (p_ik - y_ik)^2`` (binary: ``mean (p - y)^2``, soft targets as given). With
    ``fit_temperature``, ``temperature`` minimises the plain NLL of softmax(z / T) (binary:
    sigmoid(z / T)); ``nll_after`` and ``ece_after`` re-score z / T as logits with the same options.
    Probabilities are fitted through their clipped logs. The same as checking the batch,
    ``score_batch`` and :func:`calibrate`.

    ``rms_calibration_error`` (torchmetrics' ``norm="l2"``) uses the ECE's bins;
    ``classwise_ece`` (Kull et al. 2019) bins each class's probability with the same ``n_bins``
    and ``strategy``; ``reliability_curve`` (binary only) is scikit-learn's
    ``calibration_curve(y, p, n_bins=n_bins, strategy=strategy)`` with the item counts. See the
    module docstring for the formulas.

    >>> import xentcore as xc
    >>> c = xc.calibration([0.9, 0.8, 0.3, 0.6], [1, 1, 0, 0], n_bins=5)
    >>> round(c.ece, 4), round(c.brier, 4), [b["count"] for b in c.bins]
    (0.3, 0.125, [0, 0, 1, 2, 1])
    >>> round(c.rms_calibration_error, 4), c.reliability_curve["count"]
    (0.3518, [1, 1, 1, 1])
    """
    if labels is None:
        raise InputError(("labels",), "calibration needs labels")
    _check_binning(n_bins, strategy)
    b = check_batch(predictions, labels, ScoreOptions(**options))
    _check_calibrated(b)
    return calibrate(
        b,
        score_batch(b, _NO_FLAGS),
        n_bins=n_bins,
        strategy=strategy,
        fit_temperature=fit_temperature,
    )


def _positive_p(b: Batch, rows: npt.NDArray[np.intp]) -> F64:
    """p of the positive class of a binary batch's rows (unclipped), float64."""
    from xentcore.binary import entries  # local: only calibration needs p here

    return entries(b.x[rows], b.input_type, b.options.clip_eps).p


def _class_probabilities(b: Batch, rows: npt.NDArray[np.intp]) -> F64:
    """Probabilities of every class for the given rows (binary: [1 - p, p]), float64."""
    if b.task == "binary":
        p = _positive_p(b, rows)
        return np.stack([1.0 - p, p], axis=1)
    return _probabilities(b.x[rows].astype(np.float64, copy=False), b.input_type)


def _classwise_of(b: Batch, r: ScoreResult, keep: Bool, n_bins: int, strategy: str) -> float | None:
    """Classwise ECE of the scored items; uniform bins by chunks of rows (no N x K copy)."""
    assert r.true_class is not None
    kept = np.flatnonzero(keep)
    w, y = _scored_weights(r, b)[1][kept], r.true_class[kept]
    if strategy != "uniform":  # per-class quantiles need every row at once
        p = _class_probabilities(b, kept)
        return classwise_calibration_error(p, y, n_bins=n_bins, strategy=strategy, weights=w)
    total = float(w.sum())
    if kept.size == 0 or total <= 0:
        return None
    gaps = np.zeros(b.n_classes * n_bins)
    for sl in chunk_rows(kept.size, b.n_classes):
        gaps += _signed_class_gaps(_class_probabilities(b, kept[sl]), y[sl], w[sl], n_bins, None)
    return float(np.abs(gaps).sum() / (b.n_classes * total))


def _curve_of(
    b: Batch, r: ScoreResult, keep: Bool, n_bins: int, strategy: str
) -> dict[str, list[Any]] | None:
    """The positive-class reliability curve of a binary batch (None for multiclass)."""
    if b.task != "binary":
        return None
    assert r.true_class is not None
    kept = np.flatnonzero(keep)
    s = b.options.sample_weights
    return reliability_curve(
        _positive_p(b, kept),
        (r.true_class[kept] == 1).astype(np.float64),
        n_bins=n_bins,
        strategy=strategy,
        weights=None if s is None else s[kept],
    )


def _scaled(b: Batch, z: F64, t: float) -> F64:
    return z[:, 1] / t if b.task == "binary" else z / t
