"""The fused logits kernel (xentcore/_fused.c) against a long-double reference.

The kernel computes, for each row of logits, the loss, the top probability, the confidence and
the argmax in one pass (online softmax over blocks for wide rows, one row per vector lane for
narrow ones), with its own vectorised exp. Its stated accuracy (xentcore/_fused.c): float64
input within a few ulps; float32 input within 2e-9 relative on rows wider than 48 values (the
degree-6 exp) and float64-accurate below; both far inside the contract's 1e-6. The reference
here is the same formula in 80-bit long double, so its own rounding is negligible. Every
instruction set this CPU supports is checked, not only the one dispatch picks.

``score``'s ``threads`` (and ``XENT_THREADS``) split the rows: the results are bit-identical.
The numpy fallback against the kernel, within 1e-6: tests/xentcore/test_kernels.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import xentcore as xc
from xentcore import _kernels, fastpath
from xentcore.errors import InputError
from xentcore.score import THREADS_VARIABLE

pytestmark = pytest.mark.skipif(
    not (_kernels.NATIVE and hasattr(_kernels._rowops, "logits_rows")),
    reason="xentcore._rowops built without the fused kernel: numpy fallback",
)

METHODS = ["max_probability", "margin", "entropy", "true_class"]
LD = np.longdouble
Arr = npt.NDArray[Any]


def _levels() -> list[int]:
    """The instruction-set levels this CPU can run (the best one, and every one below it)."""
    rowops = _kernels._rowops
    if rowops is None or not hasattr(rowops, "isa_level"):
        return [0]
    best = rowops.isa_level()
    return [level for level in (0, 3, 4) if level <= best]


LEVELS = _levels()


def _run(
    x: Arr,
    y: Arr | None,
    method: str,
    weights: Arr | None = None,
    smoothing: float = 0.0,
    level: int = -1,
) -> dict[str, Arr]:
    """The kernel's outputs for one call (at one instruction-set level)."""
    rowops = _kernels._rowops
    assert rowops is not None
    n = x.shape[0]
    code = _kernels.CONFIDENCE_CODES[method]
    out = {"predicted": np.empty(n, np.int64), "top": np.empty(n)}
    out["confidence"] = out["top"] if code == 0 else np.empty(n)
    loss = None if y is None else np.empty(n)
    rowops.logits_rows(
        x,
        y,
        weights,
        smoothing,
        code,
        out["predicted"],
        out["top"],
        None if code == 0 else out["confidence"],
        loss,
        level,
    )
    if loss is not None:
        out["loss"] = loss
    return out


def _reference(
    x: Arr, y: Arr | None, method: str, weights: Arr | None = None, smoothing: float = 0.0
) -> dict[str, Arr]:
    """The kernel's formulas in long double (64-bit mantissa)."""
    n, k = x.shape
    r = np.arange(n)
    z = x.astype(LD)
    am = np.argmax(x, axis=1)  # ties: the lowest index
    m = z[r, am]
    sh = z - m[:, None]
    e = np.exp(sh)
    e[r, am] = 0  # delta: the sum without the argmax term (exactly 1)
    delta = e.sum(axis=1)
    log_s = np.log1p(delta)
    top = 1 / (1 + delta)
    out: dict[str, Arr] = {"predicted": am, "top": top}
    if method == "margin":
        rest = sh.copy()
        rest[r, am] = -np.inf
        out["confidence"] = -top * np.expm1(rest.max(axis=1))
    elif method == "entropy":
        h = log_s - (e * sh).sum(axis=1) * top
        out["confidence"] = np.clip(1 - h / np.log(LD(k)), 0, 1)
    else:
        out["confidence"] = top
    if y is not None:
        nll = (m - z[r, y]) + log_s
        if method == "true_class":
            out["confidence"] = np.exp(-nll)
        w = np.ones(k, dtype=LD) if weights is None else weights.astype(LD)
        loss = w[y] * nll
        if smoothing > 0:
            every = log_s[:, None] - sh  # -log p_k
            loss = (1 - LD(smoothing)) * loss + LD(smoothing) / k * (every * w).sum(axis=1)
        out["loss"] = loss
    return out


def _check(got: dict[str, Arr], want: dict[str, Arr], rtol: float, atol: float) -> None:
    np.testing.assert_array_equal(got["predicted"], want["predicted"])
    for name in ("top", "confidence", "loss"):
        if name in want:
            w = want[name].astype(np.float64)
            np.testing.assert_allclose(got[name], w, rtol=rtol, atol=atol, err_msg=name)


def _tolerance(dtype: Any, k: int) -> tuple[float, float]:
    """(rtol, atol) the kernel's accuracy statement promises, with room for the float64
    rounding of sums of K terms. atol: an entropy confidence 1 - H / log K near 0 is a
    cancellation of two numbers near 1."""
    if dtype == np.float64 or k <= 48:
        return 1e-12, 1e-13
    return 5e-9, 5e-9


def _rows(k: int, dtype: Any, rng: np.random.Generator) -> Iterator[Arr]:
    """Rows that take every branch: random, ascending (each block raises the maximum: the
    online rescaling), descending, ties on the top value, a constant row, a confident row,
    the maximum in the last (partial) vector."""
    n = max(3, 6000 // k)
    yield rng.normal(0.0, 3.0, size=(n, k)).astype(dtype)
    yield np.sort(rng.normal(0.0, 3.0, size=(2, k)), axis=1).astype(dtype)
    yield np.sort(rng.normal(0.0, 3.0, size=(2, k)), axis=1)[:, ::-1].astype(dtype)
    ties = rng.integers(0, 3, size=(n, k)).astype(dtype)
    yield ties
    yield np.full((1, k), 1.25, dtype=dtype)
    confident = rng.normal(0.0, 1.0, size=(3, k)).astype(dtype)
    confident[:, k // 2] = 40.0
    yield confident
    last = rng.normal(0.0, 1.0, size=(2, k)).astype(dtype)
    last[:, -1] = 9.0
    yield last


WIDTHS = [2, 3, 10, 48, 49, 64, 1000, 2047, 2048, 2049, 5000]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", WIDTHS)
def test_kernel_matches_the_long_double_reference(k: int, dtype: Any, level: int) -> None:
    rng = np.random.default_rng(k)
    rtol, atol = _tolerance(dtype, k)
    for x in _rows(k, dtype, rng):
        y: Arr = rng.integers(0, k, size=(x.shape[0],), dtype=np.int64)
        for method in METHODS:
            _check(_run(x, y, method, level=level), _reference(x, y, method), rtol, atol)
        _check(_run(x, None, "entropy", level=level), _reference(x, None, "entropy"), rtol, atol)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", [2, 7, 100, 3000])
@pytest.mark.parametrize("method", METHODS)
def test_weights_and_label_smoothing(k: int, dtype: Any, method: str, level: int) -> None:
    rng = np.random.default_rng(100 + k)
    x = rng.normal(0.0, 4.0, size=(max(9, 3000 // k), k)).astype(dtype)
    y: Arr = rng.integers(0, k, size=(x.shape[0],), dtype=np.int64)
    weights = rng.uniform(0.2, 3.0, size=k)
    rtol, atol = _tolerance(dtype, k)
    for w, e in ((weights, 0.0), (None, 0.1), (weights, 0.3), (None, 1.0)):
        got = _run(x, y, method, w, e, level=level)
        _check(got, _reference(x, y, method, w, e), rtol, atol)


@pytest.mark.parametrize("level", LEVELS)
def test_the_float32_exp_keeps_its_stated_bound(level: int) -> None:
    """Rows of 63 equal values t below a 0: loss = log1p(63 exp(t)), which carries the
    relative error of the wide path's exp (degree-6 minimax, < 2e-9) undiluted."""
    t = -np.linspace(0.0, 100.0, 20001).astype(np.float32)
    x = np.repeat(t[:, None], 64, axis=1)
    x[:, 0] = 0.0
    y = np.zeros(t.size, dtype=np.int64)
    got = _run(x, y, "max_probability", level=level)["loss"]
    want = np.log1p(63 * np.exp(t.astype(LD)))
    np.testing.assert_allclose(got, want.astype(np.float64), rtol=2.0e-9, atol=0)


@pytest.mark.parametrize("level", LEVELS)
def test_the_float64_exp_and_log1p_are_within_a_few_ulps(level: int) -> None:
    """K = 2 rows: loss = log1p(exp(-a)), through the degree-13 exp and fdlibm's log1p."""
    a = np.linspace(0.0, 740.0, 40001)
    x = np.stack([np.zeros_like(a), -a], axis=1)
    y = np.zeros(a.size, dtype=np.int64)
    got = _run(x, y, "true_class", level=level)
    want = np.log1p(np.exp(-a.astype(LD)))
    ok = want > 1e-300  # below, subnormal results: no relative precision to speak of
    np.testing.assert_allclose(got["loss"][ok], want[ok].astype(np.float64), rtol=1e-15, atol=0)
    np.testing.assert_allclose(got["confidence"], np.exp(-want).astype(np.float64), rtol=1e-15)


@pytest.mark.parametrize("level", LEVELS)
def test_extreme_logits(level: int) -> None:
    big = np.array([[1e300, -1e300, 0.0], [-1e300, -1e300, 1e300], [5.0, 5.0, 5.0]])
    got = _run(big, np.array([1, 2, 0]), "margin", level=level)
    assert got["loss"].tolist() == [2e300, 0.0, pytest.approx(np.log(3.0), rel=1e-15)]
    assert got["predicted"].tolist() == [0, 2, 0]
    assert got["confidence"].tolist() == [1.0, 1.0, 0.0]
    fmax = np.finfo(np.float32).max
    wide = np.zeros((2, 100), dtype=np.float32)
    wide[0, 3], wide[0, 7] = fmax, -fmax
    wide[1, :] = -fmax
    wide[1, 99] = fmax
    got32 = _run(wide, np.array([7, 99]), "entropy", level=level)
    assert got32["loss"].tolist() == [2 * float(fmax), 0.0]
    assert got32["predicted"].tolist() == [3, 99]
    assert got32["top"].tolist() == [1.0, 1.0]
    assert got32["confidence"].tolist() == [1.0, 1.0]


def test_the_levels_agree_with_each_other() -> None:
    rng = np.random.default_rng(9)
    for k in (5, 300):
        x = rng.normal(0.0, 3.0, size=(500, k))
        y = rng.integers(0, k, size=500)
        runs = [_run(x, y, "entropy", level=level) for level in LEVELS]
        for other in runs[1:]:
            _check(other, runs[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("k", [2, 10, 1000])
def test_threads_give_bit_identical_results(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 9 * _kernels.THREAD_MIN_ELEMENTS // k + 5  # pieces of unequal, odd sizes
    x = rng.normal(0.0, 3.0, size=(n, k)).astype(np.float32)
    y = rng.integers(0, k, size=n)
    one = xc.score(x, y, input_type="logits", confidence="margin", threads=1)
    for threads in (2, 3, 8):
        many = xc.score(x, y, input_type="logits", confidence="margin", threads=threads)
        np.testing.assert_array_equal(many.item_loss, one.item_loss)
        np.testing.assert_array_equal(many.confidence, one.confidence)
        np.testing.assert_array_equal(many.predicted, one.predicted)
        np.testing.assert_array_equal(many.flagged, one.flagged)


def test_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(1).normal(size=(200, 4))
    y = np.arange(200) % 4
    want = xc.score(x, y, input_type="logits").item_loss
    for value in ("2", " 3 ", ""):
        monkeypatch.setenv(THREADS_VARIABLE, value)
        np.testing.assert_array_equal(xc.score(x, y, input_type="logits").item_loss, want)
    for value in ("0", "two", "1.5", "-1"):
        monkeypatch.setenv(THREADS_VARIABLE, value)
        with pytest.raises(xc.InputError, match=THREADS_VARIABLE) as err:
            xc.score(x, y, input_type="logits")
        assert err.value.location == ("threads",)
    monkeypatch.setenv(THREADS_VARIABLE, "nonsense")  # the keyword wins over the variable
    np.testing.assert_array_equal(xc.score(x, y, input_type="logits", threads=2).item_loss, want)


@pytest.mark.parametrize("threads", [0, -2, True, 1.0, "2"])
def test_threads_must_be_a_positive_integer(threads: Any) -> None:
    with pytest.raises(xc.InputError, match="threads: expected an integer >= 1") as err:
        xc.score([[1.0, 2.0]], [0], input_type="logits", threads=threads)
    assert err.value.location == ("threads",)


def test_logits_rows_checks_its_arguments() -> None:
    rowops = _kernels._rowops
    assert rowops is not None
    x = np.zeros((4, 3))
    y = np.array([0, 1, 2, 0])
    pred, top, conf, loss = np.empty(4, np.int64), np.empty(4), np.empty(4), np.empty(4)
    with pytest.raises(ValueError, match=r"labels\[1\] = 3 is outside \[0, 3\)"):
        rowops.logits_rows(x, np.array([0, 3, 0, 0]), None, 0.0, 0, pred, top, None, loss)
    with pytest.raises(ValueError, match=r"labels\[0\] = -1"):
        rowops.logits_rows(x, np.array([-1, 0, 0, 0]), None, 0.0, 0, pred, top, None, loss)
    with pytest.raises(ValueError, match="method: expected 0-3"):
        rowops.logits_rows(x, y, None, 0.0, 4, pred, top, conf, loss)
    with pytest.raises(ValueError, match="smoothing"):
        rowops.logits_rows(x, y, None, 1.5, 0, pred, top, None, loss)
    with pytest.raises(ValueError, match="give both or neither"):
        rowops.logits_rows(x, y, None, 0.0, 0, pred, top, None, None)
    with pytest.raises(ValueError, match="None exactly for method 0"):
        rowops.logits_rows(x, y, None, 0.0, 1, pred, top, None, loss)
    with pytest.raises(ValueError, match="true_class"):
        rowops.logits_rows(x, None, None, 0.0, 3, pred, top, conf, None)
    with pytest.raises(ValueError, match="weights: expected 3 entries"):
        rowops.logits_rows(x, y, np.ones(2), 0.0, 0, pred, top, None, loss)
    with pytest.raises(ValueError, match="top: expected 4 entries"):
        rowops.logits_rows(x, y, None, 0.0, 0, pred, top[:3], None, loss)
    with pytest.raises(TypeError, match="x: expected"):
        rowops.logits_rows(x.astype(np.int64), y, None, 0.0, 0, pred, top, None, loss)
    with pytest.raises(TypeError, match="labels: expected"):
        rowops.logits_rows(x, y.astype(np.int32), None, 0.0, 0, pred, top, None, loss)
    with pytest.raises(TypeError, match="predicted: expected"):
        rowops.logits_rows(x, y, None, 0.0, 0, top, top, None, loss)
    with pytest.raises((BufferError, ValueError)):
        rowops.logits_rows(np.zeros((3, 4)).T, y, None, 0.0, 0, pred, top, None, loss)
    empty = np.empty(0)
    rowops.logits_rows(
        np.zeros((0, 3)), None, None, 0.0, 0, np.empty(0, np.int64), empty, None, None
    )


def test_score_uses_the_kernel_for_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = _kernels.logits_rows

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("xentcore.multiclass.logits_rows", spy)
    xc.score([[1.0, 2.0, 0.5]], [1], input_type="logits")
    xc.score([[1.0, 2.0, 0.5]], input_type="logits", confidence="entropy")
    assert len(calls) == 2
    xc.score([[1.0, 2.0, 0.5]], [1], input_type="logits", focal_gamma=1.0)  # the general path
    xc.score([[0.2, 0.3, 0.5]], [1])  # probabilities
    assert len(calls) == 2


# --- NaN and infinities in wide logits: found by the kernel, worded by the scan -------------


@pytest.mark.parametrize("k", [_kernels.NARROW_K, _kernels.NARROW_K + 1, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_non_finite_logit_is_the_scans_error(
    k: int, dtype: Any, bad: float, threads: int
) -> None:
    """``xentcore.score`` leaves the scan of wide logits to the kernel; the error is the same:
    the first non-finite value, row-major, wherever it is in its row and batch."""
    rng = np.random.default_rng(k)
    n = fastpath.MAX_VALUES // k + 7  # past the small-batch fast path
    z = rng.normal(size=(n, k)).astype(dtype)
    y = rng.integers(0, k, n)
    for where in [(0, 0), (n // 2, k - 1), (n - 1, k // 2), (n // 2, 3)]:
        bad_z = z.copy()
        bad_z[where] = bad
        bad_z[-1, -1] = bad  # a later one: the first is named
        with pytest.raises(InputError) as info:
            xc.score(bad_z, y, input_type="logits", threads=threads)
        assert info.value.location == ("predictions", *where)
        assert info.value.reason == f"{dtype(bad)} is not a finite number"


@pytest.mark.parametrize(
    ("labels", "options"),
    [
        ("out of range", {}),
        ("none", {"flag": {"max_loss": 1.0}}),
        ("none", {"confidence": "true_class"}),
        ("ok", {"threads": 0}),
        ("ok", {"focal_gamma": 2.0}),
        ("targets", {}),
    ],
)
def test_the_scans_error_comes_first(labels: str, options: dict[str, Any]) -> None:
    """Whatever else is wrong, or whichever kernel scores the batch, a NaN in the logits is
    the error, as when the scan ran first."""
    rng = np.random.default_rng(3)
    n, k = 400, 500
    z = rng.normal(size=(n, k)).astype(np.float32)
    z[7, 9] = np.nan
    y: Any = {
        "out of range": np.full(n, k + 1),
        "none": None,
        "ok": rng.integers(0, k, n),
        "targets": np.full((n, k), 1.0 / k),
    }[labels]
    with pytest.raises(InputError) as info:
        xc.score(z, y, input_type="logits", **options)
    assert info.value.location == ("predictions", 7, 9)


def test_wide_logits_score_as_before_without_the_scan() -> None:
    """Finite wide logits: the same result as through the general checks (lists)."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(300, 700)) * 30
    y = rng.integers(0, 700, 300)
    got = xc.score(z, y, input_type="logits", confidence="entropy")
    ref = xc.score(z.tolist(), y.tolist(), input_type="logits", confidence="entropy")
    for name in ("item_loss", "confidence", "top_confidence", "predicted"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    assert got.loss_sum == ref.loss_sum
