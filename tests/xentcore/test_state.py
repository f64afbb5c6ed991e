"""``xentcore.Summary``: exact merges, figures equal to the batch's own, a versioned JSON state.

References: ``fractions.Fraction`` (exact rational sums of the per-item values), ``math.fsum``
(correctly rounded sums), and :mod:`xentcore.summary` (the store's BatchSummary and figures).
Property tests are bounded by the profiles of ``tests/conftest.py``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xentcore as xc
from xentcore import state
from xentcore.calibration import uniform_bin_index
from xentcore.state import FORMAT, DoubleDouble, Summary
from xentcore.summary import (
    N_BINS,
    BatchSummary,
    figures,
    reliability,
    summarize,
    summarize_sequences,
)
from xentcore.types import FlagRules

U = 2.0**-53  # float64's unit roundoff
TINY = 2.0**-1074  # the smallest subnormal: absolute slack where lo parts underflow
F64 = npt.NDArray[np.float64]


def exact(values: Sequence[float]) -> Fraction:
    return sum((Fraction(v) for v in values), Fraction(0))


def value(d: DoubleDouble) -> Fraction:
    return Fraction(d.hi) + Fraction(d.lo)


def close(a: float | None, b: float | None, rel: float = 1e-12) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * max(abs(a), abs(b)) or a == b


def assert_figures_close(got: dict[str, Any], want: dict[str, Any], rel: float = 1e-12) -> None:
    assert set(want) <= set(got)
    for key, w in want.items():
        g = got[key]
        if isinstance(w, list):
            assert_rows_close(g, w)
        elif isinstance(w, int) and not isinstance(w, bool):
            assert g == w, key
        else:
            assert close(g, w, rel), (key, g, w)


def exact_ece(r: xc.ScoreResult) -> float | None:
    """sum_b |sum_{i in b} (correct_i - c_i)| / n over scored items, in exact rationals."""
    if r.top_confidence is None or r.correct is None:
        return None
    keep = slice(None) if r.scored is None else r.scored
    conf, correct = r.top_confidence[keep], r.correct[keep]
    gaps = [Fraction(0)] * N_BINS
    index = uniform_bin_index(conf, N_BINS).tolist()
    for b, c, ok in zip(index, conf.tolist(), correct.tolist(), strict=True):
        gaps[b] += int(ok) - Fraction(c)
    return float(sum(abs(g) for g in gaps) / conf.size) if conf.size else None


def assert_rows_close(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want) == N_BINS
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        assert all(close(g[k], w[k]) for k in w), (g, w)


# ---------------------------------------------------------------------------------------------
# DoubleDouble: one vector sum, one merge


def test_double_double_keeps_what_float_loses() -> None:
    # 1e300 + 1 - 1e300: float64 gives 0, the pair keeps the 1
    assert 1e300 + 1.0 - 1e300 == 0.0
    assert DoubleDouble.sum_of([1e300, 1.0, -1e300]) == DoubleDouble(1.0, 0.0)
    a, b = DoubleDouble.sum_of([1e300, 1.0]), DoubleDouble.sum_of([-1e300])
    assert a == DoubleDouble(1e300, 1.0) and (a + b) == DoubleDouble(1.0, 0.0)
    # 0.1 + 0.2: hi is the rounded sum, lo what rounding dropped
    d = DoubleDouble.sum_of([0.1, 0.2])
    assert d.hi == 0.30000000000000004 and value(d) == Fraction(0.1) + Fraction(0.2)
    assert float(d) == d.hi and (d - d) == DoubleDouble(0.0, 0.0)
    assert DoubleDouble.of_int(2**60 + 1) == DoubleDouble(2.0**60, 1.0)
    assert DoubleDouble.sum_of([]) == DoubleDouble()


def test_overflow_is_infinite_with_no_residual() -> None:
    assert DoubleDouble.sum_of([1e308, 1e308]) == DoubleDouble(math.inf, 0.0)
    # a partial sum beyond float64: the plain float64 sum, as BatchSummary's
    assert DoubleDouble.sum_of([1e308, 1e308, -1e308]).hi == math.inf
    big = np.full(5000, 1e308)  # the lane path
    assert DoubleDouble.sum_of(big) == DoubleDouble(math.inf, 0.0)
    assert DoubleDouble(1e308, 0.0) + DoubleDouble(1e308, 0.0) == DoubleDouble(math.inf, 0.0)
    assert DoubleDouble(math.inf, 0.0) + DoubleDouble(1.0, 1e-17) == DoubleDouble(math.inf, 0.0)


@pytest.mark.parametrize("n", [2049, 5000, 70_001, 300_003])
def test_lane_sum_within_its_bound(n: int) -> None:
    """Past 2048 values: within (m + 24)^2 u^2 sum |x| (m rows per lane), checked with fsum."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)
    x[::7][: x[1::7].size] = -x[1::7]  # cancellation
    d = DoubleDouble.sum_of(x)
    assert d.hi + d.lo == d.hi  # normalised
    # fsum([*x, -hi]) is the correctly rounded residual sum(x) - hi
    residual = math.fsum([*x.tolist(), -d.hi])
    if state._NATIVE_SUMS:  # 8 compiled TwoSum chains: gamma_m^2 sum |x|
        m = math.ceil(n / 8)
        bound = (m * U / (1 - m * U)) ** 2 * float(np.abs(x).sum()) + U * abs(residual)
    else:
        lanes = 4096 if n >= 64 * 4096 else max(256, 1 << ((n // 64).bit_length() - 1))
        m = math.ceil(n / lanes)
        bound = (m + 24) ** 2 * U**2 * float(np.abs(x).sum()) + U * abs(residual)
    assert abs(d.lo - residual) <= bound
    assert abs(d.hi - math.fsum(x.tolist())) <= 2 * U * abs(d.hi)


def test_lane_sum_of_positive_values_is_relative_exact() -> None:
    rng = np.random.default_rng(3)
    x = rng.random(200_000) * 10.0 ** rng.integers(-300, 300, 200_000)
    d = DoubleDouble.sum_of(x)
    want = exact(x.tolist())
    assert abs(value(d) - want) <= 1e-25 * want


# adversarial magnitudes: 1e300 beside 1e-300, subnormals, integers past 2**53, equal +-pairs
MAGNITUDE = st.sampled_from([1e300, 1e200, 1e16, 3.0, 1.0, 1e-16, 1e-200, 1e-300, TINY])
ADVERSARIAL = st.one_of(
    st.builds(
        lambda m, f, s: s * m * f, MAGNITUDE, st.floats(1.0, 1.9), st.sampled_from([1.0, -1.0])
    ),
    st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
)


@st.composite
def cancelling(draw: st.DrawFn, *, min_size: int = 1, max_size: int = 40) -> list[float]:
    """Values and the negation of some of them, shuffled: sums that cancel, often exactly."""
    base = draw(st.lists(ADVERSARIAL, min_size=min_size, max_size=max_size))
    negated = [-v for v, keep in zip(base, draw(st.lists(st.booleans())), strict=False) if keep]
    return draw(st.permutations(base + negated))


@st.composite
def partition(draw: st.DrawFn, values: list[float]) -> list[list[float]]:
    """The values cut into consecutive parts (empty parts included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(values)), max_size=6)))
    edges = [0, *cuts, len(values)]
    return [values[a:b] for a, b in itertools.pairwise(edges)]


def merge_randomly(draw: Callable[..., Any], parts: list[Any]) -> Any:
    """Merge by +, in a drawn order and grouping: any binary tree over any permutation."""
    parts = list(draw(st.permutations(parts)))
    while len(parts) > 1:
        i = draw(st.integers(0, len(parts) - 2))
        a, b = parts[i], parts[i + 1]
        parts[i : i + 2] = [a + b if draw(st.booleans()) else b + a]
    return parts[0]


def merge_bound(values: Sequence[float], n_parts: int) -> Fraction:
    """3 u^2 per merge (and u^2 per part's fsum) of sum |x|, plus subnormal slack."""
    total_abs = sum((abs(Fraction(v)) for v in values), Fraction(0))
    return (3 * n_parts + 1) * Fraction(U) ** 2 * total_abs * Fraction(101, 100) + 8 * n_parts * (
        Fraction(TINY)
    )


@given(cancelling())
def test_sum_of_is_the_exact_sum_rounded_twice(values: list[float]) -> None:
    d = DoubleDouble.sum_of(values)
    want = exact(values)
    assert abs(value(d) - want) <= Fraction(U) ** 2 * abs(want) + Fraction(TINY)
    assert d.hi + d.lo == d.hi


@given(st.data(), cancelling())
def test_any_grouping_matches_the_exact_sum(data: st.DataObject, values: list[float]) -> None:
    parts = data.draw(partition(values))
    got = merge_randomly(data.draw, [DoubleDouble.sum_of(p) for p in parts])
    want = exact(values)
    assert abs(value(got) - want) <= merge_bound(values, len(parts))
    # and so within 1e-12 relative whenever the sum is not a cancellation below 1e-12 sum |x|
    total_abs = sum(abs(Fraction(v)) for v in values)
    if abs(want) * Fraction(10**12) >= total_abs * len(parts) * Fraction(10**-7):
        assert abs(value(got) - want) <= Fraction(10**-12) * abs(want)


@given(st.data(), st.lists(st.floats(0.0, 1e300), min_size=1, max_size=40))
def test_nonnegative_sums_agree_within_1e_12_in_any_grouping(
    data: st.DataObject, values: list[float]
) -> None:
    """Losses, weights, confidences and counts are >= 0: any two groupings agree to 1e-12."""
    parts = data.draw(partition(values))
    first = merge_randomly(data.draw, [DoubleDouble.sum_of(p) for p in parts])
    second = merge_randomly(data.draw, [DoubleDouble.sum_of(p) for p in parts])
    want = exact(values)
    slack = Fraction(TINY) * 16 * len(parts)
    for got in (first, second):
        assert abs(value(got) - want) <= Fraction(10**-12) * want + slack
    assert close(first.hi, second.hi) and close(first.hi, float(want))


@given(ADVERSARIAL, ADVERSARIAL, ADVERSARIAL, ADVERSARIAL, ADVERSARIAL, ADVERSARIAL)
def test_merge_commutes_bitwise_and_associates(
    a1: float, a2: float, b1: float, b2: float, c1: float, c2: float
) -> None:
    a, b, c = (DoubleDouble.sum_of(v) for v in ([a1, a2], [b1, b2], [c1, c2]))
    assert a + b == b + a
    left, right = (a + b) + c, a + (b + c)
    values = [a1, a2, b1, b2, c1, c2]
    assert abs(value(left) - value(right)) <= 2 * merge_bound(values, 3)
    assert abs(value(left) - exact(values)) <= merge_bound(values, 3)


@given(
    st.floats(1e200, 1e300),
    st.lists(st.floats(1e-300, 1e3), min_size=1, max_size=30),
    st.data(),
)
def test_cancelling_giants_leave_the_small_sum(
    big: float, small: list[float], data: st.DataObject
) -> None:
    """+B, many small values, -B, shuffled and cut anywhere: the small sum survives to 1e-12."""
    values = data.draw(st.permutations([big, *small, -big]))
    parts = data.draw(partition(values))
    got = merge_randomly(data.draw, [DoubleDouble.sum_of(p) for p in parts])
    want = exact(small)
    assert abs(value(got) - want) <= Fraction(10**-12) * want


def test_naive_float_sums_fail_where_the_compensated_merge_passes() -> None:
    parts = [[1e300, 0.5, 1e-300], [3.0, -1e300], [1.0]]  # exact sum: 4.5 + 1e-300
    want = exact([v for p in parts for v in p])
    naive = sum(float(np.sum(p)) for p in parts)  # what BatchSummary's + does with its floats
    assert abs(Fraction(naive) - want) > Fraction(10**-12) * want  # 1.0: the 3.5 is lost
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        got = sum((DoubleDouble.sum_of(parts[i]) for i in order), DoubleDouble())
        assert abs(value(got) - want) <= Fraction(10**-12) * want
        assert got.hi == 4.5
    # the same through Summary vs BatchSummary
    summaries = [Summary(task="binary", loss_sum=DoubleDouble.sum_of(p)) for p in parts]
    batch = [BatchSummary(loss_sum=float(np.sum(p))) for p in parts]
    assert sum(summaries, Summary()).loss_sum.hi == 4.5
    assert (batch[0] + batch[1] + batch[2]).loss_sum == 1.0


# ---------------------------------------------------------------------------------------------
# Summary: from a result, figures


def _cases() -> dict[str, Callable[[], xc.ScoreResult]]:
    rng = np.random.default_rng(7)
    n, k = 400, 5
    logits = rng.normal(0, 3, (n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    y_ignored = np.where(rng.random(n) < 0.2, -100, y)
    targets = rng.dirichlet(np.ones(k), n)
    p_bin = rng.random(n)
    y_bin = (rng.random(n) < p_bin).astype(int)
    ml = rng.random((n, 3))
    y_ml = (rng.random((n, 3)) < ml).astype(int)
    flag = {"min_confidence": 0.6, "max_loss": 1.5, "misclassified": True}
    return {
        "binary": lambda: xc.score(p_bin, y_bin, flag=flag),
        "multiclass": lambda: xc.score(probs, y, flag=flag),
        "logits_ignore_index": lambda: xc.score(
            logits, y_ignored, input_type="logits", ignore_index=-100, flag=flag
        ),
        "true_class_ignored": lambda: xc.score(
            probs, y_ignored, ignore_index=-100, confidence="true_class"
        ),
        "dense_smoothed_weighted": lambda: xc.score(
            probs, targets, label_smoothing=0.1, class_weights=[1.0, 2.0, 0.5, 1.0, 3.0]
        ),
        "multilabel": lambda: xc.score(ml, y_ml, task="multilabel", flag=flag),
        "sample_weights": lambda: xc.score(probs, y, sample_weights=rng.random(n) * 3),
        "class_weights_sparse": lambda: xc.score(probs, y, class_weights=[1, 2, 3, 4, 5]),
        "focal": lambda: xc.score(probs, y, focal_gamma=2.0),
        "no_labels": lambda: xc.score(probs),
        "risk_policy": lambda: xc.score(probs, y, flag=FlagRules(risk_thresholds=(0.7,))),
    }


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_figures_equal_the_batch_summary_and_the_result(case: str) -> None:
    r = CASES[case]()
    s = Summary.from_result(r)
    got, want = s.figures(), figures(summarize(r))
    assert list(got) == [*want, "reliability"]
    assert_figures_close(got, want)
    assert_rows_close(got["reliability"], reliability(summarize(r)))  # type: ignore[arg-type]
    assert close(got["loss_mean"], r.loss_mean)  # type: ignore[arg-type]
    assert close(got["accuracy"], r.accuracy)  # type: ignore[arg-type]
    assert close(got["confidence_mean"], r.confidence_mean)  # type: ignore[arg-type]
    assert close(got["ece"], exact_ece(r))  # type: ignore[arg-type]
    assert s.task == r.task and s.n_classes == r.n_classes
    # the store's rounded form holds the same numbers
    b, ref = s.to_batch_summary(), summarize(r)
    for f in fields(BatchSummary):
        g, w = getattr(b, f.name), getattr(ref, f.name)
        if isinstance(w, list):
            assert all(close(x, y) for x, y in zip(g, w, strict=True)), f.name
        else:
            assert close(g, w), f.name


def test_ece_is_exact_where_the_batch_summary_cancels() -> None:
    """Calibrated to 1e-4: each bin's |correct - confidence| is a small difference of large
    sums. BatchSummary's float bin sums lose ~1e-11 of it; the double-double gaps keep it."""
    rng = np.random.default_rng(0)
    r = xc.score(1 - rng.random(10_000) * 1e-4, np.ones(10_000, dtype=int))
    want = exact_ece(r)
    assert want is not None
    ours = Summary.from_result(r).figures()["ece"]
    assert isinstance(ours, float) and close(ours, want, rel=1e-15)
    rounded = figures(summarize(r))["ece"]
    assert isinstance(rounded, float) and not close(rounded, want, rel=1e-12)
    assert close(rounded, want, rel=1e-9)


def test_sequences_figures() -> None:
    rng = np.random.default_rng(11)
    seqs = [-rng.exponential(0.5, rng.integers(1, 40)) for _ in range(300)]
    r = xc.score_sequences(seqs, min_token_probability=0.05, risk_threshold=0.6)
    s = Summary.from_result(r)
    assert s.task == "sequences" and s.n_classes is None
    got = s.figures()
    assert_figures_close(got, figures(summarize_sequences(r)))
    assert close(got["loss_mean"], r.batch_nll)  # type: ignore[arg-type]
    assert got["accuracy"] is None and got["ece"] is None
    assert s.weight_sum == DoubleDouble.of_int(int(r.n_tokens.sum()))


def test_loss_sum_from_the_items_when_unweighted() -> None:
    r = CASES["logits_ignore_index"]()
    assert r.item_loss is not None and r.scored is not None
    s = Summary.from_result(r)
    items = r.item_loss[r.scored].tolist()
    assert abs(value(s.loss_sum) - exact(items)) <= Fraction(U) ** 2 * exact(items)
    assert s.weight_sum == DoubleDouble.of_int(len(items)) and s.n_classified == len(items)
    conf = r.confidence.tolist()
    assert abs(value(s.confidence_sum) - exact(conf)) <= Fraction(U) ** 2 * exact(conf)


@pytest.mark.parametrize("case", ["sample_weights", "class_weights_sparse"])
def test_weighted_loss_sums_are_the_results_own(case: str) -> None:
    """A ScoreResult does not carry its weights: its own float64 sums are taken as they are."""
    r = CASES[case]()
    s = Summary.from_result(r)
    assert s.loss_sum == DoubleDouble(float(r.loss_sum or 0.0), 0.0)
    assert s.weight_sum == DoubleDouble(float(r.weight_sum or 0.0), 0.0)


def test_hand_batch() -> None:
    # p = [0.8, 0.3, 0.6], y = [1, 0, 0]: losses -ln 0.8, -ln 0.7, -ln 0.4; confidences
    # 0.8, 0.7, 0.6 (bins 11, 10, 8 of 15: (b/15, (b+1)/15]); predictions 1, 0, 1: 2 right
    r = xc.score([0.8, 0.3, 0.6], [1, 0, 0])
    s = Summary.from_result(r)
    assert (s.task, s.n_classes, s.n_items, s.n_scored, s.correct) == ("binary", 2, 3, 3, 2)
    assert s.loss_sum == DoubleDouble.sum_of([-math.log(0.8), -math.log(0.7), -math.log(0.4)])
    counts = [d.hi for d in s.bin_count]
    assert counts == [1.0 if b in (8, 10, 11) else 0.0 for b in range(N_BINS)]
    assert [d.hi for d in s.bin_correct_sum][8] == 0.0  # 0.6 predicted 1, label 0
    f = s.figures()
    # ECE = (|1 - 0.8| + |1 - 0.7| + |0 - 0.6|) / 3 = 1.1 / 3
    assert f["ece"] == pytest.approx(1.1 / 3, rel=1e-15)
    assert f["accuracy"] == pytest.approx(2 / 3) and f["flag_rate"] == 0.0


# ---------------------------------------------------------------------------------------------
# Summary: merges of real batches


def _shards(n: int, cuts: list[int]) -> list[slice]:
    edges = [0, *sorted(set(cuts)), n]
    return [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]


@pytest.mark.parametrize("weighted", [False, True])
def test_shards_merge_to_the_whole_batch(weighted: bool) -> None:
    rng = np.random.default_rng(5)
    n, k = 20_000, 7
    z = rng.normal(0, 2, (n, k))
    y = np.where(rng.random(n) < 0.1, -1, rng.integers(0, k, n))
    w = rng.random(n) * 2 if weighted else None
    opts: dict[str, Any] = {"input_type": "logits", "ignore_index": -1}
    opts["flag"] = {"min_confidence": 0.5, "max_loss": 2.0}

    def run(part: slice) -> xc.ScoreResult:
        return xc.score(z[part], y[part], sample_weights=None if w is None else w[part], **opts)

    whole = run(slice(None))
    shards = [
        Summary.from_result(run(p))
        for p in _shards(n, [*rng.integers(1, n, 12).tolist(), 2500, 2501])
    ]
    plain = sum(shards)  # sum without a start: 0 + the first, through __radd__
    assert isinstance(plain, Summary)
    merged = [plain, sum(reversed(shards), Summary()), sum(shards[1::2] + shards[::2], Summary())]
    want = Summary.from_result(whole)
    for s in merged:
        assert_figures_close(s.figures(), want.figures())
        assert_figures_close(s.figures(), figures(summarize(whole)))
        assert close(s.figures()["loss_mean"], whole.loss_mean)  # type: ignore[arg-type]
        assert [s.n_items, s.n_scored, s.flagged, s.correct] == [
            want.n_items,
            want.n_scored,
            want.flagged,
            want.correct,
        ]
        assert s.bin_count == want.bin_count and s.bin_correct_sum == want.bin_correct_sum
        for a, b in zip(s.bin_confidence_sum, want.bin_confidence_sum, strict=True):
            assert abs(value(a) - value(b)) <= 1e-25 * abs(value(b))
        if not weighted:  # the item sums themselves: 106 bits, whatever the sharding
            assert abs(value(s.loss_sum) - value(want.loss_sum)) <= 1e-25 * value(want.loss_sum)


def test_sequence_shards_merge_to_the_whole() -> None:
    rng = np.random.default_rng(9)
    seqs = [-rng.exponential(1.0, rng.integers(1, 30)) for _ in range(500)]
    whole = Summary.from_result(xc.score_sequences(seqs))
    parts = [xc.score_sequences(seqs[a : a + 70]) for a in range(0, 500, 70)]
    merged = sum(Summary.from_result(p) for p in parts)
    assert isinstance(merged, Summary)
    assert_figures_close(merged.figures(), whole.figures())
    assert merged.weight_sum == whole.weight_sum and merged.n_items == 500


@st.composite
def scored_batch(draw: st.DrawFn) -> tuple[F64, npt.NDArray[np.int64]]:
    n = draw(st.integers(1, 40))
    p = draw(st.lists(st.floats(1e-6, 1 - 1e-6), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return np.array(p), np.array(y)


@given(scored_batch(), st.data())
def test_split_batches_merge_in_any_grouping(
    batch: tuple[F64, npt.NDArray[np.int64]], data: st.DataObject
) -> None:
    p, y = batch
    rules = {"min_confidence": 0.7, "max_loss": 1.0, "misclassified": True}
    whole = xc.score(p, y, flag=rules)
    cuts = data.draw(st.lists(st.integers(1, max(1, p.size - 1)), max_size=4))
    parts = [Summary.from_result(xc.score(p[s], y[s], flag=rules)) for s in _shards(p.size, cuts)]
    first = merge_randomly(data.draw, [*parts, Summary()])
    second = merge_randomly(data.draw, parts)
    # the ECE against its exact value: BatchSummary's rounded bin sums cancel in |gap| (see
    # test_ece_is_exact_where_the_batch_summary_cancels)
    want = {**figures(summarize(whole)), "ece": exact_ece(whole)}
    assert_figures_close(first.figures(), want)
    assert_figures_close(second.figures(), first.figures())
    assert first.to_batch_summary().n_items == p.size


# ---------------------------------------------------------------------------------------------
# Summary: the algebra


def _synthetic(values: list[float], task: str = "binary") -> Summary:
    """A Summary whose every sum is the values' (counts: how many), for merge properties."""
    d = DoubleDouble.sum_of(values)
    n = len(values)
    return Summary(
        task=task,
        n_classes=2,
        n_items=n,
        n_scored=n,
        loss_sum=d,
        weight_sum=DoubleDouble.of_int(n),
        confidence_sum=-d,
        confidence_count=n,
        flagged=n // 2,
        bin_count=(DoubleDouble.of_int(n),) * N_BINS,
        bin_confidence_sum=(d,) * N_BINS,
        bin_correct_sum=(DoubleDouble.sum_of(values[::2]),) * N_BINS,
    )


@given(cancelling(max_size=20), cancelling(max_size=20), cancelling(max_size=20))
def test_summary_merge_commutes_and_associates(
    a: list[float], b: list[float], c: list[float]
) -> None:
    sa, sb, sc = _synthetic(a), _synthetic(b), _synthetic(c)
    assert sa + sb == sb + sa
    left, right = (sa + sb) + sc, sa + (sb + sc)
    bound = 2 * merge_bound(a + b + c, 3)
    for name in ("loss_sum", "confidence_sum", "bin_confidence_sum", "bin_correct_sum"):
        pairs = zip(
            np.atleast_1d(getattr(left, name)).tolist(),
            np.atleast_1d(getattr(right, name)).tolist(),
            strict=True,
        )
        for x, y in pairs:
            assert abs(value(x) - value(y)) <= bound, name
    assert left.n_items == right.n_items == len(a + b + c)
    assert left.bin_count == right.bin_count


def test_the_empty_summary_is_the_identity() -> None:
    s = Summary.from_result(CASES["multiclass"]())
    assert Summary() + s == s and s + Summary() == s
    assert 0 + s == s and s + 0 == s
    assert sum([s, s]) == sum([s, s], Summary()) == s + s
    assert Summary().figures()["loss_mean"] is None and Summary().figures()["ece"] is None
    with pytest.raises(TypeError):
        _ = s + 1
    with pytest.raises(TypeError):
        _ = s + BatchSummary()
    with pytest.raises(TypeError, match="expected a ScoreResult or a SequenceResult"):
        Summary.from_result(object())  # type: ignore[arg-type]


def test_different_tasks_or_classes_do_not_merge() -> None:
    binary = Summary.from_result(CASES["binary"]())
    multi = Summary.from_result(CASES["multiclass"]())
    with pytest.raises(ValueError, match="different tasks: 'binary' and 'multiclass'"):
        _ = binary + multi
    with pytest.raises(ValueError, match="different tasks: 'multiclass' and 'binary'"):
        _ = sum([multi, binary])
    three = replace(multi, n_classes=3)
    with pytest.raises(ValueError, match="different numbers of classes: 5 and 3"):
        _ = multi + three
    # None is "not known": it merges with any, and the known value wins
    unknown = Summary.from_batch_summary(summarize(CASES["multiclass"]()))
    assert unknown.task is None and (unknown + multi).task == "multiclass"
    assert (multi + unknown).n_classes == 5
    with pytest.raises(ValueError, match="different tasks"):
        _ = (binary + unknown) + multi


def test_fields_cover_the_batch_summary() -> None:
    names = {f.name for f in fields(Summary)}
    assert names == {f.name for f in fields(BatchSummary)} | {"task", "n_classes"}
    with pytest.raises(ValueError, match="task: expected None or one of"):
        Summary(task="regression")
    with pytest.raises(ValueError, match="bin_count: expected 15 bins, got 2"):
        Summary(bin_count=(DoubleDouble(),) * 2)
    assert repr(Summary()).startswith("Summary(task=None, n_classes=None, n_items=0")


# ---------------------------------------------------------------------------------------------
# to_dict / from_dict and the BatchSummary


def test_json_round_trip_is_bit_exact() -> None:
    for make in CASES.values():
        s = Summary.from_result(make())
        d = s.to_dict()
        assert d["format"] == FORMAT == 1 and list(d)[:3] == ["format", "task", "n_classes"]
        back = Summary.from_dict(json.loads(json.dumps(d, allow_nan=False)))
        assert back == s and back.to_dict() == d


@given(st.floats(allow_nan=False), st.floats(-1.0, 1.0), st.integers(0, 2**70))
def test_any_pair_and_count_round_trip(hi: float, scale: float, count: int) -> None:
    lo = 0.0 if not math.isfinite(hi) else scale * math.ulp(hi) / 2
    if hi + lo != hi:
        lo = 0.0
    s = Summary(task="multiclass", n_items=count, loss_sum=DoubleDouble(hi, lo))
    text = json.dumps(s.to_dict(), allow_nan=False)
    back = Summary.from_dict(json.loads(text))
    assert back == s
    assert math.copysign(1.0, back.loss_sum.hi) == math.copysign(1.0, hi)


def test_non_finite_sums_are_strings() -> None:
    s = Summary(task="binary", loss_sum=DoubleDouble(math.inf, 0.0))
    s = replace(s, weight_sum=DoubleDouble(-math.inf, 0.0), confidence_sum=DoubleDouble(math.nan))
    d = s.to_dict()
    assert d["loss_sum"] == ["inf", 0.0] and d["weight_sum"] == ["-inf", 0.0]
    assert d["confidence_sum"] == ["nan", 0.0]
    back = Summary.from_dict(json.loads(json.dumps(d, allow_nan=False)))
    assert back.loss_sum.hi == math.inf and math.isnan(back.confidence_sum.hi)
    assert back.to_dict() == d


def _valid() -> dict[str, Any]:
    return Summary.from_result(xc.score([0.8, 0.3, 0.6], [1, 0, 0])).to_dict()


def _with(**changes: Any) -> dict[str, Any]:
    d = _valid()
    d.update(changes)
    return d


def _without(key: str) -> dict[str, Any]:
    d = _valid()
    del d[key]
    return d


BAD_DICTS: list[tuple[Any, str]] = [
    ([1, 2], "expected a mapping, got list"),
    (_without("format"), "missing key 'format'"),
    (_with(format=2), r"unknown format 2 \(this xentcore reads format 1\)"),
    (_with(format="1"), "unknown format '1'"),
    (_with(format=True), "unknown format True"),
    (_without("loss_sum"), r"missing keys \['loss_sum'\]"),
    ({**_valid(), "extra": 1, "more": 2}, r"unknown keys \['extra', 'more'\]"),
    (_with(task="regression"), "task: expected None or one of"),
    (_with(n_classes=0), "n_classes: expected None or an integer >= 1, got 0"),
    (_with(n_classes=2.0), "n_classes: expected None or an integer >= 1, got 2.0"),
    (_with(n_items=3.0), "'n_items': expected an integer >= 0, got 3.0"),
    (_with(flagged=True), "'flagged': expected an integer >= 0, got True"),
    (_with(correct=-1), "'correct': expected an integer >= 0, got -1"),
    (_with(loss_sum=1.5), r"'loss_sum': expected a \[hi, lo\] pair of numbers, got 1.5"),
    (_with(loss_sum=[1.0, 0.0, 0.0]), r"'loss_sum': expected a \[hi, lo\] pair"),
    (_with(loss_sum=["1.0", 0.0]), "'loss_sum' hi: expected a number, got '1.0'"),
    (_with(weight_sum=[1.0, None]), "'weight_sum' lo: expected a number, got None"),
    (_with(weight_sum=[1.0, False]), "'weight_sum' lo: expected a number, got False"),
    (_with(loss_sum=[1.0, 0.5]), r"'loss_sum': \[1.0, 0.5\] is not a normalised pair"),
    (_with(loss_sum=["inf", 1.0]), r"'loss_sum': \[inf, 1.0\] is not a normalised pair"),
    (_with(loss_sum=[2**53 + 1, 0.0]), "'loss_sum' hi: expected a number, got 9007199254740993"),
    (_with(bin_count=[[0.0, 0.0]] * 14), r"'bin_count': expected a list of 15 \[hi, lo\] pairs"),
    (_with(bin_count=[[0.0, 0.0]] * 14 + [0.0]), r"'bin_count\[14\]': expected a \[hi, lo\] pair"),
]


@pytest.mark.parametrize(("data", "message"), BAD_DICTS)
def test_from_dict_names_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Summary.from_dict(data)


def test_from_dict_accepts_integers_for_floats() -> None:
    d = _with(loss_sum=[3, 0], weight_sum=[2**53, 0])
    s = Summary.from_dict(d)
    assert s.loss_sum == DoubleDouble(3.0, 0.0) and s.weight_sum.hi == 2.0**53


def test_batch_summary_interop() -> None:
    r = CASES["logits_ignore_index"]()
    b = summarize(r)
    s = Summary.from_batch_summary(b, task="multiclass", n_classes=5)
    assert s.task == "multiclass" and s.loss_sum == DoubleDouble(b.loss_sum, 0.0)
    assert s.to_batch_summary() == b  # lo = 0: the same floats back
    assert_figures_close(s.figures(), figures(b))
    assert_figures_close(s.figures(), Summary.from_result(r).figures())
    with pytest.raises(ValueError, match=r"BatchSummary.n_items: expected an integer, got 3.0"):
        Summary.from_batch_summary(BatchSummary(n_items=3.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task: expected None or one of"):
        Summary.from_batch_summary(b, task="nope")
    assert Summary.from_batch_summary(BatchSummary()) == Summary()


# --- the compiled sums (xentcore/_sums.c) against their numpy counterparts -----------------


@pytest.mark.skipif(not state._NATIVE_SUMS, reason="xentcore._rowops was built without _sums.c")
@pytest.mark.parametrize("n", [2049, 10_007, 1_000_003])
def test_native_sums_agree_with_numpy(n: int, monkeypatch: Any) -> None:
    """Counts bit for bit; sums within both bounds (a few u^2 of each other); bin edges, 0 and
    1 included."""
    rng = np.random.default_rng(n)
    conf = rng.random(n)
    conf[:5] = [0.0, 1.0, 1 / 15, 2 / 15, 14 / 15]
    correct = rng.random(n) < 0.6
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
    native = (state._bins(conf, correct, None), DoubleDouble.sum_of(x))
    monkeypatch.setattr(state, "_NATIVE_SUMS", False)
    numpy_bins, numpy_sum = state._bins(conf, correct, None), DoubleDouble.sum_of(x)
    assert native[0]["bin_count"] == numpy_bins["bin_count"]
    assert native[0]["bin_correct_sum"] == numpy_bins["bin_correct_sum"]
    for a, b in zip(native[0]["bin_confidence_sum"], numpy_bins["bin_confidence_sum"], strict=True):
        assert abs(value(a) - value(b)) <= 1e-28 * max(abs(value(b)), 1.0)
    assert abs(value(native[1]) - value(numpy_sum)) <= 1e-25 * float(np.abs(x).sum())
