"""Parsed-JSON lists of numbers -> float64 / int64 arrays in one compiled pass, or None.

A JSON body's numbers arrive as Python lists. :func:`float_array` and :func:`int_vector` turn
the plain ones into arrays in one C loop (``xentcore/_lists.c``, about 1 us for 32 x 10 where a
strict validator and ``np.asarray`` take ~60), and return None for anything they would have to
interpret, so that the caller validates that value the general way and words its error:

* only exact ``list`` objects, of equal-length rows;
* only finite ``float`` items and ``int`` items (never ``bool``) within +-2**53, which convert
  to float64 exactly; ``int_vector`` takes ints only.

The values are those the strict path would produce (a JSON number is a float64; an integer
label is the class index it names). Without the compiled extension both always return None.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import _rowops

__all__ = ["float_array", "int_vector"]

_CONVERTS = _rowops is not None and hasattr(_rowops, "float_values")


def float_array(value: Any) -> npt.NDArray[np.float64] | None:
    """``value`` (a list of N numbers, or of N lists of K >= 1 numbers) as float64 (N,) or
    (N, K); None when it is empty or anything but plain finite numbers in equal rows."""
    if not _CONVERTS or type(value) is not list or not value:
        return None
    first = value[0]
    out: npt.NDArray[np.float64]
    if type(first) is list:
        if not first:
            return None
        out = np.empty((len(value), len(first)))
    else:
        out = np.empty(len(value))
    assert _rowops is not None
    return out if _rowops.float_values(value, out) else None


def int_vector(value: Any) -> npt.NDArray[np.int64] | None:
    """``value`` (a non-empty list of ints within +-2**53, no bools) as int64 (N,), else None."""
    if not _CONVERTS or type(value) is not list or not value:
        return None
    out = np.empty(len(value), dtype=np.int64)
    assert _rowops is not None
    return out if _rowops.int_values(value, out) else None
