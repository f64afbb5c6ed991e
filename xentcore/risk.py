"""Flags with a guarantee: risk-controlling confidence thresholds and the risk-coverage curve.

A policy accepts an item when its confidence c >= t and flags it otherwise. ``risk_control``
fits t on a labelled calibration set so that the error rate among accepted items of future,
exchangeable items is at most ``alpha`` with probability at least 1 - ``delta`` over the draw of
the calibration set (selective classification with guaranteed risk: Geifman & El-Yaniv 2017;
Learn-then-Test: Angelopoulos, Bates, Candès, Jordan & Lei 2021). API.md section 10.

The procedure, for n calibration items with confidences c_i and errors e_i = 1 - correct_i:

1. Candidates are the distinct confidences u_1 > u_2 > ... > u_m (accept c >= u_j); candidate j
   accepts n_j = #{c_i >= u_j} items with k_j = sum of their errors.
2. The one-sided (1 - delta) Clopper-Pearson upper bound of the accepted error rate is
   ``U(k, n) = Beta^-1(1 - delta; k + 1, n - k)`` (1 when k = n). By the duality of the exact
   binomial test, ``U(k, n) <= alpha`` exactly when ``P[Binomial(n, alpha) <= k] <= delta``: the
   p-value of H_j: "risk(u_j) > alpha" is at most delta.
3. Candidates whose n_j is too small for U(0, n_j) <= alpha (even zero errors would not pass:
   n_j < log(delta) / log(1 - alpha)) are skipped; this depends on the confidences only, never
   on the labels, so the order of the sequence below is fixed before the labels are looked at.
4. The remaining candidates are tested from the strictest (largest u_j) down; testing stops at
   the first whose bound exceeds alpha, and the threshold is the last one that passed. Fixed-
   sequence testing controls the family-wise error at delta without a multiple-testing
   correction (Learn-then-Test's fixed-sequence procedure), so P[risk(t) > alpha] <= delta.
5. Fewer than ``min_calibration`` items, or no candidate passing: the policy is infeasible and
   flags every item (``threshold`` None).

``risk_coverage`` is the curve behind it: per distinct confidence, the coverage n_j / n, the
empirical risk k_j / n_j and its pointwise bound U(k_j, n_j), and the area under the
risk-coverage curve (AURC; Geifman, Uziel & El-Yaniv 2019).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.errors import InputError
from xentcore.types import F64, I64, Bool
from xentcore.validate.arrays import as_array, as_float, check_finite, first_true, fmt
from xentcore.validate.options import scalar

__all__ = [
    "METHOD",
    "RiskCoverage",
    "RiskPolicyFit",
    "binomial_tail_passes",
    "clopper_pearson_upper",
    "risk_control",
    "risk_coverage",
]

#: The ``method`` of every fitted policy: fixed-sequence testing with exact binomial bounds.
METHOD = "fixed_sequence_clopper_pearson"


# ---------------------------------------------------------------------------------------------
# Exact binomial bounds
#
# _SCIPY: scipy.special is imported inside the two functions that use it, not at the top: it
# would double the time of `import xentcore` (about 0.17 s of 0.33 s, measured) for every
# process that never fits a policy.


def clopper_pearson_upper(errors: Any, n: Any, *, delta: float) -> F64:
    """One-sided (1 - delta) Clopper-Pearson upper bound of an error rate, elementwise.

    ``U(k, n) = Beta^-1(1 - delta; k + 1, n - k)`` for k < n (scipy's ``beta.ppf(1 - delta,
    k + 1, n - k)``, computed as the complemented inverse ``betainccinv(k + 1, n - k, delta)``,
    which keeps its precision for a small delta), and 1 when k = n (n = 0 included: nothing
    observed bounds nothing).

    >>> clopper_pearson_upper([0, 2], [10, 10], delta=0.1).round(4).tolist()
    [0.2057, 0.4496]
    """
    from scipy.special import betainccinv  # type: ignore[import-untyped]  # (local: _SCIPY)

    k = np.asarray(errors, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    full = k >= m
    # Beta(k + 1, 0) is undefined when k = n: any argument > 0 there, replaced by 1 below.
    ub = betainccinv(k + 1.0, np.where(full, 1.0, m - k), delta)
    return np.asarray(np.where(full, 1.0, ub), dtype=np.float64)


def binomial_tail_passes(errors: Any, n: Any, *, alpha: float, delta: float) -> Bool:
    """Whether ``U(k, n) <= alpha``, through its dual ``P[Binomial(n, alpha) <= k] <= delta``.

    The binomial CDF is the regularized incomplete beta ``I_{1 - alpha}(n - k, k + 1)``: one
    forward evaluation (about 5x cheaper than the inverse of :func:`clopper_pearson_upper`), so
    a fit tests every candidate without inverting. k = n never passes (U = 1 > alpha).
    """
    from scipy.special import betainc  # (local: _SCIPY)

    k = np.asarray(errors, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    full = k >= m
    cdf = betainc(np.where(full, 1.0, m - k), k + 1.0, 1.0 - alpha)
    return np.asarray(~full & (cdf <= delta), dtype=np.bool_)


def _min_accepted(alpha: float, delta: float) -> int:
    """The fewest accepted items that can pass: min n with U(0, n) <= alpha.

    U(0, n) = 1 - delta^(1/n), so n >= log(delta) / log(1 - alpha); the estimate is then
    settled with :func:`binomial_tail_passes` itself, so a candidate with zero errors is
    tested exactly when it passes (the skip and the test never disagree by a rounding).
    """
    n = max(1, math.ceil(math.log(delta) / math.log1p(-alpha)))
    while n > 1 and binomial_tail_passes(0, n - 1, alpha=alpha, delta=delta):
        n -= 1
    while not binomial_tail_passes(0, n, alpha=alpha, delta=delta):
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class RiskPolicyFit:
    """A fitted risk-controlling policy (API.md section 10's figures; :meth:`to_dict`).

    ``threshold``: accept items with confidence >= threshold, flag the rest; None when
    infeasible or per class. ``thresholds`` (per class only): class -> its threshold, None for
    a class that is always flagged; a class absent from the calibration set has no entry and is
    always flagged too. When ``feasible`` is False a consumer flags every item.

    ``n_accepted`` / ``errors``: accepted calibration items and the errors among them at the
    chosen threshold(s) (0 and 0 when nothing is accepted); ``coverage`` = n_accepted /
    n_calibration (0 when n_calibration = 0). ``risk_upper_bound``: the (1 - delta)
    Clopper-Pearson bound U(errors, n_accepted) at the chosen threshold, <= alpha; None when
    infeasible (nothing is accepted, so there is no accepted error rate to bound). Per class it
    is the largest of the classes' bounds: the rate every class with a threshold is guaranteed
    (each with probability >= 1 - delta), so it is <= alpha when feasible too. ``per_class``
    holds each class's own fit (figures of that class alone); ``alpha`` and ``delta`` are the
    requested levels.
    """

    feasible: bool
    threshold: float | None
    n_calibration: int
    n_accepted: int
    errors: int
    risk_upper_bound: float | None
    coverage: float
    alpha: float
    delta: float
    thresholds: Mapping[int, float | None] | None = None
    per_class: Mapping[int, RiskPolicyFit] | None = None
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        """The policy figures of API.md section 10 (JSON-ready: ``thresholds`` keys are str)."""
        out: dict[str, Any] = {"feasible": self.feasible, "threshold": self.threshold}
        if self.thresholds is not None:
            out["thresholds"] = {str(c): t for c, t in self.thresholds.items()}
        return out | {
            "n_calibration": self.n_calibration,
            "n_accepted": self.n_accepted,
            "errors": self.errors,
            "risk_upper_bound": self.risk_upper_bound,
            "coverage": self.coverage,
            "method": self.method,
        }


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class RiskCoverage:
    """The risk-coverage curve and its area (API.md section 10; :meth:`to_dict`).

    Arrays have one entry per point, coverage descending (thresholds ascending). ``aurc`` is
    over every item (the points are thinned, the area is not); None when n = 0.
    """

    n: int
    aurc: float | None
    threshold: F64
    coverage: F64
    risk: F64
    risk_upper_bound: F64
    delta: float

    def to_dict(self) -> dict[str, Any]:
        """``{"n", "aurc", "points": [{"threshold", "coverage", "risk", "risk_upper_bound"}]}``."""
        columns = zip(
            self.threshold.tolist(),
            self.coverage.tolist(),
            self.risk.tolist(),
            self.risk_upper_bound.tolist(),
            strict=True,
        )
        points = [
            {"threshold": t, "coverage": c, "risk": r, "risk_upper_bound": u}
            for t, c, r, u in columns
        ]
        return {"n": self.n, "aurc": self.aurc, "points": points}


@dataclass(frozen=True, eq=False)
class _Groups:
    """Per-group outcome of the fixed-sequence test (one group unless per class)."""

    ids: I64
    size: I64
    threshold: F64  # NaN where the group has no threshold
    n_accepted: I64
    errors: I64
    bound: F64  # NaN where the group has no threshold


# ---------------------------------------------------------------------------------------------
# Input checks


def _level(value: Any, name: str) -> float:
    return scalar(value, name, low=0.0, high=1.0, low_open=True, high_open=True)


def _count_option(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError((name,), f"expected an integer, got {value!r}", kind="int_type")
    if value < low:
        raise InputError((name,), f"{int(value)} is below the minimum >= {low}")
    return int(value)


def _confidence(value: Any) -> F64:
    """Finite numbers, 1-D, as float64. Only their order matters: any real scale is accepted
    (every xentcore confidence method gives values in [0, 1])."""
    arr = as_float(value, "confidence")
    if arr.ndim != 1:
        raise InputError(("confidence",), f"expected a 1-D array, got shape {list(arr.shape)}")
    out: F64 = arr.astype(np.float64, copy=False)
    check_finite(out, "confidence")
    return out


def _same_length(arr: npt.NDArray[Any], name: str, n: int) -> None:
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(
            (name,), f"expected {n} values (one per confidence), got shape {list(arr.shape)}"
        )


def _correct(value: Any, n: int) -> Bool:
    """Booleans, or numbers that are 0 or 1."""
    arr = as_array(value, "correct")
    _same_length(arr, "correct", n)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise InputError(("correct",), "expected booleans or 0/1", kind="bool_type")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        i = first_true(bad)
        raise InputError(("correct", i), f"{arr[i]!r} is not 0 or 1", kind="bool_type")
    return np.asarray(arr == 1)


def _classes(value: Any, n: int) -> I64:
    """Integers (integral floats allowed), one per item; booleans refused."""
    arr = as_array(value, "classes")
    _same_length(arr, "classes", n)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = first_true(bad)
            raise InputError(("classes", i), f"{fmt(arr[i])} is not an integer", kind="int_type")
        return arr.astype(np.int64)
    raise InputError(("classes",), "expected integer classes", kind="int_type")


# ---------------------------------------------------------------------------------------------
# The fixed-sequence kernel


def _segment_starts(keys: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Start index of every run of equal keys (keys non-empty)."""
    change = np.empty(keys.shape[0], dtype=bool)
    change[0] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def _fit_groups(
    conf: F64, wrong: Bool, group: I64, *, alpha: float, delta: float, min_calibration: int
) -> _Groups:
    """The fixed-sequence test within each group, all groups at once (n >= 1).

    One stable lexsort by (group, -confidence); cumulative sums give, at the last position of
    every (group, confidence) run, the candidate's accepted count and errors; ``reduceat`` over
    each group's candidates finds its first failure and the last pass before it.
    """
    order = np.lexsort((-conf, group))
    g, c = group[order], conf[order]
    cum_wrong = np.cumsum(wrong[order], dtype=np.int64)
    n = g.shape[0]
    starts = _segment_starts(g)
    sizes = np.diff(np.append(starts, n))
    # Last position of each run of equal (group, confidence): one candidate per distinct value.
    last = np.empty(n, dtype=bool)
    last[-1] = True
    last[:-1] = (g[1:] != g[:-1]) | (c[1:] != c[:-1])
    pos = np.flatnonzero(last)
    cand_group = np.repeat(np.arange(starts.shape[0]), sizes)[pos]
    before = np.concatenate(([0], cum_wrong))[starts]  # errors ahead of each group
    n_acc = pos + 1 - starts[cand_group]
    k_acc = cum_wrong[pos] - before[cand_group]
    # Labels-free skip: even zero errors cannot pass below n_min accepted items.
    testable = n_acc >= _min_accepted(alpha, delta)
    testable &= sizes[cand_group] >= min_calibration
    passes = np.zeros_like(testable)
    passes[testable] = binomial_tail_passes(
        k_acc[testable], n_acc[testable], alpha=alpha, delta=delta
    )
    idx = np.arange(pos.shape[0])
    seg = _segment_starts(cand_group)  # each group has >= 1 candidate: seg aligns with groups
    first_fail = np.minimum.reduceat(np.where(testable & ~passes, idx, idx.shape[0]), seg)
    ok = passes & (idx < first_fail[cand_group])
    chosen = np.maximum.reduceat(np.where(ok, idx, -1), seg)
    return _chosen(g[starts], sizes, chosen, c[pos], n_acc, k_acc, delta)


def _chosen(
    ids: I64, sizes: I64, chosen: I64, cand_conf: F64, n_acc: I64, k_acc: I64, delta: float
) -> _Groups:
    """Per-group figures at the chosen candidate (-1: none, so nothing accepted)."""
    has = chosen >= 0
    at = np.where(has, chosen, 0)
    n_out = np.where(has, n_acc[at], 0)
    k_out = np.where(has, k_acc[at], 0)
    bound = np.full(ids.shape[0], np.nan)
    bound[has] = clopper_pearson_upper(k_out[has], n_out[has], delta=delta)
    return _Groups(
        ids=ids,
        size=sizes,
        threshold=np.where(has, cand_conf[at], np.nan),
        n_accepted=n_out,
        errors=k_out,
        bound=bound,
    )


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _single_fit(
    threshold: float | None,
    n_calibration: int,
    n_accepted: int,
    errors: int,
    bound: float | None,
    alpha: float,
    delta: float,
) -> RiskPolicyFit:
    return RiskPolicyFit(
        feasible=threshold is not None,
        threshold=threshold,
        n_calibration=n_calibration,
        n_accepted=n_accepted,
        errors=errors,
        risk_upper_bound=bound,
        coverage=n_accepted / n_calibration if n_calibration else 0.0,
        alpha=alpha,
        delta=delta,
    )


def _group_fits(r: _Groups, alpha: float, delta: float) -> dict[int, RiskPolicyFit]:
    return {
        int(gid): _single_fit(_optional(t), int(size), int(na), int(k), _optional(u), alpha, delta)
        for gid, size, t, na, k, u in zip(
            r.ids, r.size, r.threshold, r.n_accepted, r.errors, r.bound, strict=True
        )
    }


def _per_class_fit(r: _Groups | None, n: int, alpha: float, delta: float) -> RiskPolicyFit:
    fits = {} if r is None else _group_fits(r, alpha, delta)
    bounds = [f.risk_upper_bound for f in fits.values() if f.risk_upper_bound is not None]
    n_accepted = sum(f.n_accepted for f in fits.values())
    return RiskPolicyFit(
        feasible=bool(bounds),
        threshold=None,
        n_calibration=n,
        n_accepted=n_accepted,
        errors=sum(f.errors for f in fits.values()),
        risk_upper_bound=max(bounds) if bounds else None,
        coverage=n_accepted / n if n else 0.0,
        alpha=alpha,
        delta=delta,
        thresholds={c: f.threshold for c, f in fits.items()},
        per_class=fits,
    )


def risk_control(
    confidence: Any,
    correct: Any,
    *,
    alpha: float,
    delta: float,
    classes: Any = None,
    min_calibration: int = 1,
) -> RiskPolicyFit:
    """Fit the confidence threshold whose accepted error rate is <= alpha w.p. >= 1 - delta.

    Fixed-sequence testing over the distinct confidences with exact (Clopper-Pearson) binomial
    bounds, as described in the module docstring and API.md section 10: the threshold is the
    one of largest coverage reached by testing from the strictest candidate down, stopping at
    the first whose bound ``U(k, n) = Beta^-1(1 - delta; k + 1, n - k)`` exceeds alpha.

    Guarantee: for future items exchangeable with the calibration set, the probability (over
    the calibration sample) that the error rate among accepted items exceeds ``alpha`` is at
    most ``delta`` (Geifman & El-Yaniv 2017; Angelopoulos, Bates et al. 2021, Learn-then-Test).
    It needs at least ``log(delta) / log(1 - alpha)`` accepted calibration items with no error
    (45 for alpha = 0.05, delta = 0.1), more with errors.

    Parameters
    ----------
    confidence : array_like of float, shape (N,)
        Any confidence where larger means more trustworthy (finite; only the order matters).
        Items with confidence >= the threshold are accepted.
    correct : array_like of bool or 0/1, shape (N,)
        Whether each calibration item's prediction was right.
    alpha, delta : float in (0, 1)
        Target accepted error rate, and the allowed probability of missing it.
    classes : array_like of int, shape (N,), optional
        The predicted class of each item: fit one threshold per class (Mondrian), each with
        the guarantee within its class. ``thresholds`` maps every class present to its
        threshold (None: always flagged); top-level counts add up over classes.
    min_calibration : int >= 1
        Fewer calibration items (per class with ``classes``) make the policy (that class)
        infeasible.

    Returns
    -------
    RiskPolicyFit
        ``feasible`` False (``threshold`` None, nothing accepted, ``risk_upper_bound`` None)
        when there are fewer than ``min_calibration`` items or no threshold passes: the
        consumer then flags every item.

    Raises
    ------
    InputError
        alpha or delta outside (0, 1), min_calibration < 1, non-finite confidences,
        correctness other than booleans or 0/1, non-integer classes, mismatched lengths.

    Examples
    --------
    >>> import numpy as np
    >>> conf = np.arange(1, 201) / 200  # 0.005, 0.01, ..., 1; wrong at 0.2 and below
    >>> fit = risk_control(conf, conf > 0.2, alpha=0.1, delta=0.1)
    >>> fit.threshold, fit.n_accepted, fit.errors, round(fit.risk_upper_bound, 4)
    (0.15, 171, 11, 0.0955)
    """
    alpha, delta = _level(alpha, "alpha"), _level(delta, "delta")
    min_calibration = _count_option(min_calibration, "min_calibration", 1)
    conf = _confidence(confidence)
    n = conf.shape[0]
    wrong = ~_correct(correct, n)
    per_class = classes is not None
    group = _classes(classes, n) if per_class else np.zeros(n, dtype=np.int64)
    r = (
        _fit_groups(conf, wrong, group, alpha=alpha, delta=delta, min_calibration=min_calibration)
        if n
        else None
    )
    if per_class:
        return _per_class_fit(r, n, alpha, delta)
    if r is None:
        return _single_fit(None, 0, 0, 0, None, alpha, delta)
    return _group_fits(r, alpha, delta)[0]


# ---------------------------------------------------------------------------------------------
# The risk-coverage curve


def _thin(coverage: F64, max_points: int) -> npt.NDArray[np.intp]:
    """Indices of at most ``max_points`` points spread evenly in coverage, first and last kept.

    ``coverage`` is strictly decreasing. Each of ``max_points`` evenly spaced targets between
    the first and the last coverage takes its nearest point (the larger coverage on a tie);
    duplicates collapse, so fewer points come back when the curve is bunched.
    """
    m = coverage.shape[0]
    if m <= max_points:
        return np.arange(m)
    asc = coverage[::-1]
    targets = np.linspace(asc[0], asc[-1], max_points)
    hi = np.clip(np.searchsorted(asc, targets), 1, m - 1)
    lo = hi - 1
    nearest = np.where(asc[hi] - targets <= targets - asc[lo], hi, lo)
    return np.unique(m - 1 - nearest)


def risk_coverage(
    confidence: Any, correct: Any, *, delta: float = 0.1, max_points: int = 101
) -> RiskCoverage:
    """The risk-coverage curve of a labelled set and its area (AURC).

    Items sorted by confidence, descending; for each distinct confidence u_j (accept c >= u_j):
    ``coverage_j = n_j / n``, ``risk_j = k_j / n_j`` (errors among the accepted) and
    ``risk_upper_bound_j = U(k_j, n_j)``, the (1 - delta) Clopper-Pearson bound (pointwise: each
    point's bound holds with probability 1 - delta on its own, not all at once; use
    :func:`risk_control` for a threshold with a guarantee). Points come coverage descending,
    thinned to at most ``max_points`` spread evenly in coverage (the first, coverage 1, and the
    last kept).

    ``AURC = (1 / n) sum_i r_i`` with r_i the error rate among the first i items (Geifman, Uziel
    & El-Yaniv 2019); tied confidences form one group whose positions all take the group's
    cumulative rate at its end, so ``AURC = (1 / n) sum_j (n_j - n_{j-1}) k_j / n_j`` and the
    order within ties does not matter. Computed over every item, not the thinned points.
    n = 0: ``aurc`` None and no points.

    >>> rc = risk_coverage([0.9, 0.8, 0.8, 0.3], [1, 1, 0, 0], max_points=101)
    >>> rc.coverage.tolist(), rc.risk.tolist()  # thresholds 0.3, 0.8, 0.9
    ([1.0, 0.75, 0.25], [0.5, 0.3333333333333333, 0.0])
    >>> round(rc.aurc, 6)  # (0 + 1/3 + 1/3 + 2/4) / 4: the tied 0.8s both take 1/3
    0.291667
    """
    delta = _level(delta, "delta")
    max_points = _count_option(max_points, "max_points", 2)
    conf = _confidence(confidence)
    n = conf.shape[0]
    wrong = ~_correct(correct, n)
    if n == 0:
        empty = np.empty(0)
        return RiskCoverage(0, None, empty, empty, empty, empty, delta)
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    last = np.append(c[1:] != c[:-1], True)
    pos = np.flatnonzero(last)
    n_acc = pos + 1
    k_acc = np.cumsum(wrong[order], dtype=np.int64)[pos]
    risk = k_acc / n_acc
    aurc = float(np.dot(np.diff(n_acc, prepend=0), risk) / n)
    keep = _thin(n_acc[::-1] / n, max_points)
    at = pos.shape[0] - 1 - keep  # back to descending-confidence candidate indices
    return RiskCoverage(
        n=n,
        aurc=aurc,
        threshold=c[pos[at]],
        coverage=n_acc[at] / n,
        risk=risk[at],
        risk_upper_bound=clopper_pearson_upper(k_acc[at], n_acc[at], delta=delta),
        delta=delta,
    )
