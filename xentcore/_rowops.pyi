# Stub of the C extension built from _rowops.c and _fused*.c (see xentcore/_kernels.py and
# xentcore/fastpath.py for the wrappers). logits_rows, small_logits and isa_level exist where the
# compiler has GCC / Clang vector extensions (everywhere but MSVC).
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
def logits_rows(
    x: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64] | None,
    weights: npt.NDArray[np.float64] | None,
    smoothing: float,
    method: int,
    predicted: npt.NDArray[np.int64],
    top: npt.NDArray[np.float64],
    confidence: npt.NDArray[np.float64] | None,
    loss: npt.NDArray[np.float64] | None,
    level: int = -1,
) -> None: ...
def isa_level() -> int: ...
def finish_rows(
    values: npt.NDArray[np.float64],
    predicted: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64] | None,
    method: int,
    min_confidence: float,
    max_loss: float,
    misclassified: int,
    masks: npt.NDArray[np.bool_],
) -> float: ...
def small_probabilities(
    x: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64] | None,
    tol: float,
    eps: float,
    predicted: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
) -> int | None: ...
def small_logits(
    x: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64] | None,
    method: int,
    min_confidence: float,
    max_loss: float,
    misclassified: int,
    predicted: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    masks: npt.NDArray[np.bool_],
) -> float | None: ...
def small_check(
    x: npt.NDArray[np.floating[Any]], labels: npt.NDArray[np.int64] | None, tol: float
) -> bool: ...
def float_values(value: object, out: npt.NDArray[np.float64]) -> bool: ...
def int_values(value: object, out: npt.NDArray[np.int64]) -> bool: ...
def reason_lists(
    masks: tuple[npt.NDArray[np.bool_], ...],
    names: tuple[str, ...],
    indices: npt.NDArray[np.intp] | None,
) -> list[list[str]]: ...

SUM_LANES: int

def chain_sums(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None: ...
def uniform_bins(
    confidence: npt.NDArray[np.float64],
    correct: npt.NDArray[np.bool_],
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    rights: npt.NDArray[np.int64],
) -> None: ...
