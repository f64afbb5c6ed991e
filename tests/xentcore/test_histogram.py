"""Bucket counts of an array: what Prometheus's ``observe`` per value adds, NaN skipped."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xentcore import histogram
from xentcore.histogram import BucketCounts, bucket_counts

BOUNDS = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def _one_by_one(values: list[float], bounds: tuple[float, ...]) -> BucketCounts:
    """The reference: the first bucket whose bound the value does not exceed, per value."""
    counts = [0] * (len(bounds) + 1)
    total, n = 0.0, 0
    for v in values:
        if math.isnan(v):
            continue
        counts[bisect.bisect_left(bounds, v)] += 1
        total += v
        n += 1
    return BucketCounts(counts, total, n)


def _same(got: BucketCounts, want: BucketCounts, scale: float = 1.0) -> None:
    """Counts exact; sums equal up to the rounding of another summation order."""
    assert got.counts == want.counts and got.n == want.n
    assert all(isinstance(c, int) for c in got.counts) and isinstance(got.total, float)
    assert got.total == pytest.approx(want.total, rel=1e-12, abs=1e-12 * scale, nan_ok=True)


def test_hand_counts_bounds_inclusive_and_overflow() -> None:
    got = bucket_counts(np.array([0.1, 0.5, 0.50000001, 1.0, 7.0, -2.0]), [0.1, 0.5, 1.0])
    assert got.counts == [2, 1, 2, 1] and got.n == 6  # v <= bound: in the bound's bucket
    assert got.total == pytest.approx(7.10000001, rel=1e-15)


def test_nan_skipped_infinities_counted() -> None:
    got = bucket_counts(np.array([np.nan, np.inf, 0.3, np.nan]), [0.5])
    assert got == BucketCounts([1, 1], math.inf, 2)
    both = bucket_counts(np.array([np.inf, -np.inf, np.nan]), [0.5])
    assert both.counts == [1, 1] and both.n == 2 and math.isnan(both.total)  # inf - inf


def test_empty_and_all_nan() -> None:
    assert bucket_counts(np.array([]), BOUNDS) == BucketCounts([0] * 12, 0.0, 0)
    assert bucket_counts(np.full(5, np.nan), BOUNDS) == BucketCounts([0] * 12, 0.0, 0)


def test_float32_compared_in_float64() -> None:
    v = np.array([0.1, 0.5], dtype=np.float32)  # float32(0.1) > 0.1 in float64
    got = bucket_counts(v, [0.1, 0.5])
    assert got == _one_by_one([float(x) for x in v], (0.1, 0.5))
    assert got.counts == [0, 2, 0]


def test_two_dimensional_input_read_flat() -> None:
    v = np.array([[0.05, 3.0], [0.7, np.nan]])
    assert bucket_counts(v, [0.1, 1.0]) == bucket_counts(v.ravel(), [0.1, 1.0])


@pytest.mark.parametrize("bounds", [(1.0, 1.0), (2.0, 1.0), (0.0, math.inf), (math.nan,)])
def test_bad_bounds_raise(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="finite and strictly increasing"):
        bucket_counts(np.ones(3), bounds)


def test_many_bounds_take_the_binary_search_path() -> None:
    bounds = tuple(float(b) for b in np.linspace(0.0, 1.0, 101))
    assert len(bounds) > histogram._COMPARE_MAX_BOUNDS
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.random(2000) * 1.2 - 0.1, bounds, [np.nan, np.inf]])
    _same(bucket_counts(v, bounds), _one_by_one(v.tolist(), bounds))
    _same(bucket_counts(v[:-1], bounds), _one_by_one(v[:-1].tolist(), bounds), 3000.0)


@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)), max_size=60),
    st.lists(st.floats(-100, 100), min_size=0, max_size=40, unique=True).map(sorted),
)
def test_equals_one_by_one(values: list[float], bounds: list[float]) -> None:
    # both paths (comparisons for few bounds, binary search for many) against the reference
    got = bucket_counts(np.array(values, dtype=np.float64), bounds)
    scale = sum(abs(v) for v in values if not math.isnan(v))
    _same(got, _one_by_one(values, tuple(bounds)), scale)
