"""Calibrators fitted on a calibration set: temperature scaling and Platt scaling.

Both are fitted by plain maximum likelihood (API.md section 10), no target smoothing:

* temperature (multiclass; Guo, Pleiss, Sun & Weinberger 2017): ``p' = softmax(log p / T)``,
  T > 0 minimising the mean NLL ``-(1/N) sum_i log softmax(log p_i / T)_{y_i}``;
* Platt (binary; Platt 1999): ``p' = sigmoid(a logit(p) + b)``, (a, b) minimising the mean
  binary NLL of p' against y, logit(p) taken of p clipped to [eps, 1 - eps].

Temperature scaling keeps the argmax and the ranking of every row; Platt scaling with a > 0
keeps the ranking of items. Platt with b = 0 and a = 1 / T is the binary temperature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xentcore.calibration import BETA_MAX, BETA_MIN, optimal_temperature
from xentcore.errors import InputError
from xentcore.types import DEFAULT_EPS, F64, I64
from xentcore.validate.arrays import as_array, as_float, check_finite, first_true, fmt
from xentcore.validate.options import scalar

__all__ = [
    "CALIBRATOR_TASKS",
    "T_MAX",
    "T_MIN",
    "apply_platt",
    "apply_temperature",
    "calibrated_logits",
    "fit_calibrator",
    "fit_platt",
    "fit_temperature",
]

#: The task each calibration method fits.
CALIBRATOR_TASKS = {"temperature": "multiclass", "platt": "binary"}
#: The range a fitted temperature is confined to (the bound when the optimum lies beyond).
T_MIN, T_MAX = 1.0 / BETA_MAX, 1.0 / BETA_MIN

_MAX_NEWTON = 100


# ---------------------------------------------------------------------------------------------
# Input checks


def _matrix(value: Any, field: str) -> F64:
    x = as_float(value, field)
    if x.ndim != 2 or x.shape[1] < 2 or x.shape[0] < 1:
        raise InputError((field,), f"expected shape [N >= 1, K >= 2], got {list(x.shape)}")
    out: F64 = np.ascontiguousarray(x, dtype=np.float64)
    check_finite(out, field)
    return out


def _class_index(value: Any, n: int, k: int) -> I64:
    arr = as_array(value, "labels")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(
            ("labels",), f"expected {n} class indices (one per row), got shape {list(arr.shape)}"
        )
    if arr.dtype.kind not in "iu":
        raise InputError(
            ("labels",), f"expected integer class indices in [0, {k})", kind="int_type"
        )
    bad = (arr < 0) | (arr >= k)
    if bad.any():
        i = first_true(bad)
        raise InputError(("labels", i), f"class {int(arr[i])} is outside [0, {k})")
    return arr.astype(np.int64, copy=False)


def _unit_vector(value: Any, field: str, n: int | None = None) -> F64:
    """1-D finite float64 values in [0, 1] (``n`` of them when given)."""
    arr = as_array(value, field)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    x = as_float(arr, field).astype(np.float64, copy=False)
    if x.ndim != 1 or (n is not None and x.shape[0] != n):
        want = "a 1-D array" if n is None else f"{n} values (one per prediction)"
        raise InputError((field,), f"expected {want}, got shape {list(x.shape)}")
    check_finite(x, field)
    bad = (x < 0) | (x > 1)
    if bad.any():
        i = first_true(bad)
        raise InputError((field, i), f"{fmt(x[i])} is outside [0, 1]")
    return x


def _temperature(value: Any) -> float:
    return scalar(value, "temperature", low=0.0, low_open=True)


def _eps(value: Any) -> float:
    return scalar(value, "clip_eps", low=0.0, high=0.5, low_open=True, high_open=True)


# ---------------------------------------------------------------------------------------------
# Temperature


def fit_temperature(log_probs: Any, labels: Any) -> float:
    """Temperature T > 0 minimising the mean NLL of ``softmax(log_probs / T)`` against labels.

    ``NLL(T) = -(1/N) sum_i [x_{i,y_i} / T - logsumexp_k(x_ik / T)]`` is convex in beta = 1 / T
    (its second derivative is a variance), so a Newton iteration safeguarded by a shrinking
    bracket finds the optimum (:func:`xentcore.calibration.optimal_temperature`). Logits work
    as well as log-probabilities: softmax is invariant to a shift of each row.

    Parameters
    ----------
    log_probs : array_like of float, shape (N, K), K >= 2
        Log-probabilities (or logits) of the calibration set, finite.
    labels : array_like of int, shape (N,)
        True class indices in [0, K).

    Returns
    -------
    float
        T in [``T_MIN``, ``T_MAX``] = [0.001, 1000]. The optimum lies at a bound in degenerate
        sets: every item right with a margin (the NLL keeps falling as T -> 0: returns 0.001),
        or predictions no better than uniform (T -> infinity: returns 1000).

    >>> z = [[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]]
    >>> round(fit_temperature(z, [0, 1, 1, 0]), 4)  # 3 of 4 right: p' = 0.75 needs T = 2 / ln 3
    1.8205
    """
    z = _matrix(log_probs, "log_probs")
    y = _class_index(labels, z.shape[0], z.shape[1])
    return optimal_temperature(z, np.ones(z.shape[0]), index=y)


def apply_temperature(log_probs_or_logits: Any, temperature: float) -> F64:
    """``log softmax(x / T)`` row by row: the calibrated log-probabilities, shape (N, K).

    Through log-sum-exp (max subtracted), so no row overflows; ``np.exp`` of the result gives
    the probabilities.

    >>> apply_temperature([[0.0, 2.0]], 2.0).round(4).tolist()
    [[-1.3133, -0.3133]]
    """
    t = _temperature(temperature)
    a = _matrix(log_probs_or_logits, "log_probs") / t
    a -= a.max(axis=1, keepdims=True)
    a -= np.log(np.exp(a).sum(axis=1, keepdims=True))
    return a


# ---------------------------------------------------------------------------------------------
# Platt


def _logit(p: F64, eps: float) -> F64:
    q = np.clip(p, eps, 1.0 - eps)
    out: F64 = np.log(q) - np.log1p(-q)
    return out


def _check_overlap(x: F64, y: F64) -> None:
    """Refuse data with no finite maximum-likelihood (a, b).

    The MLE exists exactly when neither side can be separated by a threshold on x: with P the
    items carrying positive mass (y > 0) and Q those carrying negative mass (y < 1), it needs
    min(P) < max(Q) and min(Q) < max(P). Otherwise the likelihood keeps growing as |a| -> inf
    (or b -> +-inf when one class is missing).
    """
    pos, neg = x[y > 0], x[y < 1]
    if pos.size == 0 or neg.size == 0:
        which = "positive" if pos.size == 0 else "negative"
        raise InputError(
            ("labels",), f"Platt scaling needs both classes; no {which} label (b -> infinity)"
        )
    if not (pos.min() < neg.max() and neg.min() < pos.max()):
        raise InputError(
            ("labels",),
            "Platt scaling has no finite fit: a threshold on p separates the classes "
            "(a -> infinity); the calibration set is classified perfectly by its ranking",
        )


def _platt_nll(x: F64, y: F64, a: float, b: float) -> float:
    eta = a * x + b
    # -[y log s(eta) + (1 - y) log(1 - s(eta))] = softplus(eta) - y eta, softplus via logaddexp
    return float(np.mean(np.logaddexp(0.0, eta) - y * eta))


def _newton_step(x: F64, y: F64, a: float, b: float) -> tuple[F64, F64]:
    """Gradient and Newton direction of the mean NLL at (a, b)."""
    s = np.exp(-np.logaddexp(0.0, -(a * x + b)))  # sigmoid, without overflow
    r, w = s - y, s * (1.0 - s)
    grad = np.array([np.mean(r * x), np.mean(r)])
    hess = np.array([[np.mean(w * x * x), np.mean(w * x)], [np.mean(w * x), np.mean(w)]])
    try:
        return grad, np.linalg.solve(hess, grad)
    except np.linalg.LinAlgError:  # numerically singular: fall back to the gradient
        return grad, grad


def _fit_ab(x: F64, y: F64) -> tuple[float, float]:
    """Damped Newton from (1, 0), the identity map; the NLL is strictly convex in (a, b)."""
    a, b = 1.0, 0.0
    f = _platt_nll(x, y, a, b)
    for _ in range(_MAX_NEWTON):
        grad, step = _newton_step(x, y, a, b)
        t, decrease = 1.0, float(grad @ step)
        while t > 1e-10:  # backtracking (Armijo) line search
            a_new, b_new = a - t * step[0], b - t * step[1]
            f_new = _platt_nll(x, y, a_new, b_new)
            if f_new <= f - 1e-4 * t * decrease:
                break
            t *= 0.5
        else:
            break  # no decrease representable: at the optimum to float precision
        done = abs(a_new - a) <= 1e-13 * (1 + abs(a)) and abs(b_new - b) <= 1e-13 * (1 + abs(b))
        a, b, f = a_new, b_new, f_new
        if done:
            break
    return float(a), float(b)


def fit_platt(p: Any, y: Any, *, eps: float = DEFAULT_EPS) -> tuple[float, float]:
    """Platt scaling (a, b) of binary probabilities by plain maximum likelihood.

    With x_i = logit(clip(p_i, eps, 1 - eps)), minimises the mean binary NLL of
    ``sigmoid(a x_i + b)`` against y_i: a logistic regression of y on logit(p) with no penalty,
    solved by damped Newton (a strictly convex problem: converges in a few steps).

    This differs from scikit-learn's ``CalibratedClassifierCV(method="sigmoid")`` in three ways:
    it fits on the classifier's ``decision_function`` (here: logit p); it uses Platt's smoothed
    targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` instead of 0 and 1 (here: none); and it
    writes ``1 / (1 + exp(A f + B))``, so A = -a, B = -b.

    Parameters
    ----------
    p : array_like of float, shape (N,)
        Predicted probabilities of the positive class, in [0, 1].
    y : array_like, shape (N,)
        Targets in [0, 1]: 0/1 (or booleans), soft targets allowed.
    eps : float
        The clip of p before its logit (the batch's ``clip_eps``).

    Returns
    -------
    (a, b) : tuple of float

    Raises
    ------
    InputError
        Invalid p or y; only one class (b would diverge); or classes separated by p (every
        positive ranked above every negative, or the reverse: a would diverge). A calibration
        set the model ranks perfectly has no finite Platt fit; gather more data or keep p.

    >>> a, b = fit_platt([0.9, 0.8, 0.7, 0.6, 0.4, 0.3], [1, 1, 0, 1, 0, 0])
    >>> round(a, 4), round(b, 4)
    (2.3463, -1.3914)
    """
    eps = _eps(eps)
    probs = _unit_vector(p, "predictions")
    target = _unit_vector(y, "labels", probs.shape[0])
    x = _logit(probs, eps)
    _check_overlap(x, target)
    return _fit_ab(x, target)


def apply_platt(p: Any, a: float, b: float, *, eps: float = DEFAULT_EPS) -> F64:
    """``sigmoid(a logit(clip(p, eps, 1 - eps)) + b)``, elementwise, shape of p (1-D).

    >>> apply_platt([0.5, 0.8], 2.0, 0.0).round(4).tolist()
    [0.5, 0.9412]
    """
    a_, b_ = scalar(a, "a"), scalar(b, "b")
    eta = a_ * _logit(_unit_vector(p, "predictions"), _eps(eps)) + b_
    out: F64 = np.exp(-np.logaddexp(0.0, -eta))
    return out


# ---------------------------------------------------------------------------------------------
# Applying a fitted calibrator to a batch


def calibrated_logits(
    x: Any, *, input_type: str, method: str, temperature: float = 1.0, a: float = 1.0,
    b: float = 0.0, eps: float = DEFAULT_EPS,
) -> F64:  # fmt: skip
    """The logits of checked predictions ``x`` after a fitted calibrator: scoring them as
    ``input_type="logits"`` gives the calibrated probabilities.

    - ``temperature`` (multiclass, (N, K)): ``log p / T``. Logits are log-probabilities up to
      a per-row shift, which the softmax ignores, so they are divided as they are;
      probabilities are clipped to [eps, 1] before the log (as scoring clips them).
    - ``platt`` (binary, (N,)): ``a logit(p) + b``: logits as they are, probabilities clipped
      to [eps, 1 - eps], log-probabilities through ``log p - log(1 - p)``.
    """
    v = np.asarray(x, dtype=np.float64)
    if method == "temperature":
        if input_type == "probabilities":
            v = np.log(np.clip(v, eps, 1.0))
        out: F64 = v / _temperature(temperature)
        return out
    if method != "platt":
        raise ValueError(f"unknown calibration method {method!r}")
    if input_type == "probabilities":
        z = _logit(v, eps)
    elif input_type == "log_probabilities":
        z = v - np.log(-np.expm1(np.minimum(v, -np.finfo(np.float64).tiny)))
    else:
        z = v
    out = scalar(a, "a") * z + scalar(b, "b")
    return out


def _mean_nll_multiclass(log_p: F64, y: I64) -> float:
    return float(-log_p[np.arange(y.size), y].mean())


def _mean_nll_binary(p: F64, y: F64, eps: float) -> float:
    q = np.clip(p, eps, 1.0 - eps)
    return float(-(y * np.log(q) + (1.0 - y) * np.log1p(-q)).mean())


def fit_calibrator(
    method: str, rows: Any, labels: Any, *, eps: float = DEFAULT_EPS
) -> dict[str, Any]:
    """Fit ``method`` on kept rows and labels; returns its parameters (``temperature``, or
    ``a`` and ``b``), ``n_calibration`` and the mean NLL before and after (``nll_before``,
    ``nll_after``) on the same items.

    ``temperature``: rows are (N, K) log-probabilities, labels class indices
    (:func:`fit_temperature`); ``platt``: rows are (N,) probabilities of class 1, labels 0/1
    (:func:`fit_platt`). InputError (location ``labels``) when no finite fit exists.
    """
    if method == "temperature":
        log_p = _matrix(rows, "rows")
        y = _class_index(labels, log_p.shape[0], log_p.shape[1])
        t = fit_temperature(log_p, y)
        after = apply_temperature(log_p, t)
        return {
            "temperature": t,
            "n_calibration": int(y.size),
            "nll_before": _mean_nll_multiclass(log_p, y),
            "nll_after": _mean_nll_multiclass(after, y),
        }
    if method != "platt":
        raise ValueError(f"unknown calibration method {method!r}")
    p = _unit_vector(rows, "rows")
    truth = _unit_vector(labels, "labels", p.size)
    a, b = fit_platt(p, truth, eps=eps)
    return {
        "a": a,
        "b": b,
        "n_calibration": int(p.size),
        "nll_before": _mean_nll_binary(p, truth, eps),
        "nll_after": _mean_nll_binary(apply_platt(p, a, b, eps=eps), truth, eps),
    }
