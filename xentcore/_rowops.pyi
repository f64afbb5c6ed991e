# Stub of the C extension built from _rowops.c (see xentcore/_kernels.py for the wrappers).
from typing import Any

import numpy as np
import numpy.typing as npt

def argmax_max(
    x: npt.NDArray[np.floating[Any]], index: npt.NDArray[np.int64], top: npt.NDArray[np.float64]
) -> None: ...
def row_sums(
    x: npt.NDArray[np.floating[Any]],
    out: npt.NDArray[np.float64],
    skip: npt.NDArray[np.int64] | None = None,
) -> None: ...
