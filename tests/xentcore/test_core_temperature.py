"""Temperature scaling in ``xentcore.calibration(..., fit_temperature=True)``.

The fitted T must minimise the mean NLL of softmax(z / T) (binary: sigmoid(z / T)): checked
against an independent NLL evaluated at T*(1 +- 1e-4), where the central difference of the NLL
must vanish and neither neighbour may be lower.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

import xentcore as xc

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
H = 1e-4


def nll_multiclass(z: F64, y: I64, t: float, s: F64 | None = None) -> float:
    a = z / t
    m = a.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(a - m).sum(axis=1))
    loss = lse - a[np.arange(a.shape[0]), y]
    return float(np.average(loss, weights=s))


def nll_binary(z: F64, y: F64, t: float) -> float:
    a = z / t
    return float(np.mean(y * np.logaddexp(0.0, -a) + (1.0 - y) * np.logaddexp(0.0, a)))


def _calibrated(seed: int, n: int = 3000, k: int = 4) -> tuple[F64, I64]:
    """Logits and labels drawn from softmax(logits): a calibrated model (T* near 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, k))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return z, np.minimum(y, k - 1).astype(np.int64)


def _assert_minimum(f: Callable[[float], float], t: float, nll_at_t: float) -> None:
    lo, hi = f(t * (1 - H)), f(t * (1 + H))
    assert lo >= nll_at_t - 1e-12 and hi >= nll_at_t - 1e-12
    # dNLL/dlog T by central difference: ~0 at the optimum (a slope of order 0.1 elsewhere)
    assert abs(hi - lo) / (2 * H) < 1e-6


@pytest.mark.parametrize(
    ("scale", "t_low", "t_high"), [(3.0, 2.0, 4.5), (1 / 3, 0.2, 0.5), (1.0, 0.85, 1.15)]
)
def test_multiclass_temperature(scale: float, t_low: float, t_high: float) -> None:
    z0, y = _calibrated(1)
    z = z0 * scale  # scale > 1: over-confident, T* ~ scale
    c = xc.calibration(z, y, input_type="logits", fit_temperature=True)
    assert c.temperature is not None and c.nll_after is not None and c.ece_after is not None
    t = c.temperature
    assert t_low < t < t_high
    assert c.nll == pytest.approx(nll_multiclass(z, y, 1.0), rel=1e-12)
    assert c.nll_after == pytest.approx(nll_multiclass(z, y, t), rel=1e-10)
    assert c.nll is not None and c.nll_after <= c.nll
    _assert_minimum(lambda tt: nll_multiclass(z, y, tt), t, nll_multiclass(z, y, t))
    assert 0.0 <= c.ece_after <= 1.0
    # nll and ece are the figures before scaling
    plain = xc.calibration(z, y, input_type="logits")
    assert (c.nll, c.ece, c.brier) == (plain.nll, plain.ece, plain.brier)


def test_over_confident_scaling_improves_nll_and_ece() -> None:
    z0, y = _calibrated(2)
    c = xc.calibration(z0 * 4.0, y, input_type="logits", fit_temperature=True)
    assert c.temperature is not None and c.temperature > 1.0
    assert c.nll_after is not None and c.nll is not None and c.nll_after < c.nll - 0.1
    assert c.ece_after is not None and c.ece is not None and c.ece_after < c.ece


def test_binary_temperature() -> None:
    rng = np.random.default_rng(3)
    z0 = rng.normal(0.0, 2.0, size=2000)
    y = (rng.uniform(size=2000) < 1 / (1 + np.exp(-z0))).astype(np.float64)
    z = 2.5 * z0
    c = xc.calibration(z, y, input_type="logits", fit_temperature=True)
    assert c.temperature is not None and c.nll_after is not None and c.nll is not None
    assert 1.8 < c.temperature < 3.5
    assert c.nll == pytest.approx(nll_binary(z, y, 1.0), rel=1e-12)
    assert c.nll_after == pytest.approx(nll_binary(z, y, c.temperature), rel=1e-10)
    assert c.nll_after < c.nll
    _assert_minimum(lambda tt: nll_binary(z, y, tt), c.temperature, nll_binary(z, y, c.temperature))


def test_probabilities_and_log_probabilities_are_fitted_through_their_logs() -> None:
    z0, y = _calibrated(4, n=1500)
    z = 3.0 * z0
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    t_logits = xc.calibration(z, y, input_type="logits", fit_temperature=True).temperature
    t_prob = xc.calibration(np.exp(log_p), y, fit_temperature=True).temperature
    t_log = xc.calibration(
        log_p, y, input_type="log_probabilities", fit_temperature=True
    ).temperature
    assert t_logits is not None
    assert t_prob == pytest.approx(t_logits, rel=1e-6)
    assert t_log == pytest.approx(t_logits, rel=1e-6)


def test_ignored_items_and_sample_weights() -> None:
    z0, y = _calibrated(5, n=600)
    z = 2.0 * z0
    y_ign = y.copy()
    y_ign[::3] = -100
    keep = y_ign != -100
    c = xc.calibration(z, y_ign, input_type="logits", ignore_index=-100, fit_temperature=True)
    ref = xc.calibration(z[keep], y[keep], input_type="logits", fit_temperature=True)
    assert c.temperature == pytest.approx(ref.temperature, rel=1e-9)
    assert c.nll_after == pytest.approx(ref.nll_after, rel=1e-9)
    # integer sample weights act as repeated items
    w = np.where(np.arange(600) % 2 == 0, 2.0, 1.0)
    cw = xc.calibration(z, y, input_type="logits", sample_weights=w, fit_temperature=True)
    rep = np.repeat(np.arange(600), w.astype(int))
    cr = xc.calibration(z[rep], y[rep], input_type="logits", fit_temperature=True)
    assert cw.temperature == pytest.approx(cr.temperature, rel=1e-9)
    assert cw.temperature is not None
    _assert_minimum(
        lambda tt: nll_multiclass(z, y, tt, w),
        cw.temperature,
        nll_multiclass(z, y, cw.temperature, w),
    )


def test_separable_batch_goes_to_the_smallest_temperature() -> None:
    """Every item right with a margin: the NLL falls as T -> 0; T stops at its bound 1e-3."""
    z = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [-1.0, 0.5, 1.5]])
    c = xc.calibration(z, [0, 1, 2], input_type="logits", fit_temperature=True)
    assert c.temperature is not None and c.nll_after is not None and c.nll is not None
    assert c.temperature == pytest.approx(1e-3)
    assert c.nll_after < c.nll
