"""The compiled row kernels (xentcore/_rowops.c) against their numpy fallbacks.

Every kernel must give the results of the numpy code that replaces it when the extension was
not built: bit for bit, except row sums, which add up in another order (a few float64 ulps),
and the fused logits kernel, within the contract's 1e-6 relative (its own accuracy is tested
in test_fused.py). ``score`` must give the same results when the fallback is forced.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import xentcore as xc
from xentcore import _kernels

needs_native = pytest.mark.skipif(
    not _kernels.NATIVE, reason="xentcore._rowops not built (no C compiler): numpy fallback"
)


@pytest.fixture
def numpy_fallback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the test body with the compiled kernels switched off."""
    monkeypatch.setattr(_kernels, "_rowops", None)
    yield


def _reference(x: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    index = np.argmax(x, axis=1)
    return index, x[np.arange(x.shape[0]), index].astype(np.float64)


def _cases() -> Iterator[tuple[str, npt.NDArray[Any]]]:
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        for k in (1, 2, 3, 10, 63, 64, 65, 1000):
            n = max(1, 20_000 // k)
            yield f"normal-{np.dtype(dtype).name}-{k}", rng.standard_normal((n, k)).astype(dtype)
            # few distinct values: many ties, which go to the lowest index
            ties = rng.integers(0, 3, size=(n, k)).astype(dtype)
            yield f"ties-{np.dtype(dtype).name}-{k}", ties
        info = np.finfo(dtype)
        yield (
            f"extremes-{np.dtype(dtype).name}",
            np.array(
                [
                    [info.min, info.max, 0.0],
                    [-0.0, 0.0, -0.0],
                    [0.0, -0.0, 0.0],
                    [info.tiny, -info.tiny, info.smallest_subnormal],
                    [info.min, info.min, info.min],
                    [1.0, 1.0, np.nextafter(dtype(1.0), dtype(2.0))],
                ],
                dtype=dtype,
            ),
        )


CASES = list(_cases())


@pytest.mark.parametrize(("name", "x"), CASES, ids=[c[0] for c in CASES])
def test_row_argmax_max_equals_numpy(name: str, x: npt.NDArray[Any]) -> None:
    index, top = np.empty(x.shape[0], np.int64), np.empty(x.shape[0])
    _kernels.row_argmax_max(x, index, top)
    want_index, want_top = _reference(x)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(top, want_top)
    assert np.array_equal(np.signbit(top), np.signbit(want_top)), "the sign of a zero max"


@pytest.mark.parametrize(("name", "x"), CASES[:6], ids=[c[0] for c in CASES[:6]])
def test_fallback_row_argmax_max_equals_numpy(
    name: str, x: npt.NDArray[Any], numpy_fallback: None
) -> None:
    index, top = np.empty(x.shape[0], np.int64), np.empty(x.shape[0])
    _kernels.row_argmax_max(x, index, top)
    want_index, want_top = _reference(x)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(top, want_top)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 7, 8, 9, 10, 64, 129, 1000])
@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
def test_rowsum64_with_and_without_skip(
    dtype: type, k: int, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if native and not _kernels.NATIVE:
        pytest.skip("xentcore._rowops not built")
    if not native:
        monkeypatch.setattr(_kernels, "_rowops", None)
    rng = np.random.default_rng(k)
    n = 1 + 5000 // k  # odd row counts: the four-row blocks leave a remainder
    x = rng.random((n, k)).astype(dtype)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(_kernels.rowsum64(x.copy()), exact.sum(axis=1), rtol=1e-14)
    skip = rng.integers(0, k, size=n)
    want = exact.sum(axis=1) - exact[np.arange(n), skip]
    got = _kernels.rowsum64(x.copy(), skip=skip)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@needs_native
def test_native_kernel_checks_its_arguments() -> None:
    from xentcore import _rowops

    x = np.zeros((4, 3))
    index, top = np.empty(4, np.int64), np.empty(4)
    with pytest.raises(TypeError, match="x: expected"):
        _rowops.argmax_max(x.astype(np.int64), index, top)
    with pytest.raises(TypeError, match="x: expected"):
        _rowops.argmax_max(np.zeros(4), index, top)
    with pytest.raises(TypeError, match="x: expected"):
        _rowops.argmax_max(np.zeros((4, 0)), index, top)
    with pytest.raises((BufferError, ValueError)):
        _rowops.argmax_max(np.zeros((3, 4)).T, index, top)  # not C-contiguous
    with pytest.raises(TypeError, match="index: expected"):
        _rowops.argmax_max(x, np.empty(4, np.int32), top)
    with pytest.raises(TypeError, match="top: expected"):
        _rowops.argmax_max(x, index, np.empty(4, np.float32))
    with pytest.raises(ValueError, match="need 4 entries"):
        _rowops.argmax_max(x, index[:3], top)
    with pytest.raises((BufferError, ValueError, TypeError)):
        ro = np.empty(4)
        ro.flags.writeable = False
        _rowops.argmax_max(x, index, ro)
    _rowops.argmax_max(np.zeros((0, 3)), np.empty(0, np.int64), np.empty(0))  # no rows: no work
    with pytest.raises(ValueError, match=r"skip\[1\] = 3 is outside \[0, 3\)"):
        _rowops.row_sums(x, top, np.array([0, 3, 0, 0]))
    with pytest.raises(ValueError, match="need 4 entries"):
        _rowops.row_sums(x, top[:2])
    with pytest.raises(TypeError, match="skip: expected"):
        _rowops.row_sums(x, top, np.zeros(4))


def test_native_kernels_are_built_where_a_compiler_is() -> None:
    """A silent build failure (the extension is optional) would leave the slow fallback."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None and os.environ.get("CI") != "true":
        pytest.skip(f"no C compiler ({compiler}) here: the numpy fallback is expected")
    assert _kernels.NATIVE, "xentcore._rowops did not build: run `pip install -e .` and read why"


def _score_fields(r: xc.ScoreResult) -> dict[str, Any]:
    return {
        "loss": r.item_loss,
        "confidence": r.confidence,
        "top": r.top_confidence,
        "predicted": r.predicted_index,
        "flagged": r.flagged,
        "loss_mean": r.loss_mean,
        "accuracy": r.accuracy,
        "warnings": r.warnings,
    }


def _score_cases() -> Iterator[tuple[str, npt.NDArray[Any], npt.NDArray[np.int64], str]]:
    rng = np.random.default_rng(11)
    for k in (2, 10, 64, 100):
        z = (rng.standard_normal((3000, k)) * 4).astype(np.float32)
        y = rng.integers(0, k, size=3000)
        z[::7, 0] = z[::7, 1]  # ties on a row's top value
        p = np.exp(z.astype(np.float64) - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[::5] = np.round(p[::5], 1)  # exact ties and exact zeros
        p[::5] /= p[::5].sum(axis=1, keepdims=True)
        yield f"logits-{k}", z, y, "logits"
        yield f"probabilities-{k}", p, y, "probabilities"
        yield f"log-probabilities-{k}", np.log(np.maximum(p, 1e-300)), y, "log_probabilities"


SCORE_CASES = list(_score_cases())


@needs_native
@pytest.mark.parametrize("confidence", ["max_probability", "true_class", "margin", "entropy"])
@pytest.mark.parametrize(
    ("name", "x", "y", "input_type"), SCORE_CASES, ids=[c[0] for c in SCORE_CASES]
)
def test_score_is_the_same_without_the_native_kernels(
    name: str,
    x: npt.NDArray[Any],
    y: npt.NDArray[np.int64],
    input_type: str,
    confidence: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options: dict[str, Any] = {"input_type": input_type, "confidence": confidence}
    if input_type == "log_probabilities":
        options["sum_tolerance"] = 1e-3
    native = _score_fields(xc.score(x, y, **options))
    monkeypatch.setattr(_kernels, "_rowops", None)
    fallback = _score_fields(xc.score(x, y, **options))
    # Logits: the fused kernel (float64 shifts, its own exp) against numpy's float32 exp and
    # shifts: the contract's 1e-6 relative; an entropy confidence 1 - H / log K near 0 is a
    # cancellation, hence a small atol there.
    rtol = 1e-6 if input_type == "logits" else 0.0
    atol = 1e-12 if input_type == "logits" else 0.0
    for field, value in native.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            np.testing.assert_allclose(value, fallback[field], rtol=rtol, atol=atol, err_msg=field)
        elif isinstance(value, float):
            assert value == pytest.approx(fallback[field], rel=rtol, abs=0), field
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, fallback[field], err_msg=field)
        else:
            assert value == fallback[field], field


@pytest.mark.parametrize("input_type", ["logits", "probabilities", "log_probabilities"])
@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_big_endian_inputs_score_as_native_ones(input_type: str, dtype: str) -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(0.0, 3.0, size=(300, 6))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    x = {"logits": z, "probabilities": p, "log_probabilities": np.log(p)}[input_type]
    y = rng.integers(0, 6, size=300)
    native = xc.score(x.astype(f"<{dtype}"), y, input_type=input_type, sum_tolerance=1e-3)
    swapped = xc.score(
        x.astype(f">{dtype}"), y.astype(">i8"), input_type=input_type, sum_tolerance=1e-3
    )
    np.testing.assert_array_equal(native.item_loss, swapped.item_loss)
    np.testing.assert_array_equal(native.confidence, swapped.confidence)
    np.testing.assert_array_equal(native.predicted, swapped.predicted)


def test_kernels_fall_back_on_arrays_they_do_not_take() -> None:
    x = np.random.default_rng(6).random((50, 5))
    want_index, want_top = _reference(x)
    for odd in (x.astype(">f8"), np.asfortranarray(x)):
        index, top = np.empty(50, np.int64), np.empty(50)
        _kernels.row_argmax_max(odd, index, top)
        np.testing.assert_array_equal(index, want_index)
        np.testing.assert_array_equal(top, want_top)
        np.testing.assert_allclose(_kernels.rowsum64(odd.copy(order="K")), x.sum(axis=1))
