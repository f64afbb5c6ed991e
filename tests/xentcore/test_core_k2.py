"""K = 2 logits take a closed form (delta = exp(-|z_1 - z_0|)) instead of row reductions.

It is checked against the explicit float64 log-softmax of the general kernel for every option
it serves, and by hand on extreme and tied logits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from xentcore import multiclass
from xentcore.types import ScoreOptions

METHODS = ["max_probability", "margin", "entropy", "true_class"]


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 4.0, size=(500, 2))
    y = rng.integers(0, 2, size=500)
    z[:20, 1] = z[:20, 0]  # ties: class 0, as argmax
    z[20:40] *= 1e3  # confident rows, tiny losses
    big = np.array([[1e300, -1e300], [-1e300, 1e300], [1e300, 1e300], [0.0, 1e-300]])
    return [
        ("normal", z, y),
        ("float32", z.astype(np.float32), y),
        ("extreme", big, np.array([1, 1, 0, 0])),
    ]


CASES = _cases()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weights": np.array([0.3, 2.0])},
        {"smoothing": 0.2},
        {"weights": np.array([1.5, 0.5]), "smoothing": 0.1},
    ],
    ids=["plain", "weights", "smoothing", "both"],
)
@pytest.mark.parametrize(("name", "z", "y"), CASES, ids=[c[0] for c in CASES])
def test_pair_path_matches_the_explicit_log_softmax(
    name: str, z: np.ndarray, y: np.ndarray, options: dict[str, Any], method: str
) -> None:
    o = ScoreOptions(
        task="multiclass",
        input_type="logits",
        clip_eps=1e-16,
        confidence=method,  # type: ignore[arg-type]
        class_weights=options.get("weights"),
        label_smoothing=options.get("smoothing", 0.0),
    )
    got = multiclass.sweep(z, o, index=y)
    want = multiclass._general(z.astype(np.float64), y, None, o)
    np.testing.assert_array_equal(got.predicted, want.predicted)
    assert got.loss is not None and want.loss is not None
    # the general kernel's log(s) rounds tiny losses to ~1e-16 absolute: hence atol
    np.testing.assert_allclose(got.loss, want.loss, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.top_confidence, want.top_confidence, rtol=1e-12)
    np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-12, atol=1e-15)


def test_pair_path_by_hand() -> None:
    z = np.array([[2.0, -1.0], [0.5, 0.5], [1e300, -1e300], [-3.0, 4.0]])
    r = xc.score(z, [1, 1, 1, 1], input_type="logits", confidence="margin")
    a = np.array([3.0, 0.0, 2e300, 7.0])
    softplus = np.log1p(np.exp(-a))
    np.testing.assert_allclose(r.item_loss, [3.0 + softplus[0], softplus[1], 2e300, softplus[3]])
    assert r.predicted.tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(r.top_confidence, 1 / (1 + np.exp(-a)))
    np.testing.assert_allclose(r.confidence, np.tanh(a / 2))  # p_top - p_other
    # a confident, correct item keeps its digits: log1p(exp(-40)) = 4.248e-18
    r = xc.score(np.array([[0.0, 40.0]], dtype=np.float32), [1], input_type="logits")
    assert r.item_loss[0] == pytest.approx(math.log1p(math.exp(-40.0)), rel=1e-15)


def test_pair_path_with_ignored_items_and_sample_weights() -> None:
    z = np.array([[1.0, 2.0], [3.0, -1.0], [0.0, 0.0]])
    r = xc.score(
        z, [1, -100, 0], input_type="logits", ignore_index=-100, sample_weights=[2.0, 5.0, 1.0]
    )
    loss = [math.log1p(math.exp(-1.0)), math.log(2.0)]
    assert np.isnan(r.item_loss[1])
    assert r.loss_sum == pytest.approx(2.0 * loss[0] + loss[1], rel=1e-15)
    assert r.loss_mean == pytest.approx((2.0 * loss[0] + loss[1]) / 3.0, rel=1e-15)
