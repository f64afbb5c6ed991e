"""``risk_control`` and ``risk_coverage`` against a plain reference written here.

The reference follows API.md section 10 word by word, with Python loops over candidates and
items and scipy's ``beta.ppf`` for the Clopper-Pearson bound: candidates are the distinct
confidences, strictest first; a candidate whose accepted count cannot pass even with zero
errors is skipped; testing stops at the first bound above alpha; the threshold is the last
that passed. Bounds agree to 1e-9, thresholds and counts exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import beta

import xentcore as xc
from xentcore.risk import METHOD, binomial_tail_passes, clopper_pearson_upper

F64 = npt.NDArray[np.float64]
TOL = 1e-9


# ---------------------------------------------------------------------------------------------
# The reference


def ref_bound(k: int, n: int, delta: float) -> float:
    return 1.0 if k == n else float(beta.ppf(1 - delta, k + 1, n - k))


def ref_fit(
    conf: list[float], correct: list[bool], alpha: float, delta: float, min_cal: int = 1
) -> tuple[float, int, int, float] | None:
    """(threshold, n_accepted, errors, bound) or None when infeasible."""
    if len(conf) < min_cal:
        return None
    chosen = None
    for t in sorted(set(conf), reverse=True):
        accepted = [i for i in range(len(conf)) if conf[i] >= t]
        n = len(accepted)
        k = sum(1 for i in accepted if not correct[i])
        if ref_bound(0, n, delta) > alpha:
            continue  # too few items to pass even without errors: skipped
        if ref_bound(k, n, delta) > alpha:
            break
        chosen = (t, n, k, ref_bound(k, n, delta))
    return chosen


def ref_curve(conf: list[float], correct: list[bool], delta: float) -> list[tuple[float, ...]]:
    """(threshold, coverage, risk, bound) per distinct confidence, coverage descending."""
    n = len(conf)
    out = []
    for t in sorted(set(conf)):
        accepted = [i for i in range(n) if conf[i] >= t]
        k = sum(1 for i in accepted if not correct[i])
        out.append((t, len(accepted) / n, k / len(accepted), ref_bound(k, len(accepted), delta)))
    return out


def ref_aurc(conf: list[float], correct: list[bool]) -> float:
    """(1/n) sum_i r_i, r_i the error rate among the first i; ties take their group's end."""
    n = len(conf)
    order = sorted(range(n), key=lambda i: -conf[i])
    total = 0.0
    for i in range(n):
        end = i
        while end + 1 < n and conf[order[end + 1]] == conf[order[i]]:
            end += 1
        errors = sum(1 for j in order[: end + 1] if not correct[j])
        total += errors / (end + 1)
    return total / n


# ---------------------------------------------------------------------------------------------
# Data


def _data(seed: int, n: int, *, decimals: int | None = None) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Confidences and correctness of an over-confident model: P(correct | c) = c^2."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    if decimals is not None:
        conf = np.round(conf, decimals)  # ties
    return conf, rng.uniform(size=n) < conf**2


def _assert_fit(fit: xc.RiskPolicyFit, ref: tuple[float, int, int, float] | None, n: int) -> None:
    assert fit.n_calibration == n
    if ref is None:
        assert not fit.feasible and fit.threshold is None
        assert (fit.n_accepted, fit.errors, fit.coverage, fit.risk_upper_bound) == (0, 0, 0.0, None)
        return
    t, n_acc, k, bound = ref
    assert fit.feasible
    assert fit.threshold == t
    assert (fit.n_accepted, fit.errors) == (n_acc, k)
    assert fit.coverage == n_acc / n
    assert fit.risk_upper_bound == pytest.approx(bound, abs=TOL, rel=0)


# ---------------------------------------------------------------------------------------------
# Bounds


def test_clopper_pearson_matches_beta_ppf() -> None:
    rng = np.random.default_rng(0)
    n = rng.integers(1, 5000, 400)
    k = np.minimum(rng.integers(0, 300, 400), n - 1)
    for delta in (0.01, 0.1, 0.5, 0.9):
        got = clopper_pearson_upper(k, n, delta=delta)
        want = beta.ppf(1 - delta, k + 1, n - k)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert clopper_pearson_upper([3, 0], [3, 0], delta=0.1).tolist() == [1.0, 1.0]
    # zero errors: the closed form 1 - delta^(1/n)
    assert clopper_pearson_upper(0, 45, delta=0.1) == pytest.approx(1 - 0.1 ** (1 / 45))


def test_binomial_tail_decides_as_the_bound() -> None:
    """U(k, n) <= alpha exactly when P[Bin(n, alpha) <= k] <= delta (away from float ties)."""
    n = np.repeat(np.arange(1, 400), 40)
    k = np.tile(np.arange(40), 399)
    k = np.minimum(k, n)
    for alpha, delta in ((0.05, 0.1), (0.2, 0.01), (0.01, 0.5)):
        bound = clopper_pearson_upper(k, n, delta=delta)
        clear = np.abs(bound - alpha) > 1e-12
        got = binomial_tail_passes(k, n, alpha=alpha, delta=delta)
        np.testing.assert_array_equal(got[clear], (bound <= alpha)[clear])
        assert not got[k == n].any()


# ---------------------------------------------------------------------------------------------
# risk_control against the reference


@pytest.mark.parametrize("decimals", [None, 2, 1])
@pytest.mark.parametrize(("alpha", "delta"), [(0.1, 0.1), (0.05, 0.2), (0.2, 0.01), (0.3, 0.5)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_reference(seed: int, alpha: float, delta: float, decimals: int | None) -> None:
    conf, correct = _data(seed, 300, decimals=decimals)
    fit = xc.risk_control(conf, correct, alpha=alpha, delta=delta)
    _assert_fit(fit, ref_fit(conf.tolist(), correct.tolist(), alpha, delta), 300)
    assert fit.method == METHOD and fit.alpha == alpha and fit.delta == delta
    if fit.feasible:
        assert fit.risk_upper_bound is not None and fit.risk_upper_bound <= alpha


def test_feasible_case_is_exercised() -> None:
    """The parametrized reference cases include both feasible and infeasible fits."""
    outcomes = {
        xc.risk_control(*_data(seed, 300), alpha=a, delta=d).feasible
        for seed in (1, 2, 3)
        for a, d in ((0.1, 0.1), (0.05, 0.2), (0.2, 0.01), (0.3, 0.5))
    }
    assert outcomes == {True, False}


def test_stops_at_the_first_failure() -> None:
    """50 right, 10 wrong, then 1000 right: lower thresholds would pass again, but the test
    stops at the first failure inside the wrong block."""
    conf = np.linspace(1.0, 0.001, 1060)
    correct = np.ones(1060, dtype=bool)
    correct[50:60] = False
    fit = xc.risk_control(conf, correct, alpha=0.1, delta=0.1)
    ref = ref_fit(conf.tolist(), correct.tolist(), 0.1, 0.1)
    _assert_fit(fit, ref, 1060)
    assert fit.threshold is not None and fit.threshold > conf[60]
    # the empirical rate at the lowest threshold is under 1%: a greedy search would take it
    assert ref_bound(10, 1060, 0.1) < 0.1


def test_skipped_candidates_are_not_tested() -> None:
    """Candidates with fewer items than zero errors need are skipped, not failed: testing them
    (U(0, 1) = 0.9 > alpha) would stop every fit at its first candidate. The first candidate
    tested accepts n_min = ceil(log(delta) / log(1 - alpha)) items (22 here)."""
    n_min = math.ceil(math.log(0.1) / math.log(0.9))
    assert ref_bound(0, n_min, 0.1) <= 0.1 < ref_bound(0, n_min - 1, 0.1)
    conf = np.arange(400, 0, -1) / 400
    correct = np.ones(400, dtype=bool)
    fit = xc.risk_control(conf, correct, alpha=0.1, delta=0.1)
    assert fit.feasible and fit.threshold == conf[-1]
    # exactly n_min items, all right: only the last candidate is tested, and it passes
    short = xc.risk_control(conf[:n_min], correct[:n_min], alpha=0.1, delta=0.1)
    assert short.feasible and short.n_accepted == n_min
    assert short.risk_upper_bound == pytest.approx(ref_bound(0, n_min, 0.1), abs=TOL)
    assert not xc.risk_control(
        conf[: n_min - 1], correct[: n_min - 1], alpha=0.1, delta=0.1
    ).feasible
    # an error among the skipped items still counts in every candidate below them
    correct[0] = False
    fit = xc.risk_control(conf, correct, alpha=0.1, delta=0.1)
    _assert_fit(fit, ref_fit(conf.tolist(), correct.tolist(), 0.1, 0.1), 400)


def test_all_correct_accepts_everything() -> None:
    conf = np.linspace(0.5, 1.0, 100)
    fit = xc.risk_control(conf, np.ones(100, dtype=bool), alpha=0.05, delta=0.1)
    assert fit.feasible and fit.threshold == 0.5 and fit.coverage == 1.0 and fit.errors == 0
    assert fit.risk_upper_bound == pytest.approx(1 - 0.1 ** (1 / 100), abs=TOL)


def test_all_wrong_is_infeasible() -> None:
    conf = np.linspace(0.5, 1.0, 100)
    fit = xc.risk_control(conf, np.zeros(100, dtype=bool), alpha=0.05, delta=0.1)
    _assert_fit(fit, None, 100)


def test_all_tied() -> None:
    """One distinct confidence: one candidate, all or nothing."""
    right = np.ones(100, dtype=bool)
    right[:3] = False
    fit = xc.risk_control(np.full(100, 0.7), right, alpha=0.1, delta=0.1)
    _assert_fit(fit, (0.7, 100, 3, ref_bound(3, 100, 0.1)), 100)
    right[:9] = False
    assert not xc.risk_control(np.full(100, 0.7), right, alpha=0.1, delta=0.1).feasible


def test_too_few_items() -> None:
    conf, correct = np.linspace(0.9, 1.0, 50), np.ones(50, dtype=bool)
    assert xc.risk_control(conf, correct, alpha=0.1, delta=0.1).feasible
    fit = xc.risk_control(conf, correct, alpha=0.1, delta=0.1, min_calibration=51)
    _assert_fit(fit, None, 50)
    # fewer items than the zero-error minimum (22 here): infeasible whatever min_calibration
    _assert_fit(xc.risk_control(conf[:21], correct[:21], alpha=0.1, delta=0.1), None, 21)


def test_empty() -> None:
    fit = xc.risk_control([], [], alpha=0.1, delta=0.1)
    _assert_fit(fit, None, 0)
    per = xc.risk_control([], [], alpha=0.1, delta=0.1, classes=[])
    assert not per.feasible and per.thresholds == {} and per.coverage == 0.0


def test_permutation_and_dtype_invariance() -> None:
    conf, correct = _data(7, 500, decimals=2)
    fit = xc.risk_control(conf, correct, alpha=0.1, delta=0.1)
    perm = np.random.default_rng(0).permutation(500)
    assert xc.risk_control(conf[perm], correct[perm], alpha=0.1, delta=0.1) == fit
    as_lists = xc.risk_control(conf.tolist(), correct.astype(int).tolist(), alpha=0.1, delta=0.1)
    assert as_lists == fit
    c32 = conf.astype(np.float32)
    fit32 = xc.risk_control(c32, correct, alpha=0.1, delta=0.1)
    _assert_fit(fit32, ref_fit(c32.astype(float).tolist(), correct.tolist(), 0.1, 0.1), 500)


# ---------------------------------------------------------------------------------------------
# Per class (Mondrian)


def test_per_class_matches_reference_per_class() -> None:
    conf, correct = _data(5, 900, decimals=3)
    classes = np.random.default_rng(5).integers(0, 3, 900)
    correct[classes == 2] = False  # class 2 never passes
    fit = xc.risk_control(conf, correct, alpha=0.1, delta=0.1, classes=classes)
    assert fit.threshold is None and fit.thresholds is not None and fit.per_class is not None
    assert sorted(fit.thresholds) == [0, 1, 2]
    bounds = []
    for c in (0, 1, 2):
        mask = classes == c
        ref = ref_fit(conf[mask].tolist(), correct[mask].tolist(), 0.1, 0.1)
        _assert_fit(fit.per_class[c], ref, int(mask.sum()))
        assert fit.thresholds[c] == (None if ref is None else ref[0])
        if ref is not None:
            bounds.append(ref[3])
    assert fit.thresholds[2] is None and fit.thresholds[0] is not None
    assert fit.feasible
    assert fit.n_calibration == 900
    assert fit.n_accepted == sum(f.n_accepted for f in fit.per_class.values())
    assert fit.errors == sum(f.errors for f in fit.per_class.values())
    assert fit.coverage == fit.n_accepted / 900
    assert fit.risk_upper_bound == pytest.approx(max(bounds), abs=TOL)


def test_per_class_equals_separate_fits() -> None:
    conf, correct = _data(9, 2000, decimals=2)
    classes = np.random.default_rng(9).integers(-2, 5, 2000)  # any integers name classes
    fit = xc.risk_control(conf, correct, alpha=0.15, delta=0.05, classes=classes)
    assert fit.per_class is not None
    for c, sub in fit.per_class.items():
        mask = classes == c
        assert sub == xc.risk_control(conf[mask], correct[mask], alpha=0.15, delta=0.05)


def test_per_class_min_calibration_applies_per_class() -> None:
    conf = np.linspace(0.8, 1.0, 130)
    correct = np.ones(130, dtype=bool)
    classes = np.where(np.arange(130) < 100, 0, 1)  # 100 and 30 items
    fit = xc.risk_control(conf, correct, alpha=0.1, delta=0.1, classes=classes, min_calibration=50)
    assert fit.thresholds == {0: conf[:100].min(), 1: None}
    assert fit.feasible and fit.n_accepted == 100 and fit.coverage == 100 / 130
    none = xc.risk_control(
        conf, correct, alpha=0.1, delta=0.1, classes=classes, min_calibration=200
    )
    assert not none.feasible and none.thresholds == {0: None, 1: None}
    assert (none.n_accepted, none.errors, none.coverage, none.risk_upper_bound) == (0, 0, 0.0, None)


def test_to_dict() -> None:
    conf, correct = _data(1, 300)
    single = xc.risk_control(conf, correct, alpha=0.3, delta=0.1).to_dict()
    assert list(single) == [
        "feasible",
        "threshold",
        "n_calibration",
        "n_accepted",
        "errors",
        "risk_upper_bound",
        "coverage",
        "method",
    ]
    assert single["method"] == "fixed_sequence_clopper_pearson"
    classes = (conf > 0.6).astype(int)
    per = xc.risk_control(conf, correct, alpha=0.3, delta=0.1, classes=classes).to_dict()
    assert list(per)[:3] == ["feasible", "threshold", "thresholds"]
    assert per["threshold"] is None and set(per["thresholds"]) == {"0", "1"}


# ---------------------------------------------------------------------------------------------
# risk_coverage


@pytest.mark.parametrize("decimals", [None, 2])
@pytest.mark.parametrize("seed", [1, 2])
def test_curve_matches_reference(seed: int, decimals: int | None) -> None:
    conf, correct = _data(seed, 250, decimals=decimals)
    rc = xc.risk_coverage(conf, correct, delta=0.2, max_points=10_000)
    ref = ref_curve(conf.tolist(), correct.tolist(), 0.2)
    assert rc.n == 250 and len(rc.threshold) == len(ref)
    np.testing.assert_array_equal(rc.threshold, [r[0] for r in ref])
    np.testing.assert_allclose(rc.coverage, [r[1] for r in ref], rtol=1e-15)
    np.testing.assert_allclose(rc.risk, [r[2] for r in ref], rtol=1e-15)
    np.testing.assert_allclose(rc.risk_upper_bound, [r[3] for r in ref], rtol=0, atol=TOL)
    assert rc.aurc == pytest.approx(ref_aurc(conf.tolist(), correct.tolist()), rel=1e-12)


def test_aurc_ties_take_the_group_end() -> None:
    # sorted: 0.9 right, then 0.8 wrong / 0.8 right (tied), then 0.3 wrong
    rc = xc.risk_coverage([0.8, 0.9, 0.3, 0.8], [0, 1, 0, 1])
    assert rc.aurc == pytest.approx((0 + 1 / 3 + 1 / 3 + 2 / 4) / 4, rel=1e-15)
    # the same with the tie listed the other way round
    assert xc.risk_coverage([0.8, 0.9, 0.3, 0.8], [1, 1, 0, 0]).aurc == rc.aurc
    assert rc.to_dict() == {
        "n": 4,
        "aurc": rc.aurc,
        "points": [
            {
                "threshold": 0.3,
                "coverage": 1.0,
                "risk": 0.5,
                "risk_upper_bound": pytest.approx(ref_bound(2, 4, 0.1), abs=TOL),
            },
            {
                "threshold": 0.8,
                "coverage": 0.75,
                "risk": 1 / 3,
                "risk_upper_bound": pytest.approx(ref_bound(1, 3, 0.1), abs=TOL),
            },
            {
                "threshold": 0.9,
                "coverage": 0.25,
                "risk": 0.0,
                "risk_upper_bound": pytest.approx(0.9, abs=TOL),
            },
        ],
    }


def test_curve_empty() -> None:
    assert xc.risk_coverage([], []).to_dict() == {"n": 0, "aurc": None, "points": []}


def ref_thin(coverage: list[float], max_points: int) -> list[int]:
    """Each of max_points evenly spaced targets takes the nearest point (larger on a tie)."""
    if len(coverage) <= max_points:
        return list(range(len(coverage)))
    first, last = coverage[0], coverage[-1]
    picked = set()
    for j in range(max_points):
        target = last + (first - last) * j / (max_points - 1)
        best = min(range(len(coverage)), key=lambda i: (abs(coverage[i] - target), i))
        picked.add(best)
    return sorted(picked)


@pytest.mark.parametrize("max_points", [2, 3, 101])
def test_curve_thinning(max_points: int) -> None:
    conf, correct = _data(4, 3000)
    full = xc.risk_coverage(conf, correct, max_points=10**6)
    rc = xc.risk_coverage(conf, correct, max_points=max_points)
    assert len(full.threshold) == 3000 and len(rc.threshold) <= max_points
    assert rc.aurc == full.aurc
    keep = ref_thin(full.coverage.tolist(), max_points)
    np.testing.assert_array_equal(rc.threshold, full.threshold[keep])
    np.testing.assert_array_equal(rc.risk_upper_bound, full.risk_upper_bound[keep])
    assert rc.coverage[0] == 1.0 and rc.coverage[-1] == full.coverage[-1]
    assert (np.diff(rc.coverage) < 0).all()
    if max_points == 101:  # dense curve: every target finds its own point, evenly spread
        assert len(rc.threshold) == 101
        assert np.abs(np.diff(rc.coverage) + (1 - rc.coverage[-1]) / 100).max() < 1e-3


# ---------------------------------------------------------------------------------------------
# Bad input


GOOD: dict[str, Any] = {"confidence": [0.9, 0.8], "correct": [1, 0]}


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"alpha": 0.0}, ("alpha",)),
        ({"alpha": 1.0}, ("alpha",)),
        ({"alpha": -0.1}, ("alpha",)),
        ({"alpha": float("nan")}, ("alpha",)),
        ({"alpha": True}, ("alpha",)),
        ({"alpha": "0.1"}, ("alpha",)),
        ({"delta": 0}, ("delta",)),
        ({"delta": 1.5}, ("delta",)),
        ({"min_calibration": 0}, ("min_calibration",)),
        ({"min_calibration": 1.5}, ("min_calibration",)),
        ({"min_calibration": True}, ("min_calibration",)),
        ({"confidence": [0.9, float("nan")]}, ("confidence", 1)),
        ({"confidence": [0.9, float("inf")]}, ("confidence", 1)),
        ({"confidence": [[0.9, 0.8]]}, ("confidence",)),
        ({"confidence": ["a", "b"]}, ("confidence",)),
        ({"confidence": [True, False]}, ("confidence",)),
        ({"correct": [1, 2]}, ("correct", 1)),
        ({"correct": [1]}, ("correct",)),
        ({"correct": ["yes", "no"]}, ("correct",)),
        ({"classes": [0, 1.5]}, ("classes", 1)),
        ({"classes": [True, False]}, ("classes",)),
        ({"classes": [0]}, ("classes",)),
        ({"classes": ["a", "b"]}, ("classes",)),
    ],
)
def test_risk_control_refuses(change: dict[str, Any], location: tuple[Any, ...]) -> None:
    kwargs: dict[str, Any] = {"alpha": 0.1, "delta": 0.1, **GOOD, **change}
    with pytest.raises(xc.InputError) as err:
        xc.risk_control(kwargs.pop("confidence"), kwargs.pop("correct"), **kwargs)
    assert err.value.location == location


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"delta": 0.0}, ("delta",)),
        ({"delta": 1.0}, ("delta",)),
        ({"max_points": 1}, ("max_points",)),
        ({"max_points": 10.0}, ("max_points",)),
        ({"correct": [0.5, 1]}, ("correct", 0)),
    ],
)
def test_risk_coverage_refuses(change: dict[str, Any], location: tuple[Any, ...]) -> None:
    kwargs: dict[str, Any] = {**GOOD, **change}
    with pytest.raises(xc.InputError) as err:
        xc.risk_coverage(kwargs.pop("confidence"), kwargs.pop("correct"), **kwargs)
    assert err.value.location == location
