"""Multiclass rows in one sweep: per-item loss, confidence, top-label confidence and prediction.

One pass over cache-sized row chunks computes everything ``score`` needs from an (N, K) array, so
the log-softmax is never materialised at full size. Two kernels:

* ``_logits_sparse``: logits with integer (or no) labels and no focal term, the common case and the
  hot path. With m = max_k z_k, s = sum_k exp(z_k - m) and delta = s - 1 (the sum without the
  argmax term, which is exactly 1), the log-partition is m + log1p(delta): the loss of a confident,
  correct item keeps its digits instead of rounding to 0, and |z| up to 1e300 stays finite.
  Where the C extension is built this is one call of the fused kernel (``xentcore/_fused.c``:
  one pass per row, online softmax, float64 shifts and sums, a vectorised exp; optionally
  split over ``threads`` by rows); otherwise numpy, by chunks, below. The numpy path's K = 2
  has a closed form, delta = exp(-|z_1 - z_0|), computed in float64 with no row reduction.
* ``_gathered``: probabilities or log-probabilities with class-index (or no) labels, no label
  smoothing, no focal term and a confidence read off one entry: the loss needs only log p_y, so
  only N values are clipped and logged (one argmax pass over the rows, the rest is O(N)).
* ``_general``: every other case (probabilities, log-probabilities, target distributions, focal
  loss), with explicit log p and p per chunk in float64.

Loss (the contract's section 2), with q' = (1 - e) q + e / K, w the class weights and f_k the focal
factor (1 - p_k)^gamma (1 when gamma = 0):  loss_i = -sum_k alpha_k w_k q'_k f_k log p_k, with
alpha_k = ``focal_alpha`` (one number for every class, or one per class as Keras'
``CategoricalFocalCrossentropy(alpha=[...])``; 1 when not given). Any focal option takes the
``_general`` path.

Every kernel reads its options (input type, clip_eps, confidence method, class weights, label
smoothing, focal gamma and alpha) from one checked :class:`~xentcore.types.ScoreOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import (
    CHUNK_ELEMENTS,
    chunk_rows,
    fused_ok,
    logits_rows,
    row_argmax_max,
    rowsum64,
)
from xentcore.rowstats import RowStats
from xentcore.types import F64, I64, ConfidenceMethod, FloatArray, ScoreOptions

__all__ = ["RowStats", "sweep"]

#: Rows per chunk of the gather path: its int64 / float64 scratch stays at 64 KiB.
_GATHER_ROWS = 8192


#: float32 rows with delta < K x this are redone in float64 (see ``_refine_small_losses``).
_REFINE_DELTA = 1e-7


def _confidence_from_delta(
    method: ConfidenceMethod,
    top: F64,
    delta: F64,
    second: F64 | None,
    entropy_dot: F64 | None,
    log_k: float,
) -> F64:
    """Confidence of logits rows from delta = s - 1 (s the shifted partition sum) and the
    top-label probability ``top`` = 1 / (1 + delta)."""
    if method == "margin":
        assert second is not None
        return top * -np.expm1(second)  # 1 - exp(second), which keeps its digits near a tie
    if method == "entropy":
        assert entropy_dot is not None
        entropy = np.log1p(delta) - entropy_dot * top  # H = log s - sum_k p_k (z_k - m)
        return np.clip(1.0 - entropy / log_k, 0.0, 1.0)  # rounding may step past [0, 1]
    return top


@dataclass
class _Partition:
    """Per-row terms of the log-partition of one chunk of logits rows (float64, length n).

    m = max_k z_k (its argmax goes into the caller's ``am``), delta = sum over k != argmax of
    exp(z_k - m); ``second`` = (second largest z) - m for ``margin``; ``dot`` =
    sum_k exp(z_k - m)(z_k - m) for ``entropy``; ``tilt`` = sum_k (e w_k / K)(z_k - m) for label
    smoothing.
    """

    m: F64
    delta: F64
    second: F64 | None = None
    dot: F64 | None = None
    tilt: F64 | None = None


class _WideRows:
    """The partition terms of rows of any width K >= 2, in the input's dtype with float64 sums.

    Scratch buffers for one chunk are allocated once and reused across chunks.
    """

    def __init__(self, rows: int, k: int, dtype: Any, method: ConfidenceMethod) -> None:
        self.tops = np.empty(rows)
        self.buf = np.empty(rows * k, dtype=dtype)
        self.ebuf = np.empty_like(self.buf) if method == "entropy" else None
        self.method = method

    def terms(self, z: FloatArray, am: I64, smooth_w: FloatArray | None) -> _Partition:
        m64 = self.tops[: z.shape[0]]
        row_argmax_max(z, am, m64)
        m = m64 if z.dtype == np.float64 else m64.astype(z.dtype)  # exact: m is one of z's values
        sh = np.subtract(z, m[:, None], out=self.buf[: z.size].reshape(z.shape))
        tilt = sh @ smooth_w if smooth_w is not None else None
        second = None
        if self.method == "margin":
            r = np.arange(z.shape[0])
            sh[r, am] = -np.inf
            second = sh.max(axis=1).astype(np.float64)
            sh[r, am] = 0
        e = sh if self.ebuf is None else self.ebuf[: z.size].reshape(z.shape)
        np.exp(sh, out=e)
        dot = rowsum64(e * sh) if self.ebuf is not None else None
        delta = rowsum64(e, skip=am)  # the argmax term is exactly exp(0) = 1: the rest, for log1p
        tilt64 = None if tilt is None else tilt.astype(np.float64)
        return _Partition(m64, delta, second, dot, tilt64)


def _pair_terms(z: FloatArray, am: I64, smooth_w: FloatArray | None) -> _Partition:
    """The partition terms of K = 2 rows in closed form, in float64 (exact for float32 input).

    With a = |z_1 - z_0|: delta = exp(-a), the other entry's shift is -a, so the loss is
    softplus-like m - z_y + log1p(exp(-a)) with no row reduction at all.
    """
    z0, z1 = z[:, 0].astype(np.float64), z[:, 1].astype(np.float64)
    np.greater(z1, z0, out=am)  # ties go to class 0, as argmax
    m = np.maximum(z0, z1)
    neg_a = np.subtract(np.minimum(z0, z1), m, out=z0)  # -|z_1 - z_0| <= 0
    delta = np.exp(neg_a)
    tilt: F64 | None = None
    if smooth_w is not None:  # only the other class's shift is nonzero (smooth_w is float64)
        tilt = (neg_a * smooth_w[1 - am]).astype(np.float64, copy=False)
    return _Partition(m, delta, neg_a, delta * neg_a, tilt)


def _smoothing_weights(o: ScoreOptions, k: int, dtype: Any) -> tuple[FloatArray | None, float]:
    """(e w_k / K per class in ``dtype``, e sum_k w_k / K); (None, 0) without smoothing."""
    if o.label_smoothing <= 0:
        return None, 0.0
    w = np.ones(k) if o.class_weights is None else o.class_weights
    smooth_w: FloatArray = (w * (o.label_smoothing / k)).astype(dtype, copy=False)
    return smooth_w, float(w.sum()) * o.label_smoothing / k


def _logits_fused(z: FloatArray, labels: I64 | None, o: ScoreOptions, threads: int) -> RowStats:
    """Logits with class-index (or no) labels, gamma = 0, in the fused C kernel (which reads
    contiguous native arrays: the copies below are no-ops for checked input)."""
    weights, smoothing = None, 0.0
    if labels is not None:
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        smoothing = o.label_smoothing
        if o.class_weights is not None:
            weights = np.ascontiguousarray(o.class_weights, dtype=np.float64)
    predicted, top, conf, loss = logits_rows(
        z, labels, weights, smoothing, o.confidence, threads=threads
    )
    return RowStats(predicted, conf, top, loss, 0)


def _logits_sparse(
    z_all: FloatArray, labels: I64 | None, o: ScoreOptions, threads: int = 1
) -> RowStats:
    """Logits with class-index (or no) labels, gamma = 0: the fast path."""
    if fused_ok(z_all):
        return _logits_fused(z_all, labels, o, threads)
    n, k = z_all.shape
    method, weights, smoothing = o.confidence, o.class_weights, o.label_smoothing
    predicted, top_all = np.empty(n, np.int64), np.empty(n)
    # max_probability is the top-label confidence itself: one array, not two N-sized copies
    conf = top_all if method == "max_probability" else np.empty(n)
    loss = None if labels is None else np.empty(n)
    rows_max = max(1, CHUNK_ELEMENTS // k)
    wide = None if k == 2 else _WideRows(min(n, rows_max), k, z_all.dtype, method)
    # float32 rows of width K > 2 whose loss is too small for float32 shifts: redone at the end
    refine: list[npt.NDArray[np.intp]] | None = (
        [] if wide is not None and z_all.dtype != np.float64 and labels is not None else None
    )
    # e w_k / K: in the input's dtype for wide rows, float64 for pairs
    smooth_w, smooth_total = (
        (None, 0.0)
        if labels is None
        else _smoothing_weights(o, k, z_all.dtype if wide is not None else np.float64)
    )
    log_k = float(np.log(k))
    base = np.arange(0, min(n, rows_max) * k, k)  # rows' first flat index: np.take beats z[r, y]
    for sl in chunk_rows(n, k):
        z, am = z_all[sl], predicted[sl]
        t = wide.terms(z, am, smooth_w) if wide is not None else _pair_terms(z, am, smooth_w)
        if refine is not None:
            refine.append(np.flatnonzero(t.delta < _REFINE_DELTA * k) + sl.start)
        top = np.divide(1.0, 1.0 + t.delta, out=top_all[sl])
        if method not in ("true_class", "max_probability"):
            conf[sl] = _confidence_from_delta(method, top, t.delta, t.second, t.dot, log_k)
        if labels is None or loss is None:
            continue
        y = labels[sl]
        log_s = np.log1p(t.delta)
        # m - z_y in float64: exact for float32 input, and no overflow for |z| near 1e300
        nll = (t.m - np.take(z.reshape(-1), base[: z.shape[0]] + y)) + log_s
        if method == "true_class":
            conf[sl] = np.exp(-nll)
        if weights is not None:
            nll *= weights[y]
        if t.tilt is not None:
            nll *= 1.0 - smoothing
            nll += smooth_total * log_s - t.tilt
        loss[sl] = nll
    out = RowStats(predicted, conf, top_all, loss, 0)
    if refine is not None and labels is not None:
        _refine_small_losses(z_all, labels, o, np.concatenate(refine), out)
    return out


def _refine_small_losses(
    z_all: FloatArray, labels: I64, o: ScoreOptions, rows: npt.NDArray[np.intp], out: RowStats
) -> None:
    """Redo in float64 the float32 ``rows`` whose loss is too small for float32 shifts.

    float32 rounds z_k - m to a relative 2^-24, which exp turns into a relative error of
    |z_k - m| 2^-24 in each term of delta. Over a row, the delta-weighted mean of |z_k - m| is
    at most -log(delta / K) (equal terms maximise it), so rows with delta >= K 1e-7 keep every
    loss within 16.2 x 6e-8 < 1e-6 relative. Rows below that (confident items, whose loss is
    about delta) are recomputed from the same values in float64.
    """
    if rows.size == 0:
        return
    exact = _logits_sparse(z_all[rows].astype(np.float64), labels[rows], o)
    assert out.loss is not None and exact.loss is not None
    assert out.top_confidence is not None and exact.top_confidence is not None
    out.loss[rows] = exact.loss
    out.top_confidence[rows] = exact.top_confidence
    if out.confidence is not out.top_confidence:
        out.confidence[rows] = exact.confidence


def _log_p(x: F64, input_type: str, eps: float) -> tuple[F64, F64, int]:
    """(log p, p used for confidence, number of values clipped) for one float64 chunk."""
    if input_type == "logits":
        m = x.max(axis=1, keepdims=True)
        log_p = x - m
        p = np.exp(log_p)
        s = p.sum(axis=1, keepdims=True)
        log_p -= np.log(s)
        p /= s
        return log_p, p, 0
    if input_type == "probabilities":
        clipped = np.clip(x, eps, 1.0 - eps)
        n_clipped = int(np.count_nonzero(clipped != x))
        return np.log(clipped), x, n_clipped
    lo, hi = np.log(eps), np.log1p(-eps)
    clipped = np.clip(x, lo, hi)
    return clipped, np.exp(x), int(np.count_nonzero(clipped != x))


def _confidence_from_p(
    method: ConfidenceMethod, p: F64, log_p: F64, pred: I64, log_k: float
) -> F64:
    r = np.arange(p.shape[0])
    if method == "margin":
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return np.abs(top2[:, 1] - top2[:, 0])
    if method == "entropy":
        entropy: F64 = -np.einsum("ij,ij->i", p, log_p)
        return np.clip(1.0 - entropy / log_k, 0.0, 1.0)
    top: F64 = p[r, pred]
    return top


def _general(x_all: FloatArray, index: I64 | None, target: F64 | None, o: ScoreOptions) -> RowStats:
    """Every case but the fast paths; explicit float64 log p per chunk."""
    n, k = x_all.shape
    method, smoothing, gamma = o.confidence, o.label_smoothing, o.focal_gamma
    has_loss = index is not None or target is not None
    predicted, confidence, top = np.empty(n, np.int64), np.empty(n), np.empty(n)
    loss_all = np.empty(n) if has_loss else None
    n_clipped = 0
    w = np.ones(k) if o.class_weights is None else o.class_weights
    # Keras' per-class alpha multiplies each class's term, like a class weight (a scalar alpha
    # multiplies the sum: the same value, kept as it was)
    alpha_k = o.focal_alpha if isinstance(o.focal_alpha, np.ndarray) else None
    log_k = float(np.log(k))
    for sl in chunk_rows(n, k):
        x = x_all[sl].astype(np.float64, copy=False)
        r = np.arange(x.shape[0])
        log_p, p, clipped = _log_p(x, o.input_type, o.clip_eps)
        pred = x.argmax(axis=1)
        predicted[sl] = pred
        top[sl] = p[r, pred]
        if method != "true_class":
            confidence[sl] = _confidence_from_p(method, p, log_p, pred, log_k)
        if loss_all is None:
            continue
        n_clipped += clipped
        if index is not None:
            q = np.zeros_like(x)
            q[r, index[sl]] = 1.0
            true_p = p[r, index[sl]]
        else:
            assert target is not None
            q = target[sl]
            true_p = p[r, pred if method != "true_class" else q.argmax(axis=1)]
        if method == "true_class":
            confidence[sl] = true_p
        coef = q * (1.0 - smoothing) + smoothing / k if smoothing > 0 else q.copy()
        coef *= w
        if gamma > 0:
            coef *= (-np.expm1(log_p)) ** gamma  # (1 - p_k)^gamma with p_k as used in the loss
        if alpha_k is not None:
            coef *= alpha_k
        loss = -np.einsum("ij,ij->i", coef, log_p)
        if alpha_k is None and o.focal_alpha is not None:
            loss *= o.focal_alpha
        loss_all[sl] = loss
    return RowStats(predicted, confidence, top, loss_all, n_clipped)


def _gather_nll(
    x: FloatArray, labels: I64, input_type: str, eps: float, loss: F64, true_p: F64 | None
) -> int:
    """Write -log p_y (clipped by eps) into ``loss`` and p_y as given into ``true_p``.

    Reads one entry per row: row chunks with small scratch buffers reused across chunks, every
    result written in place: fresh N-sized temporaries cost a page fault per 4 KiB on first
    touch, which on some machines costs more than the arithmetic itself. Returns how many
    values were clipped.
    """
    n, k = x.shape
    rows = min(n, _GATHER_ROWS)
    base = np.arange(0, rows * k, k)  # flat index of each row's first entry: np.take beats x[r, c]
    index = np.empty(rows, np.int64)
    given = np.empty(rows, x.dtype)  # np.take writes only into its input's dtype
    lo, hi = (eps, 1.0 - eps) if input_type == "probabilities" else (np.log(eps), np.log1p(-eps))
    n_clipped = 0
    for start in range(0, n, rows):
        flat = x[start : start + rows].reshape(-1)
        m = flat.size // k
        at, idx, g, out = slice(start, start + m), index[:m], given[:m], loss[start : start + m]
        np.add(base[:m], labels[at], out=idx)
        np.take(flat, idx, out=g)
        if true_p is not None:
            true_p[at] = g
        np.clip(g, lo, hi, out=out)
        n_clipped += m - int(np.count_nonzero(out == g))
        if input_type == "probabilities":
            np.log(out, out=out)
        np.negative(out, out=out)
    return n_clipped


def _gathered(x: FloatArray, labels: I64 | None, o: ScoreOptions) -> RowStats:
    """Probabilities / log-probabilities, class-index labels, e = 0, gamma = 0: O(N) logs.

    One pass over the N x K values finds each row's argmax and maximum; the loss reads only
    p_y, so only N values are clipped and logged.
    """
    n = x.shape[0]
    predicted, top = np.empty(n, np.int64), np.empty(n)
    row_argmax_max(x, predicted, top)
    true_p = np.empty(n) if labels is not None and o.confidence == "true_class" else None
    loss, n_clipped = None, 0
    if labels is not None:
        loss = np.empty(n)
        n_clipped = _gather_nll(x, labels, o.input_type, o.clip_eps, loss, true_p)
        if o.class_weights is not None:
            loss *= o.class_weights[labels]
    if o.input_type == "log_probabilities":
        np.exp(top, out=top)
        if true_p is not None:
            np.exp(true_p, out=true_p)
    return RowStats(predicted, top if true_p is None else true_p, top, loss, n_clipped)


def sweep(
    x: FloatArray,
    options: ScoreOptions,
    *,
    index: I64 | None = None,
    target: F64 | None = None,
    threads: int = 1,
) -> RowStats:
    """Per-item loss, confidence, top-label confidence and argmax of multiclass rows.

    ``x``: checked (N, K) float32 / float64 predictions of ``options.input_type``; ``options``:
    the checked options (``confidence``, ``clip_eps``, ``class_weights``, ``label_smoothing``,
    ``focal_gamma``, ``focal_alpha`` are read). ``index``: class indices (ignored items given any
    valid index; the caller masks them); ``target``: (N, K) target distributions; both None: no
    loss. ``n_clipped`` counts the input values clipped to [eps, 1 - eps] (or their logs) on the
    way to a loss. ``threads``: rows split over that many threads where the fused kernel runs
    (logits with class-index or no labels, no focal term); every other path uses one.
    """
    o = options
    if target is None and o.focal_gamma == 0 and o.focal_alpha is None:
        if o.input_type == "logits":
            return _logits_sparse(x, index, o, threads)
        if o.label_smoothing == 0 and o.confidence in ("max_probability", "true_class"):
            return _gathered(x, index, o)
    return _general(x, index, target, o)
