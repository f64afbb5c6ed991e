"""Temperature and Platt calibrators (``xentcore.calibrators``) against independent fits.

Temperature: scipy's bounded scalar minimiser of the NLL written here. Platt: scikit-learn's
unpenalized ``LogisticRegression`` on logit(p) (hard labels) and scipy's BFGS on the NLL written
here (soft labels), both to 1e-6.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_softmax, logit
from sklearn.linear_model import LogisticRegression

import xentcore as xc
from xentcore.calibrators import (
    T_MAX,
    T_MIN,
    apply_platt,
    apply_temperature,
    fit_platt,
    fit_temperature,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


# ---------------------------------------------------------------------------------------------
# Temperature


def nll(z: F64, y: I64, t: float) -> float:
    return float(-log_softmax(z / t, axis=1)[np.arange(len(y)), y].mean())


def _overconfident(seed: int, scale: float, n: int = 2000, k: int = 5) -> tuple[F64, I64]:
    """Labels drawn from softmax(z); the model reports z * scale (T* ~ scale)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, k))
    p = np.exp(log_softmax(z, axis=1))
    y = np.minimum((p.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1), k - 1)
    return z * scale, y.astype(np.int64)


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_temperature_minimises_the_nll(scale: float) -> None:
    z, y = _overconfident(1, scale)
    t = fit_temperature(z, y)
    ref = minimize_scalar(
        lambda log_t: nll(z, y, float(np.exp(log_t))),
        bounds=(np.log(T_MIN), np.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert t == pytest.approx(float(np.exp(ref.x)), rel=1e-6)
    assert t == pytest.approx(scale, rel=0.15)
    # log-probabilities and logits give the same T (softmax ignores a shift of each row)
    assert fit_temperature(log_softmax(z, axis=1), y) == pytest.approx(t, rel=1e-10)


def test_temperature_is_the_calibration_endpoints() -> None:
    z, y = _overconfident(2, 2.0, n=300)
    c = xc.calibration(z, y, input_type="logits", fit_temperature=True)
    assert c.temperature == pytest.approx(fit_temperature(z, y), rel=1e-12)


def test_temperature_degenerate_sets() -> None:
    """Every item right with a margin: the NLL falls as T -> 0 (bound T_MIN); every item wrong
    with a margin, or flat rows: the best is uniform, T -> infinity (bound T_MAX)."""
    z = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    assert fit_temperature(z, [0, 1, 2]) == T_MIN
    assert fit_temperature(z, [1, 2, 0]) == T_MAX
    assert fit_temperature(np.zeros((4, 3)), [0, 1, 2, 0]) == T_MAX
    assert (T_MIN, T_MAX) == (1e-3, 1e3)


def test_apply_temperature() -> None:
    z, _ = _overconfident(3, 1.0, n=50)
    got = apply_temperature(z, 1.7)
    np.testing.assert_allclose(got, log_softmax(z / 1.7, axis=1), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.logaddexp.reduce(got, axis=1), 0.0, atol=1e-14)
    lp = log_softmax(z, axis=1)
    np.testing.assert_allclose(apply_temperature(lp, 1.0), lp, atol=1e-14)
    # argmax kept; huge logits stay finite
    assert (got.argmax(axis=1) == z.argmax(axis=1)).all()
    assert np.isfinite(apply_temperature([[1e300, -1e300]], 1e-3)).all()


@pytest.mark.parametrize(
    ("call", "location"),
    [
        (lambda: fit_temperature([[0.1, 0.2]], [2]), ("labels", 0)),
        (lambda: fit_temperature([[0.1, 0.2]], [0, 1]), ("labels",)),
        (lambda: fit_temperature([[0.1, 0.2]], [0.0]), ("labels",)),
        (lambda: fit_temperature([0.1, 0.2], [0]), ("log_probs",)),
        (lambda: fit_temperature([[0.1], [0.2]], [0, 0]), ("log_probs",)),
        (lambda: fit_temperature([[0.1, float("nan")]], [0]), ("log_probs", 0, 1)),
        (lambda: apply_temperature([[0.1, 0.2]], 0.0), ("temperature",)),
        (lambda: apply_temperature([[0.1, 0.2]], -1), ("temperature",)),
        (lambda: apply_temperature([[0.1, 0.2]], float("inf")), ("temperature",)),
    ],
)
def test_temperature_refuses(call: Any, location: tuple[Any, ...]) -> None:
    with pytest.raises(xc.InputError) as err:
        call()
    assert err.value.location == location


# ---------------------------------------------------------------------------------------------
# Platt


def _binary(seed: int, n: int = 1500, a: float = 0.6, b: float = -0.4) -> tuple[F64, I64]:
    """p from a miscalibrated model: the truth is sigmoid(a logit(p) + b)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.7, 0.7, n)
    return p, (rng.uniform(size=n) < expit(a * logit(p) + b)).astype(np.int64)


def sklearn_platt(p: F64, y: I64, eps: float = np.finfo(float).eps) -> tuple[float, float]:
    x = logit(np.clip(p, eps, 1 - eps))[:, None]
    m = LogisticRegression(C=np.inf, solver="newton-cg", tol=1e-12, max_iter=10_000).fit(x, y)
    return float(m.coef_[0, 0]), float(m.intercept_[0])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_platt_matches_sklearn(seed: int) -> None:
    p, y = _binary(seed)
    a, b = fit_platt(p, y)
    ra, rb = sklearn_platt(p, y)
    assert a == pytest.approx(ra, rel=1e-6, abs=1e-8)
    assert b == pytest.approx(rb, rel=1e-6, abs=1e-8)
    assert a == pytest.approx(0.6, abs=0.1) and b == pytest.approx(-0.4, abs=0.15)


def test_platt_clips_with_eps() -> None:
    p, y = _binary(4, n=400)
    p[:4], y[:4] = [0.0, 1.0, 0.0, 1.0], [1, 0, 0, 1]
    a, b = fit_platt(p, y, eps=1e-7)
    ra, rb = sklearn_platt(p, y, eps=1e-7)
    assert (a, b) == pytest.approx((ra, rb), rel=1e-6)
    assert fit_platt(p, y) != (a, b)  # the default eps clips less


def test_platt_soft_labels() -> None:
    p, y = _binary(5, n=500)
    soft = np.clip(y * 0.8 + 0.1 + np.random.default_rng(0).normal(0, 0.05, 500), 0, 1)
    x = logit(p)

    def f(ab: F64) -> float:
        eta = ab[0] * x + ab[1]
        return float(np.mean(np.logaddexp(0, eta) - soft * eta))

    ref = minimize(f, [1.0, 0.0], method="BFGS", options={"gtol": 1e-12})
    assert fit_platt(p, soft) == pytest.approx(tuple(ref.x), rel=1e-6, abs=1e-8)


def test_apply_platt() -> None:
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    eps = np.finfo(float).eps
    want = expit(1.3 * logit(np.clip(p, eps, 1 - eps)) - 0.2)
    np.testing.assert_allclose(apply_platt(p, 1.3, -0.2), want, rtol=1e-14)
    np.testing.assert_allclose(apply_platt(p[1:4], 1.0, 0.0), p[1:4], rtol=1e-14)
    # fitted on calibrated probabilities, Platt is near the identity
    q, y = _binary(6, n=20_000, a=1.0, b=0.0)
    a, b = fit_platt(q, y)
    assert abs(a - 1) < 0.05 and abs(b) < 0.05


@pytest.mark.parametrize(
    ("p", "y", "location", "words"),
    [
        ([0.2, 0.7, 0.9], [1, 1, 1], ("labels",), "no negative"),
        ([0.2, 0.7, 0.9], [0, 0, 0.0], ("labels",), "no positive"),
        ([0.2, 0.3, 0.7, 0.9], [0, 0, 1, 1], ("labels",), "separates"),
        ([0.2, 0.3, 0.7, 0.9], [1, 1, 0, 0], ("labels",), "separates"),
        ([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1], ("labels",), "separates"),  # touching
        ([0.5, 0.5, 0.5], [0, 1, 1], ("labels",), "separates"),  # constant p
        ([0.2, 1.2], [0, 1], ("predictions", 1), "outside"),
        ([0.2, float("nan")], [0, 1], ("predictions", 1), "finite"),
        ([[0.2, 0.8]], [0], ("predictions",), "1-D"),
        ([0.2, 0.8], [0, 2], ("labels", 1), "outside"),
        ([0.2, 0.8], [0], ("labels",), "one per prediction"),
    ],
)
def test_platt_refuses(p: Any, y: Any, location: tuple[Any, ...], words: str) -> None:
    with pytest.raises(xc.InputError) as err:
        fit_platt(p, y)
    assert err.value.location == location
    assert words in str(err.value)


def test_platt_refuses_bad_options() -> None:
    with pytest.raises(xc.InputError) as err:
        fit_platt([0.2, 0.8, 0.6], [0, 1, 0], eps=0.0)
    assert err.value.location == ("clip_eps",)
    with pytest.raises(xc.InputError) as err:
        apply_platt([0.2], float("nan"), 0.0)
    assert err.value.location == ("a",)
