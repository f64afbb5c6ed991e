"""Row-wise numerical kernels over (N, K) arrays, processed in cache-sized row chunks.

Private: inputs are trusted (finite, contiguous float32/float64). Elementwise work stays in the
input's dtype (float32 is twice as fast through ``exp``); every sum along a row is accumulated in
float64, which keeps float32 results within 1e-6 relative of a float64 computation.

Row reductions that numpy can only do with a function call per row (argmax along a short last
axis costs ~25 ns a row) run in the C extension ``xentcore._rowops`` when it was built; each
has a numpy fallback here: bit-identical for the argmax, a few float64 ulps apart for row sums
(another order of summation). ``NATIVE`` says which is in use.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

_rowops: ModuleType | None
try:
    from xentcore import _rowops
except ImportError:  # built without a C compiler: the numpy fallbacks below
    _rowops = None

__all__ = [
    "NATIVE",
    "NATIVE_ARGMAX_MAX_K",
    "chunk_rows",
    "row_argmax_max",
    "row_logsumexp",
    "row_sums",
    "rowsum64",
]

#: Whether the compiled row kernels (``xentcore/_rowops.c``) are in use.
NATIVE: bool = _rowops is not None

#: Widest rows given to the compiled argmax. Past ~64 columns numpy's own SIMD argmax wins (its
#: per-row call is amortised): measured 1.3 vs 1.6 ms at K = 64 and 1.4 vs 0.8 ms at K = 128 for
#: 2M float32 values, 1.5 vs 0.2 ms at K = 1,000.
NATIVE_ARGMAX_MAX_K = 64

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.floating[Any]]

#: Elements per chunk: 2**16 float32 = 256 KiB, which stays in L2 for the 2-4 passes a chunk gets.
CHUNK_ELEMENTS = 1 << 16


def chunk_rows(n: int, k: int, elements: int = CHUNK_ELEMENTS) -> Iterator[slice]:
    """Consecutive row slices of about ``elements`` elements each (at least one row)."""
    step = max(1, elements // max(k, 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _native_ok(x: FloatArray) -> bool:
    """Whether the compiled kernels are built and take ``x`` (C-contiguous native float32/64)."""
    return (
        _rowops is not None
        and x.flags.c_contiguous
        and (x.dtype == np.float64 or x.dtype == np.float32)
    )


def row_argmax_max(x: FloatArray, index: I64, top: F64) -> None:
    """Write each row's argmax into ``index`` and its maximum into ``top``, in one pass.

    ``x`` is a C-contiguous (N, K) float32/float64 array, K >= 1; ``index`` (int64) and ``top``
    (float64) are contiguous length-N outputs. Ties go to the lowest index, as ``np.argmax``.
    The maximum is exact (a float32 value widens to float64 without rounding). Rows of up to
    ``NATIVE_ARGMAX_MAX_K`` values go to the C kernel when it is built, wider ones to numpy.
    """
    if _native_ok(x) and x.shape[1] <= NATIVE_ARGMAX_MAX_K:
        assert _rowops is not None
        _rowops.argmax_max(x, index, top)
        return
    np.argmax(x, axis=1, out=index)
    top[...] = x[np.arange(x.shape[0]), index]


def rowsum64(a: FloatArray, *, skip: I64 | None = None) -> F64:
    """Row sums of a 2-D chunk, accumulated in float64.

    With ``skip`` (one column per row), row i leaves out ``a[i, skip[i]]``; ``a`` is then
    scratch: the numpy fallback sets those entries to 0 first (adding 0 is exact). Compiled:
    eight running sums per row (four rows at a time under 8 columns), 3-4x numpy's
    dtype-converting reduce on float32 chunks; the two orders of summation differ by rounding
    only, a few float64 ulps.
    """
    out = np.empty(a.shape[0])
    if _native_ok(a):
        assert _rowops is not None
        _rowops.row_sums(a, out, skip)
        return out
    if skip is not None:
        a[np.arange(a.shape[0]), skip] = 0
    np.add.reduce(a, axis=1, dtype=np.float64, out=out)
    return out


def row_sums(x: FloatArray) -> F64:
    """Row sums of a 2-D array, as float64 (a BLAS matrix-vector product in x's dtype).

    For validation only (finiteness, sum-to-one within a tolerance): float32 accumulation is
    ample there, and the product streams the array once at memory speed.
    """
    return (x @ np.ones(x.shape[1], dtype=x.dtype)).astype(np.float64, copy=False)


def row_logsumexp(x: FloatArray) -> F64:
    """log sum_k exp(x_ik) per row, stable for any finite input (shifted by the row maximum)."""
    n, k = x.shape
    out = np.empty(n, dtype=np.float64)
    buf = np.empty(min(n, max(1, CHUNK_ELEMENTS // k)) * k, dtype=x.dtype)
    for sl in chunk_rows(n, k):
        z = x[sl]
        m = z.max(axis=1)
        sh = np.subtract(z, m[:, None], out=buf[: z.size].reshape(z.shape))
        np.exp(sh, out=sh)
        out[sl] = m + np.log(rowsum64(sh))
    return out
