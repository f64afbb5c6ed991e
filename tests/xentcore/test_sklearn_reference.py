"""xentcore against scikit-learn, live: ``log_loss``, ``brier_score_loss``; and ECE / MCE against
an independent loop implementation of the contract's section 4 (``/v1/calibration``).

scikit-learn clips to [eps, 1 - eps] with eps the machine epsilon of the input's dtype; xentcore's
``clip_eps`` defaults to the float64 epsilon whatever the dtype, so float32 batches with clipped
values are compared with ``clip_eps=float(np.finfo(np.float32).eps)``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import brier_score_loss, log_loss

import xentcore as xc

F64 = npt.NDArray[np.float64]
EPS32 = float(np.finfo(np.float32).eps)


def _probs(rng: np.random.Generator, n: int, k: int, conc: float = 0.8) -> F64:
    return rng.dirichlet(np.full(k, conc), size=n)


def _binary_batch(seed: int, n: int = 200) -> tuple[F64, npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, size=n)
    y = (rng.uniform(size=n) < p).astype(np.int64)
    return p, y


# ---------------------------------------------------------------------------------------------
# log_loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_log_loss(seed: int) -> None:
    p, y = _binary_batch(seed)
    r = xc.score(p, y)
    assert r.loss_mean == pytest.approx(log_loss(y, p), rel=1e-12)
    assert r.loss_sum == pytest.approx(log_loss(y, p, normalize=False), rel=1e-12)
    assert r.warnings == []


def test_binary_log_loss_sample_weight() -> None:
    p, y = _binary_batch(3)
    s = np.random.default_rng(4).uniform(0.0, 3.0, size=p.size)
    r = xc.score(p, y, sample_weights=s)
    assert r.loss_mean == pytest.approx(log_loss(y, p, sample_weight=s), rel=1e-12)
    assert r.loss_sum == pytest.approx(log_loss(y, p, sample_weight=s, normalize=False), rel=1e-12)


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (3, 1), (7, 2), (50, 3)])
def test_multiclass_log_loss(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = _probs(rng, 300, k)
    y = rng.integers(0, k, size=300)
    ref = log_loss(y, p, labels=np.arange(k))
    r = xc.score(p, y)
    assert r.loss_mean == pytest.approx(ref, rel=1e-12)
    assert r.n_scored == 300
    # the same through one-hot target distributions, and through log-probabilities
    assert xc.score(p, np.eye(k)[y]).loss_mean == pytest.approx(ref, rel=1e-12)
    r_log = xc.score(np.log(p), y, input_type="log_probabilities")
    assert r_log.loss_mean == pytest.approx(ref, rel=1e-12)


def test_multiclass_log_loss_sample_weight() -> None:
    rng = np.random.default_rng(11)
    p = _probs(rng, 150, 4)
    y = rng.integers(0, 4, size=150)
    s = rng.uniform(0.0, 5.0, size=150)
    s[:10] = 0.0
    r = xc.score(p, y, sample_weights=s)
    assert r.loss_mean == pytest.approx(log_loss(y, p, sample_weight=s, labels=range(4)), rel=1e-12)
    assert r.loss_sum == pytest.approx(
        log_loss(y, p, sample_weight=s, labels=range(4), normalize=False), rel=1e-12
    )


def test_exact_zero_one_probabilities_float64() -> None:
    """Right and wrong 0/1 predictions: clipped at the float64 eps, a miss costs 36.04."""
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.3])
    y = np.array([0, 1, 1, 0, 1])
    r = xc.score(p, y)
    assert r.loss_mean == pytest.approx(log_loss(y, p), rel=1e-12)
    assert r.item_loss is not None
    assert r.item_loss[2] == pytest.approx(-math.log(np.finfo(np.float64).eps), rel=1e-12)
    assert r.item_loss[2] == pytest.approx(36.04365338911715, rel=1e-12)
    assert any("clipped" in w for w in r.warnings)

    pm = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    ym = np.array([0, 2, 2, 2])
    rm = xc.score(pm, ym)
    assert rm.loss_mean == pytest.approx(log_loss(ym, pm, labels=range(3)), rel=1e-12)


@pytest.mark.parametrize("k", [2, 5])
def test_float32_unclipped_matches_sklearn(k: int) -> None:
    """No value clipped: the float32 result equals scikit-learn on the same float32 values."""
    rng = np.random.default_rng(20 + k)
    p32 = (_probs(rng, 100, k, conc=3.0) * 0.98 + 0.02 / k).astype(np.float32)
    y = rng.integers(0, k, size=100)
    assert p32.min() > EPS32
    r = xc.score(p32, y)
    assert r.warnings == []
    # scikit-learn computes in float32; compare with its float64 run on the same values too
    ref32 = log_loss(y, p32, labels=range(k))
    with warnings.catch_warnings():
        # float32 rows sum to 1 +- 1e-7, beyond scikit-learn's float64 check of sqrt(eps)
        warnings.filterwarnings("ignore", "The y_prob values do not sum to one", UserWarning)
        ref64 = log_loss(y, p32.astype(np.float64), labels=range(k))
    assert r.loss_mean == pytest.approx(ref64, rel=1e-12)
    assert r.loss_mean == pytest.approx(ref32, rel=1e-6)


def test_float32_clipped_matches_sklearn_with_float32_eps() -> None:
    """With exact 0/1 in float32, scikit-learn clips at the float32 eps (a miss costs 15.94)."""
    p32 = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    ref = log_loss(y, p32, labels=range(2))
    r = xc.score(p32, y, clip_eps=EPS32)
    assert r.loss_mean == pytest.approx(ref, rel=1e-6)
    assert r.item_loss is not None
    assert r.item_loss[1] == pytest.approx(15.942385152878742, rel=1e-6)
    assert any("clipped" in w for w in r.warnings)
    # the default clip_eps is the float64 eps whatever the dtype
    r64 = xc.score(p32, y)
    assert r64.item_loss is not None
    assert r64.item_loss[1] == pytest.approx(36.04365338911715, rel=1e-12)
    # binary float32
    pb = np.array([0.0, 1.0, 0.5, 1.0], dtype=np.float32)
    yb = np.array([1, 1, 0, 0])
    assert xc.score(pb, yb, clip_eps=EPS32).loss_mean == pytest.approx(log_loss(yb, pb), rel=1e-6)


def test_single_class_batches() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0.05, 0.95, size=20)
    y = np.ones(20, dtype=np.int64)
    assert xc.score(p, y).loss_mean == pytest.approx(log_loss(y, p, labels=[0, 1]), rel=1e-12)
    pm = _probs(rng, 20, 4)
    ym = np.full(20, 2)
    assert xc.score(pm, ym).loss_mean == pytest.approx(log_loss(ym, pm, labels=range(4)), rel=1e-12)
    one = xc.score(np.array([0.8]), np.array([0]))
    assert one.loss_mean == pytest.approx(log_loss([0], [0.8], labels=[0, 1]), rel=1e-12)


def test_string_labels_with_class_names() -> None:
    """scikit-learn's docstring example; its classes are ordered alphabetically."""
    p = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]])
    y = ["spam", "ham", "ham", "spam"]
    ref = log_loss(y, p)
    assert ref == pytest.approx(0.21616, abs=1e-5)
    assert xc.score(p, y, class_names=["ham", "spam"]).loss_mean == pytest.approx(ref, rel=1e-12)
    assert xc.score(p[:, 1], y, class_names=["ham", "spam"]).loss_mean == pytest.approx(
        ref, rel=1e-12
    )


def test_rows_off_by_less_than_tolerance_are_not_renormalised() -> None:
    """Rows summing to 1 +- 5e-5 are accepted and used as given, as scikit-learn does."""
    rng = np.random.default_rng(6)
    p = _probs(rng, 30, 3) * (1.0 + 5e-5)
    y = rng.integers(0, 3, size=30)
    with pytest.warns(UserWarning, match="do not sum to one"):
        ref = log_loss(y, p, labels=range(3))
    assert xc.score(p, y).loss_mean == pytest.approx(ref, rel=1e-12)
    # renormalize=True divides by the sums instead
    renorm = log_loss(y, p / p.sum(axis=1, keepdims=True), labels=range(3))
    assert xc.score(p, y, renormalize=True).loss_mean == pytest.approx(renorm, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# calibration: nll and brier


@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_binary_nll_and_brier(seed: int) -> None:
    p, y = _binary_batch(seed, 250)
    c = xc.calibration(p, y)
    assert c.nll == pytest.approx(log_loss(y, p), rel=1e-12)
    assert c.brier == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    assert c.n_scored == 250


def test_calibration_binary_sample_weight() -> None:
    p, y = _binary_batch(7, 120)
    s = np.random.default_rng(8).uniform(0.1, 2.0, size=120)
    c = xc.calibration(p, y, sample_weights=s)
    assert c.nll == pytest.approx(log_loss(y, p, sample_weight=s), rel=1e-12)
    assert c.brier == pytest.approx(brier_score_loss(y, p, sample_weight=s), rel=1e-12)


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (3, 1), (10, 2)])
def test_calibration_multiclass_nll_and_brier(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = _probs(rng, 200, k)
    y = rng.integers(0, k, size=200)
    c = xc.calibration(p, y)
    assert c.nll == pytest.approx(log_loss(y, p, labels=range(k)), rel=1e-12)
    # section 4: mean_i sum_k (p_ik - y_ik)^2 -- scikit-learn halves it for K = 2 under "auto"
    ref = brier_score_loss(y, p, labels=range(k), scale_by_half=False)
    assert c.brier == pytest.approx(ref, rel=1e-12)
    # logits give the same figures through their softmax
    z = np.log(p) + rng.normal(size=(200, 1))
    cz = xc.calibration(z, y, input_type="logits")
    assert cz.brier == pytest.approx(ref, rel=1e-9)
    assert cz.nll == pytest.approx(c.nll, rel=1e-9)
    assert cz.ece == pytest.approx(c.ece, rel=1e-9, abs=1e-12)


def test_calibration_multiclass_brier_sample_weight() -> None:
    rng = np.random.default_rng(9)
    p = _probs(rng, 80, 4)
    y = rng.integers(0, 4, size=80)
    s = rng.uniform(0.0, 2.0, size=80)
    c = xc.calibration(p, y, sample_weights=s)
    assert c.brier == pytest.approx(
        brier_score_loss(y, p, labels=range(4), sample_weight=s, scale_by_half=False), rel=1e-12
    )
    assert c.nll == pytest.approx(log_loss(y, p, labels=range(4), sample_weight=s), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# ECE / MCE against an independent implementation of section 4


def reference_bins(conf: F64, correct: npt.NDArray[np.bool_], n_bins: int) -> list[list[float]]:
    """Items per uniform bin, one at a time: bin = min(max(ceil(c B) - 1, 0), B - 1)."""
    bins: list[list[float]] = [[0.0, 0.0, 0.0] for _ in range(n_bins)]  # count, conf, correct
    for c, a in zip(conf.tolist(), correct.tolist(), strict=True):
        b = min(max(math.ceil(c * n_bins) - 1, 0), n_bins - 1)
        bins[b][0] += 1
        bins[b][1] += c
        bins[b][2] += float(a)
    return bins


def reference_ece_mce(
    conf: F64, correct: npt.NDArray[np.bool_], n_bins: int
) -> tuple[float, float]:
    bins = reference_bins(conf, correct, n_bins)
    n = conf.size
    ece = sum(cnt / n * abs(acc / cnt - cs / cnt) for cnt, cs, acc in bins if cnt)
    mce = max(abs(acc / cnt - cs / cnt) for cnt, cs, acc in bins if cnt)
    return ece, mce


def _check_calibration(
    c: xc.CalibrationResult, conf: F64, correct: npt.NDArray[np.bool_], n_bins: int
) -> None:
    ece, mce = reference_ece_mce(conf, correct, n_bins)
    assert c.ece == pytest.approx(ece, rel=1e-10, abs=1e-14)
    assert c.mce == pytest.approx(mce, rel=1e-10, abs=1e-14)
    assert len(c.bins) == n_bins
    for b, (row, (cnt, cs, acc)) in enumerate(
        zip(c.bins, reference_bins(conf, correct, n_bins), strict=True)
    ):
        assert row["lower"] == pytest.approx(b / n_bins, abs=1e-15)
        assert row["upper"] == pytest.approx((b + 1) / n_bins, abs=1e-15)
        assert row["count"] == cnt
        if cnt:
            assert row["mean_confidence"] == pytest.approx(cs / cnt, rel=1e-12)
            assert row["accuracy"] == pytest.approx(acc / cnt, rel=1e-12)
        else:
            assert row["mean_confidence"] is None and row["accuracy"] is None


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15, 30])
def test_ece_multiclass_matches_reference(n_bins: int) -> None:
    rng = np.random.default_rng(100 + n_bins)
    p = _probs(rng, 400, 5, conc=0.5)
    y = rng.integers(0, 5, size=400)
    c = xc.calibration(p, y, n_bins=n_bins)
    conf = p.max(axis=1)
    _check_calibration(c, conf, p.argmax(axis=1) == y, n_bins)


@pytest.mark.parametrize("n_bins", [3, 15])
def test_ece_binary_matches_reference(n_bins: int) -> None:
    p, y = _binary_batch(12 + n_bins, 300)
    p[:5] = [0.5, 0.0, 1.0, 0.2, 0.8]  # 0.5 predicts 1 with confidence 0.5
    c = xc.calibration(p, y, n_bins=n_bins)
    _check_calibration(c, np.maximum(p, 1.0 - p), (p >= 0.5).astype(np.int64) == y, n_bins)


def test_ece_bin_edges_are_right_closed() -> None:
    """A confidence on an edge goes to the bin it closes: 0.2 with B = 5 is bin 0, not 1."""
    p = np.array(
        [
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.4, 0.3, 0.3, 0.0, 0.0],
            [0.6, 0.4, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    y = np.array([0, 1, 0, 0])
    c = xc.calibration(p, y, n_bins=5)
    assert [b["count"] for b in c.bins] == [1, 1, 1, 0, 1]
    _check_calibration(c, p.max(axis=1), p.argmax(axis=1) == y, 5)


def test_ece_ignores_ignored_items() -> None:
    rng = np.random.default_rng(13)
    p = _probs(rng, 100, 3)
    y = rng.integers(0, 3, size=100)
    y_ign = y.copy()
    y_ign[::4] = -100
    keep = y_ign != -100
    c = xc.calibration(p, y_ign, ignore_index=-100)
    assert c.n_scored == int(keep.sum())
    _check_calibration(c, p[keep].max(axis=1), p[keep].argmax(axis=1) == y[keep], 15)
    assert c.nll == pytest.approx(log_loss(y[keep], p[keep], labels=range(3)), rel=1e-12)
    ref = brier_score_loss(y[keep], p[keep], labels=range(3), scale_by_half=False)
    assert c.brier == pytest.approx(ref, rel=1e-12)


def test_distribution_targets_count_as_their_argmax() -> None:
    rng = np.random.default_rng(14)
    p = _probs(rng, 60, 4)
    q = _probs(rng, 60, 4, conc=0.3)
    c = xc.calibration(p, q)
    _check_calibration(c, p.max(axis=1), p.argmax(axis=1) == q.argmax(axis=1), 15)
    assert c.brier == pytest.approx(float(((p - q) ** 2).sum(axis=1).mean()), rel=1e-12)


def test_calibration_figures_are_within_their_ranges() -> None:
    p, y = _binary_batch(15, 50)
    c = xc.calibration(p, y, n_bins=10)
    assert c.ece is not None and c.mce is not None and c.brier is not None
    assert 0.0 <= c.ece <= c.mce <= 1.0
    assert 0.0 <= c.brier <= 1.0
    assert c.temperature is None and c.nll_after is None and c.ece_after is None


def test_quantile_bins_hold_equal_mass() -> None:
    """strategy="quantile": 100 distinct confidences in 10 bins -> 10 items each; ECE over them."""
    rng = np.random.default_rng(16)
    p = _probs(rng, 100, 4)
    y = rng.integers(0, 4, size=100)
    c = xc.calibration(p, y, n_bins=10, strategy="quantile")
    assert [b["count"] for b in c.bins] == [10] * 10
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    order = np.argsort(conf, kind="stable")
    groups = np.split(order, 10)
    gaps = [abs(correct[g].mean() - conf[g].mean()) for g in groups]
    assert c.ece == pytest.approx(
        sum(len(g) / 100 * gap for g, gap in zip(groups, gaps, strict=True)), rel=1e-10
    )
    assert c.mce == pytest.approx(max(gaps), rel=1e-10)
