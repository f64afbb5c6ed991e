"""Row-wise numerical kernels over (N, K) arrays, processed in cache-sized row chunks.

Private: inputs are trusted (finite, contiguous float32/float64). Elementwise work stays in the
input's dtype (float32 is twice as fast through ``exp``); every sum along a row is accumulated in
float64, which keeps float32 results within 1e-6 relative of a float64 computation.

Row reductions that numpy can only do with a function call per row (argmax along a short last
axis costs ~25 ns a row) run in the C extension ``xentcore._rowops`` when it was built; each
has a numpy fallback here: bit-identical for the argmax, a few float64 ulps apart for row sums
(another order of summation). ``NATIVE`` says which is in use.

The extension also holds the fused softmax cross-entropy of logits rows
(``xentcore/_fused.c``, :func:`logits_rows`): one pass over each row for the loss, the top
probability, the confidence and the argmax, optionally split over threads by rows. Its numpy
counterpart is ``xentcore.multiclass._logits_sparse``; the two agree within the contract's
1e-6 relative (tests/xentcore/test_kernels.py; the kernel's own accuracy: test_fused.py).

The small-batch fast path (``xentcore/fastpath.py``) calls the extension's ``small_logits``,
``small_probabilities``, ``finish_rows`` and ``small_check`` (``xentcore/_fused_small.c``)
itself, through ``_rowops`` as this module holds it (None: the fast path stands aside); its
numpy counterpart is the general path.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
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
    "CONFIDENCE_CODES",
    "ISA_NAMES",
    "NATIVE",
    "NARROW_K",
    "NATIVE_ARGMAX_MAX_K",
    "PIECES_PER_THREAD",
    "THREAD_MIN_ELEMENTS",
    "chunk_rows",
    "fused_isa",
    "fused_ok",
    "logits_rows",
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


#: The widest rows the fused kernel scores several at a time (XC_NARROW_K of
#: xentcore/_fused_body.h). Wider rows go one at a time, and a row holding a NaN or an
#: infinity comes out with a NaN top probability (``xentcore.score`` relies on it to leave out
#: its own scan of wide logits: tests/xentcore/test_fused.py checks both sides of this width).
NARROW_K = 48


def fused_ok(x: FloatArray) -> bool:
    """Whether :func:`logits_rows` can run on ``x`` (built with the fused kernel, and ``x`` is
    a C-contiguous native float32/float64 array)."""
    return _native_ok(x) and hasattr(_rowops, "logits_rows")


#: The instruction sets of the fused kernel by ``_rowops.isa_level()``.
ISA_NAMES = {4: "x86-64-v4 (AVX-512)", 3: "x86-64-v3 (AVX2 + FMA)", 0: "baseline"}


def fused_isa() -> str | None:
    """The instruction set the fused kernel runs on this CPU, or None without the kernel."""
    if _rowops is None or not hasattr(_rowops, "isa_level"):
        return None
    return ISA_NAMES[_rowops.isa_level()]


#: The ``method`` codes of ``_rowops.logits_rows`` (xentcore/_fused.h).
CONFIDENCE_CODES = {"max_probability": 0, "margin": 1, "entropy": 2, "true_class": 3}

#: Fewest values in a piece of work a thread of :func:`logits_rows` takes: 512 KiB of float32,
#: 50-250 microseconds of the kernel, against the tens of microseconds of a hand-over.
THREAD_MIN_ELEMENTS = 1 << 17

#: Pieces per thread: with several each, a thread slowed down (its core shared with other
#: work) takes fewer, instead of the others waiting for its one large part.
PIECES_PER_THREAD = 4

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=_pools.clear)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads, started on first use and kept."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="xentcore-rows")
            _pools[workers] = pool
        return pool


def logits_rows(
    x: FloatArray,
    labels: I64 | None,
    weights: F64 | None,
    smoothing: float,
    method: str,
    *,
    threads: int = 1,
) -> tuple[I64, F64, F64, F64 | None]:
    """(argmax, top probability, confidence, loss or None) of each row of logits ``x``.

    The fused C kernel (check :func:`fused_ok` first): one pass per row with the online
    softmax, float64 sums, and the loss of ``multiclass._logits_sparse`` (class ``weights``,
    label ``smoothing``; no loss without ``labels``). ``confidence`` is ``top`` itself for
    ``max_probability``.

    With ``threads`` > 1 the rows are cut into contiguous pieces of at least
    ``THREAD_MIN_ELEMENTS`` values (up to ``PIECES_PER_THREAD`` per thread), which this
    thread and ``threads - 1`` pool threads claim one at a time until none is left: the
    kernel releases the GIL, and each piece writes its own slice of the outputs, so the
    results are the same bits whatever the split.
    """
    assert _rowops is not None
    n, k = x.shape
    code = CONFIDENCE_CODES[method]
    predicted, top = np.empty(n, np.int64), np.empty(n)
    confidence = top if code == 0 else np.empty(n)
    loss = None if labels is None else np.empty(n)
    kernel = _rowops.logits_rows

    def run(sl: slice) -> None:
        kernel(
            x[sl],
            None if labels is None else labels[sl],
            weights,
            smoothing,
            code,
            predicted[sl],
            top[sl],
            None if code == 0 else confidence[sl],
            None if loss is None else loss[sl],
        )

    pieces = max(1, min(threads * PIECES_PER_THREAD, n, (n * k) // THREAD_MIN_ELEMENTS))
    workers = min(threads, pieces)
    if workers == 1:
        run(slice(0, n))
        return predicted, top, confidence, loss
    bounds = [n * i // pieces for i in range(pieces + 1)]
    claims = itertools.count()  # next() on it is atomic: each piece is claimed once

    def work() -> None:
        while (i := next(claims)) < pieces:
            run(slice(bounds[i], bounds[i + 1]))

    pending = [_pool(threads - 1).submit(work) for _ in range(workers - 1)]
    try:
        work()
    finally:
        wait(pending)  # no piece may still be written once this returns or raises
    for done in pending:
        done.result()
    return predicted, top, confidence, loss


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
