"""Classwise ECE, RMS calibration error and the binary reliability curve of ``xc.calibration``.

Three references: torchmetrics through the committed golden vectors of
``tests/golden/make_calibration_golden.py`` (torchmetrics is not a dependency); a plain
implementation of each formula written here with Python loops (float64, to 1e-12); and
scikit-learn's ``calibration_curve``, live.
"""

from __future__ import annotations

import importlib
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.special import expit, softmax
from sklearn.calibration import calibration_curve

import xentcore as xc

# the module, not the function ``xentcore.calibration`` that shadows it on the package
cal = importlib.import_module("xentcore.calibration")

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "calibration_breadth.json"


@cache
def _golden() -> dict[str, Any]:
    cases: dict[str, Any] = json.loads(GOLDEN.read_text())["cases"]
    return cases


# ---------------------------------------------------------------------------------------------
# torchmetrics (golden)


@pytest.mark.parametrize("name", sorted(_golden()))
def test_against_torchmetrics(name: str) -> None:
    """float32 on torchmetrics' side: agreement to float32 accumulation."""
    case = _golden()[name]
    c = xc.calibration(case["predictions"], case["labels"], n_bins=case["n_bins"])
    assert c.rms_calibration_error == pytest.approx(case["rms_calibration_error"], rel=1e-5)
    assert c.classwise_ece == pytest.approx(case["classwise_ece"], rel=1e-5)
    assert c.ece == pytest.approx(case["ece"], rel=1e-5)  # the existing figure, checked too
    assert c.mce == pytest.approx(case["mce"], rel=1e-5)
    assert (c.reliability_curve is None) == (case["task"] == "multiclass")


# ---------------------------------------------------------------------------------------------
# Plain references


def ref_bins(values: list[float], n_bins: int, strategy: str) -> list[int]:
    """API.md section 4: uniform bin min(max(ceil(c B) - 1, 0), B - 1), or quantile edges."""
    if strategy == "uniform":
        return [min(max(math.ceil(v * n_bins) - 1, 0), n_bins - 1) for v in values]
    edges = np.quantile(values, np.linspace(0, 1, n_bins + 1))
    return [int(np.searchsorted(edges[1:-1], v, side="left")) for v in values]


def ref_classwise(p: F64, y: I64, n_bins: int, strategy: str, w: F64) -> float:
    n, k = p.shape
    total = 0.0
    for j in range(k):
        bins = ref_bins(p[:, j].tolist(), n_bins, strategy)
        for b in range(n_bins):
            gap = sum(w[i] * ((y[i] == j) - p[i, j]) for i in range(n) if bins[i] == b)
            total += abs(gap)
    return total / (k * float(w.sum()))


def ref_rms(conf: F64, correct: F64, n_bins: int, strategy: str, w: F64) -> float:
    bins = ref_bins(conf.tolist(), n_bins, strategy)
    total = 0.0
    for b in range(n_bins):
        members = [i for i in range(len(bins)) if bins[i] == b]
        wb = sum(w[i] for i in members)
        if wb > 0:
            acc = sum(w[i] * correct[i] for i in members) / wb
            mean = sum(w[i] * conf[i] for i in members) / wb
            total += wb / float(w.sum()) * (acc - mean) ** 2
    return math.sqrt(total)


def _multiclass(seed: int, n: int = 200, k: int = 4) -> tuple[F64, I64]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.5
    return z, rng.integers(0, k, n)


CASES = ["multiclass", "binary"]


def _case(kind: str, seed: int) -> tuple[Any, Any, F64, I64, dict[str, Any]]:
    """(predictions, labels, probability matrix, true class, options) of a logits case."""
    z, y = _multiclass(seed)
    if kind == "binary":
        zb = z[:, 0] - z[:, 1]
        yb = (y % 2).astype(np.int64)
        q = expit(zb)
        return zb, yb, np.stack([1 - q, q], axis=1), yb, {"input_type": "logits"}
    return z, y, softmax(z, axis=1), y, {"input_type": "logits"}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [1, 6, 15])
@pytest.mark.parametrize("kind", CASES)
def test_against_plain_reference(kind: str, n_bins: int, strategy: str, weighted: bool) -> None:
    x, y, p, truth, options = _case(kind, n_bins)
    w = np.random.default_rng(0).uniform(0, 2, len(truth)) if weighted else np.ones(len(truth))
    if weighted:
        options["sample_weights"] = w
    c = xc.calibration(x, y, n_bins=n_bins, strategy=strategy, **options)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == truth).astype(float)
    assert c.classwise_ece == pytest.approx(ref_classwise(p, truth, n_bins, strategy, w), rel=1e-11)
    assert c.rms_calibration_error == pytest.approx(
        ref_rms(conf, correct, n_bins, strategy, w), rel=1e-11
    )


def test_hand_computed() -> None:
    # binary p = 0.9, 0.8, 0.3, 0.6 with y = 1, 1, 0, 0; top-label confidences 0.9, 0.8, 0.7,
    # 0.6 with correct 1, 1, 1, 0; five bins: gaps -0.6 (1 item), +0.5 (2), +0.1 (1)
    c = xc.calibration([0.9, 0.8, 0.3, 0.6], [1, 1, 0, 0], n_bins=5)
    assert c.rms_calibration_error == pytest.approx(
        math.sqrt((0.36 + 0.25 / 2 + 0.01) / 4), rel=1e-14
    )
    # class 1 (p): bins (0.2,0.4]: 0.3 -> 0 - 0.3; (0.4,0.6]: 0.6 -> -0.6; (0.6,0.8]: 0.8 ->
    # 0.2; (0.8,1]: 0.9 -> 0.1. Class 0 (1 - p) mirrors it: 0.7, 0.4, 0.2, 0.1 -> the same gaps.
    assert c.classwise_ece == pytest.approx((0.3 + 0.6 + 0.2 + 0.1) / 4, rel=1e-14)
    p = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    got = cal.classwise_calibration_error(p, np.array([0, 1, 1]), n_bins=2)
    assert got == pytest.approx((0.7 + 0.7) / 6, rel=1e-14)


@pytest.mark.parametrize("kind", CASES)
def test_invariants(kind: str) -> None:
    """ECE <= RMS <= MCE (a weighted mean, a root mean square and a max of the same gaps);
    classwise ECE in [0, 1]; whole-number weights are repeated rows."""
    x, y, _, _, options = _case(kind, 3)
    c = xc.calibration(x, y, **options)
    assert c.ece is not None and c.rms_calibration_error is not None and c.mce is not None
    assert c.ece <= c.rms_calibration_error + 1e-15 <= c.mce + 2e-15
    assert c.classwise_ece is not None and 0.0 <= c.classwise_ece <= 1.0
    reps = np.random.default_rng(1).integers(0, 4, len(y))
    weighted = xc.calibration(x, y, sample_weights=reps.astype(float), **options)
    repeated = xc.calibration(np.repeat(x, reps, axis=0), np.repeat(y, reps), **options)
    assert weighted.classwise_ece == pytest.approx(repeated.classwise_ece, rel=1e-12)
    assert weighted.rms_calibration_error == pytest.approx(
        repeated.rms_calibration_error, rel=1e-12
    )
    if kind == "binary":
        assert weighted.reliability_curve is not None and repeated.reliability_curve is not None
        for key in ("prob_true", "prob_pred"):
            np.testing.assert_allclose(
                weighted.reliability_curve[key], repeated.reliability_curve[key], rtol=1e-12
            )


def test_ignored_items_are_left_out() -> None:
    z, y = _multiclass(4)
    ignored = np.where(np.arange(len(y)) % 3 == 0, -100, y)
    c = xc.calibration(z, ignored, input_type="logits", ignore_index=-100)
    keep = ignored != -100
    want = xc.calibration(z[keep], y[keep], input_type="logits")
    assert c.classwise_ece == pytest.approx(want.classwise_ece, rel=1e-14)
    assert c.rms_calibration_error == pytest.approx(want.rms_calibration_error, rel=1e-14)
    nothing = xc.calibration(z[:2], [-100, -100], input_type="logits", ignore_index=-100)
    assert nothing.classwise_ece is None and nothing.rms_calibration_error is None


def test_chunked_classwise_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uniform path sums bins chunk by chunk; tiny chunks give the same figure."""
    z, y = _multiclass(5, n=300)
    want = cal.classwise_calibration_error(softmax(z, axis=1), y, n_bins=15)
    monkeypatch.setattr(cal, "chunk_rows", lambda n, k: (slice(i, i + 7) for i in range(0, n, 7)))
    got = xc.calibration(z, y, input_type="logits").classwise_ece
    assert got == pytest.approx(want, rel=1e-13)


# ---------------------------------------------------------------------------------------------
# The reliability curve against scikit-learn


def _binary_inputs(seed: int, n: int = 300) -> tuple[F64, I64]:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.8, 0.8, n)
    p[:6] = [0.0, 0.2, 0.4, 0.5, 0.6, 1.0]  # on the edges of the 5 and 10 uniform bins
    return p, (rng.uniform(size=n) < p**1.3).astype(np.int64)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15, 40])
def test_reliability_curve_is_sklearns(n_bins: int, strategy: str) -> None:
    p, y = _binary_inputs(n_bins)
    c = xc.calibration(p, y, n_bins=n_bins, strategy=strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    assert c.reliability_curve is not None
    np.testing.assert_array_equal(c.reliability_curve["prob_true"], prob_true)
    np.testing.assert_array_equal(c.reliability_curve["prob_pred"], prob_pred)
    counts = c.reliability_curve["count"]
    assert sum(counts) == len(p) and len(counts) == len(prob_true) and min(counts) > 0


@pytest.mark.parametrize("input_type", ["logits", "log_probabilities"])
def test_reliability_curve_of_other_inputs(input_type: str) -> None:
    rng = np.random.default_rng(8)
    z = rng.normal(size=200) * 2
    y = (rng.uniform(size=200) < expit(z)).astype(np.int64)
    x = z if input_type == "logits" else -np.logaddexp(0, -z)
    c = xc.calibration(x, y, input_type=input_type, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, expit(z), n_bins=10)
    assert c.reliability_curve is not None
    np.testing.assert_allclose(c.reliability_curve["prob_true"], prob_true, rtol=1e-15)
    np.testing.assert_allclose(c.reliability_curve["prob_pred"], prob_pred, rtol=1e-13)


def test_reliability_curve_soft_labels_and_multiclass() -> None:
    """Soft binary targets count as [y >= 0.5] (API.md section 1); multiclass has no curve."""
    p, y = _binary_inputs(2)
    soft = np.where(y == 1, 0.7, 0.2)
    got = xc.calibration(p, soft, n_bins=5).reliability_curve
    assert got == xc.calibration(p, y, n_bins=5).reliability_curve
    z, yk = _multiclass(1)
    assert xc.calibration(z, yk, input_type="logits").reliability_curve is None
