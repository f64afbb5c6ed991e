"""Raw input -> contiguous native float arrays, and the finiteness scan (the tuned hot path).

Everything else in :mod:`xentcore.validate` reads arrays produced here. Predictions keep their
precision: float32 stays float32 (half the memory traffic of the kernels), float16 widens to
float32, integers to float64, wider floats narrow to float64; other byte orders are swapped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore.errors import InputError, Location
from xentcore.types import Bool, FloatArray

__all__ = ["as_array", "as_float", "check_finite", "first_true", "fmt", "located"]


def fmt(value: float) -> str:
    """A value as error messages show it: six significant digits."""
    return f"{value:.6g}"


def located(field: str, flat_index: int, shape: tuple[int, ...]) -> Location:
    """The location of the ``flat_index``-th value of an array of ``shape``."""
    return (field, *(int(i) for i in np.unravel_index(flat_index, shape)))


def first_true(mask: Bool) -> int:
    """Flat index of the first True of ``mask`` (0 when there is none)."""
    return int(np.argmax(mask.ravel()))


def _ragged_row(value: Any) -> int | None:
    """Index of the first row whose length differs from the first row's, for nested lists."""
    if not isinstance(value, Sequence) or not value:
        return None
    lengths = [
        len(row) if isinstance(row, Sequence) and not isinstance(row, str) else -1 for row in value
    ]
    first = lengths[0]
    for i, n in enumerate(lengths):
        if n != first:
            return i
    return None


def as_array(value: Any, field: str) -> npt.NDArray[Any]:
    """``np.asarray`` with a located error for ragged nesting; arrays pass as they are."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except ValueError:
        row = _ragged_row(value)
        loc: Location = (field,) if row is None else (field, row)
        raise InputError(loc, "ragged rows: every row must have the same length") from None


def as_float(value: Any, field: str) -> FloatArray:
    """Numbers -> contiguous native float32/float64 (float16 widened to float32, integers to
    float64, other byte orders swapped). Booleans and non-numbers raise ``float_type``."""
    arr = as_array(value, field)
    if arr.dtype == np.bool_:
        raise InputError((field,), "expected numbers, got booleans", kind="float_type")
    if arr.dtype.kind == "f":
        if arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)
        elif arr.dtype.itemsize > 8:
            arr = arr.astype(np.float64)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    else:
        raise InputError(
            (field,), f"expected numbers, got {arr.dtype.kind!r} data", kind="float_type"
        )
    if not arr.dtype.isnative:  # big-endian data on a little-endian machine: same values
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr)


#: Rows per chunk of the finiteness scan. Its row sums, the one scratch array (reused), stay at
#: 64 KiB: under glibc's mmap threshold, so a scan takes no fresh pages from the kernel, whose
#: page faults cost more than the arithmetic on some machines.
_SCAN_ROWS = 8192


def _raise_first_nonfinite_row(chunk: FloatArray, sums: FloatArray, start: int, field: str) -> None:
    """Raise on the first NaN or infinity among the rows whose sum is not finite."""
    for row in np.flatnonzero(~np.isfinite(sums)):
        bad = ~np.isfinite(chunk[row])
        if bad.any():
            col = first_true(bad)
            raise InputError(
                (field, start + int(row), col),
                f"{chunk[row, col]} is not a finite number",
                kind="finite_number",
            )


def _check_finite_rows(x: FloatArray, field: str) -> tuple[float, float]:
    """Raise on the first NaN or infinity of a 2-D array; return (min, max) of its row sums.

    Row sums by chunk (one BLAS pass; a NaN or infinity makes its row's sum non-finite), then an
    exact check of the suspect rows only. A finite row whose sum overflows makes the extremes
    (-inf, inf): it cannot be a probability row. Three numpy calls a chunk.
    """
    n, k = x.shape
    lo, hi = np.inf, -np.inf
    ones = np.ones(k, dtype=x.dtype)
    scratch = np.empty(min(n, _SCAN_ROWS), dtype=x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # a huge finite row may overflow
        for start in range(0, n, _SCAN_ROWS):
            chunk = x[start : start + _SCAN_ROWS]
            sums = np.matmul(chunk, ones, out=scratch[: chunk.shape[0]])
            chunk_lo, chunk_hi = float(sums.min()), float(sums.max())  # NaN if any sum is NaN
            if not (math.isfinite(chunk_lo) and math.isfinite(chunk_hi)):
                _raise_first_nonfinite_row(chunk, sums, start, field)
                chunk_lo, chunk_hi = -np.inf, np.inf
            lo, hi = min(lo, chunk_lo), max(hi, chunk_hi)
    return lo, hi


def check_finite(x: FloatArray, field: str) -> tuple[float, float] | None:
    """Raise ``finite_number`` on the first NaN or infinity (row-major order); for a 2-D array
    return (min, max) of its row sums, which the sum-to-one rule reuses, else None."""
    if x.ndim == 2:
        return _check_finite_rows(x, field)
    bad = ~np.isfinite(x)
    if bad.any():
        flat = first_true(bad)
        raise InputError(
            located(field, flat, x.shape),
            f"{x.ravel()[flat]} is not a finite number",
            kind="finite_number",
        )
    return None
