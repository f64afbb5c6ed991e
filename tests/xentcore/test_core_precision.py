"""Numerical range and precision: extreme logits, confident items, float32 / float16 inputs.

Contract (API.md preamble and section 1): logits are never clipped and |z| up to 1e300 gives
finite, exact losses; float32/float16 inputs may be processed in float32 as long as every result
stays within 1e-6 relative of the float64 computation on the same values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import xentcore as xc

F64 = npt.NDArray[np.float64]
BIG = 1e300


def exact(x: float) -> object:
    return pytest.approx(x, rel=1e-15, abs=0.0)


def test_multiclass_logits_up_to_1e300_are_exact() -> None:
    z = [[BIG, -BIG, 0.0], [BIG, -BIG, 0.0], [-BIG, -BIG, BIG]]
    r = xc.score(z, [1, 0, 2], input_type="logits")
    assert r.item_loss is not None
    # loss = m + log s - z_y: 1e300 - (-1e300) = 2e300; the argmax item: log1p(0) = 0
    assert r.item_loss.tolist() == [exact(2 * BIG), 0.0, 0.0]
    assert r.loss_sum == exact(2 * BIG)
    assert r.warnings == []
    # smoothing 0.3, K = 3: 0.7 * 2e300 + 0.1 * (0 + 2e300 + 1e300) = 1.7e300
    rs = xc.score(z[:1], [1], input_type="logits", label_smoothing=0.3)
    assert rs.loss_mean == exact(1.7 * BIG)
    # confidences are exact too
    assert r.confidence.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "opts",
    [
        {"focal_gamma": 2.0},
        {"focal_alpha": 0.5},
        {"class_weights": [1.0, 3.0]},
        {"label_smoothing": 0.2, "focal_gamma": 1.0},
    ],
)
def test_general_path_logits_up_to_1e300(opts: dict[str, Any]) -> None:
    z = [[BIG, -BIG], [-BIG, BIG]]
    r = xc.score(z, [1, 1], input_type="logits", **opts)
    assert r.item_loss is not None and np.isfinite(r.item_loss).all()
    assert r.warnings == []
    w1 = opts.get("class_weights", [1.0, 1.0])[1]
    e = opts.get("label_smoothing", 0.0)
    alpha = opts.get("focal_alpha", 1.0)
    # item 0: -log p_1 = 2e300 (and p_1 = 0 so the focal factor is 1); w_0 log p_0 = 0
    assert r.item_loss[0] == exact(alpha * w1 * (1 - e / 2) * 2 * BIG)
    # distribution targets take the same route
    q = xc.score(z, [[0.5, 0.5], [0.0, 1.0]], input_type="logits")
    assert q.item_loss is not None
    assert q.item_loss[0] == exact(BIG)


def test_binary_logits_up_to_1e300_are_exact() -> None:
    z = [BIG, -BIG, BIG, -BIG, 0.0]
    r = xc.score(z, [0, 1, 1, 0, 1], input_type="logits")
    assert r.item_loss is not None
    assert r.item_loss.tolist() == [exact(BIG), exact(BIG), 0.0, 0.0, exact(math.log(2))]
    assert r.warnings == []
    rp = xc.score(z, [0, 1, 1, 0, 1], input_type="logits", pos_weight=2.0, focal_gamma=2.0)
    assert rp.item_loss is not None and np.isfinite(rp.item_loss).all()
    assert rp.item_loss[1] == exact(2 * BIG)
    ml = xc.score([[BIG, -BIG]], [[0, 0]], task="multilabel", input_type="logits")
    assert ml.loss_mean == exact(BIG / 2)


def test_confident_items_keep_their_digits() -> None:
    """log1p / softplus: a loss of 4e-18 is computed, not rounded to 0 (torch gives -0.0)."""
    want = math.log1p(math.exp(-40.0))  # 4.248354255291589e-18
    r = xc.score([[40.0, 0.0], [0.0, 40.0]], [0, 1], input_type="logits")
    assert r.item_loss is not None
    assert r.item_loss.tolist() == [exact(want), exact(want)]
    b = xc.score([40.0, -40.0], [1, 0], input_type="logits")
    assert b.item_loss is not None
    assert b.item_loss.tolist() == [exact(want), exact(want)]
    # smoothing keeps them too: (1 - e) l + (e / 2)(l + 40 + l) with K = 2
    s = xc.score([[40.0, 0.0]], [0], input_type="logits", label_smoothing=0.1)
    assert s.loss_mean == pytest.approx(0.9 * want + 0.05 * (2 * want + 40.0), rel=1e-15)


# ---------------------------------------------------------------------------------------------
# float32 against float64 on the same values


def _pair(x32: npt.NDArray[Any], labels: Any, **opts: Any) -> tuple[xc.ScoreResult, xc.ScoreResult]:
    return xc.score(x32, labels, **opts), xc.score(x32.astype(np.float64), labels, **opts)


def _close(a: xc.ScoreResult, b: xc.ScoreResult, *, loss_floor: float = 1e-6) -> None:
    assert a.item_loss is not None and b.item_loss is not None
    big = np.abs(b.item_loss) >= loss_floor
    np.testing.assert_allclose(a.item_loss[big], b.item_loss[big], rtol=1e-6)
    np.testing.assert_allclose(a.item_loss[~big], b.item_loss[~big], rtol=1e-5, atol=1e-12)
    assert a.loss_mean == pytest.approx(b.loss_mean, rel=1e-6)
    assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-6)
    # confidence: 1 - H / log K of a near-uniform row is a cancellation, hence atol
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.asarray(a.predicted), np.asarray(b.predicted))


@pytest.mark.parametrize(
    ("k", "n", "scale"), [(2, 4000, 6.0), (10, 1000, 5.0), (1000, 20, 8.0), (32000, 2, 10.0)]
)
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"label_smoothing": 0.1},
        {"label_smoothing": 0.3, "weights": True},
        {"confidence": "margin"},
        {"confidence": "entropy"},
        {"confidence": "true_class", "focal_gamma": 2.0},
    ],
    ids=["plain", "smooth", "smooth_weights", "margin", "entropy", "true_class_focal"],
)
def test_float32_logits_within_1e6_of_float64(
    k: int, n: int, scale: float, opts: dict[str, Any]
) -> None:
    rng = np.random.default_rng(k)
    z = rng.normal(0.0, scale, size=(n, k)).astype(np.float32)
    y = rng.integers(0, k, size=n)
    o = dict(opts)
    if o.pop("weights", False):
        o["class_weights"] = rng.uniform(0.2, 3.0, size=k)
    a, b = _pair(z, y, input_type="logits", **o)
    _close(a, b)


@pytest.mark.parametrize(
    "opts",
    [{}, {"label_smoothing": 0.2}, {"confidence": "margin"}, {"focal_gamma": 1.5}],
    ids=["plain", "smooth", "margin", "focal"],
)
def test_float32_probabilities_within_1e6_of_float64(opts: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.full(6, 0.5), size=500).astype(np.float32)
    y = rng.integers(0, 6, size=500)
    _close(*_pair(p, y, **opts))
    _close(*_pair(np.log(p), y, input_type="log_probabilities", sum_tolerance=1e-3, **opts))
    pb = rng.uniform(0.0, 1.0, size=500).astype(np.float32)
    _close(*_pair(pb, (rng.uniform(size=500) < pb).astype(int), **opts))


def test_float16_inputs_are_widened() -> None:
    z = np.array([[1.5, -0.25, 3.0], [0.0, 2.0, -1.0]], dtype=np.float16)
    a, b = _pair(z, [2, 0], input_type="logits")
    _close(a, b)
    assert a.item_loss is not None and a.item_loss.dtype == np.float64


def test_float32_small_losses_within_1e6_of_float64() -> None:
    z = np.array([[17.3, -1.748255729675293]], dtype=np.float32)
    z64 = z.astype(np.float64)
    want = math.log1p(math.exp(z64[0, 1] - z64[0, 0]))  # 5.338853168964388e-09
    r = xc.score(z, [0], input_type="logits")
    assert r.loss_mean == pytest.approx(want, rel=1e-6, abs=0.0)
