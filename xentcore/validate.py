"""Raw input -> checked, contiguous arrays. The only place in xentcore that checks anything.

Every rule of the contract's section 1 lives here, each raising :class:`InputError` with the
field, the index and the offending value. What leaves this module is trusted by the kernels:
finite, of the right shape, dtype float32 or float64 (predictions) and int64 / float64 (labels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import row_logsumexp, row_sums
from xentcore.errors import InputError, Location
from xentcore.types import (
    CONFIDENCE_METHODS,
    INPUT_TYPES,
    TASKS,
    ConfidenceMethod,
    FlagRules,
    InputType,
    Task,
)

__all__ = [
    "Batch",
    "Labels",
    "Options",
    "check_batch",
    "check_flag_rules",
    "check_options",
]

FloatArray = npt.NDArray[np.floating[Any]]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

DEFAULT_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Labels:
    """Checked labels.

    ``kind`` is ``"sparse"`` (multiclass class indices in ``index``), ``"dense"`` (multiclass
    target distributions or multilabel targets in ``target``, shape (N, K)) or ``"binary"``
    (targets in [0, 1] in ``target``, shape (N,)). ``scored`` is None when every item has a loss,
    else a boolean mask (False where the label equals ``ignore_index``). ``true_class`` is the
    single true class of every item (int64, -1 where ignored); for multilabel the boolean true
    set (N, K).
    """

    kind: str
    index: I64 | None
    target: F64 | None
    scored: Bool | None
    true_class: npt.NDArray[Any]


@dataclass(frozen=True)
class Options:
    """Checked loss and scoring options (see ``xentcore.score`` for their meaning)."""

    class_weights: F64 | None = None
    sample_weights: F64 | None = None
    pos_weight: F64 | float | None = None
    label_smoothing: float = 0.0
    focal_gamma: float = 0.0
    focal_alpha: float | None = None
    confidence: ConfidenceMethod = "max_probability"
    decision_threshold: float = 0.5
    clip_eps: float = DEFAULT_EPS


@dataclass(frozen=True)
class Batch:
    """A checked batch: predictions, labels, options and the warnings validation produced."""

    task: Task
    input_type: InputType
    x: FloatArray
    n_items: int
    n_classes: int
    labels: Labels | None
    options: Options
    class_names: tuple[str, ...] | None
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# small helpers


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _loc(field: str, flat_index: int, shape: tuple[int, ...]) -> Location:
    return (field, *(int(i) for i in np.unravel_index(flat_index, shape)))


def _first(mask: Bool) -> int:
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


def _as_array(value: Any, field: str) -> npt.NDArray[Any]:
    """``np.asarray`` with a located error for ragged nesting."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except ValueError:
        row = _ragged_row(value)
        loc: Location = (field,) if row is None else (field, row)
        raise InputError(loc, "ragged rows: every row must have the same length") from None


def _as_float(value: Any, field: str) -> FloatArray:
    """Numbers -> contiguous native float32/float64 (float16 widened to float32, integers to
    float64, other byte orders swapped)."""
    arr = _as_array(value, field)
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
            col = _first(bad)
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


def _check_finite(x: FloatArray, field: str) -> tuple[float, float] | None:
    """Raise on the first NaN or infinity; for a 2-D array return (min, max) of its row sums."""
    if x.ndim == 2:
        return _check_finite_rows(x, field)
    bad = ~np.isfinite(x)
    if bad.any():
        flat = _first(bad)
        raise InputError(
            _loc(field, flat, x.shape),
            f"{x.ravel()[flat]} is not a finite number",
            kind="finite_number",
        )
    return None


def _scalar(
    value: Any,
    field: str | Location,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number within the given bounds (``field``: a name or a location)."""
    loc: Location = (field,) if isinstance(field, str) else field
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(loc, f"expected a number, got {type(value).__name__}", kind="float_type")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(loc, f"{v} is not a finite number", kind="finite_number")
    if low is not None and (v < low or (low_open and v == low)):
        raise InputError(
            loc, f"{_fmt(v)} is below the minimum {'>' if low_open else '>='} {_fmt(low)}"
        )
    if high is not None and (v > high or (high_open and v == high)):
        raise InputError(
            loc, f"{_fmt(v)} is above the maximum {'<' if high_open else '<='} {_fmt(high)}"
        )
    return v


def _vector(value: Any, field: str, n: int, what: str, *, nonneg: bool = True) -> F64:
    arr = _as_float(value, field)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(
            (field,), f"expected {n} numbers (one per {what}), got shape {list(arr.shape)}"
        )
    out: F64 = arr.astype(np.float64, copy=False)
    _check_finite(out, field)
    if nonneg and (out < 0).any():
        i = _first(out < 0)
        raise InputError((field, i), f"{_fmt(out[i])} is negative, expected >= 0")
    return out


# ---------------------------------------------------------------------------------------------
# predictions


def _task_for(x: npt.NDArray[Any], task: str | None) -> Task:
    if x.ndim not in (1, 2):  # whatever the task: never N or N x K
        shape = tuple(int(d) for d in x.shape)
        raise InputError(("predictions",), f"expected N or N x K, got shape {shape}")
    if task is None:
        return "binary" if x.ndim == 1 else "multiclass"
    if task not in TASKS:
        raise InputError(("task",), f"{task!r} is not one of {', '.join(TASKS)}", kind="enum")
    return task


def _check_shape(x: FloatArray, task: Task) -> None:
    if task == "binary" and x.ndim != 1:
        raise InputError(
            ("predictions",), f"binary predictions must be 1-D (N,), got shape {list(x.shape)}"
        )
    if task != "binary" and x.ndim != 2:
        raise InputError(
            ("predictions",), f"{task} predictions must be 2-D (N, K), got shape {list(x.shape)}"
        )
    if x.shape[0] == 0:
        raise InputError(("predictions",), "empty batch: at least one item is required")
    if task == "multiclass" and x.shape[1] < 2:
        raise InputError(("predictions",), f"multiclass needs K >= 2 classes, got K = {x.shape[1]}")
    if task == "multilabel" and x.shape[1] < 1:
        raise InputError(("predictions",), "multilabel needs K >= 1 classes, got K = 0")


# Hints: appended to an error message when the mistake behind it is recognisable. They are
# computed on the error path only (valid input never pays for them) and fire only on evidence
# that rounding cannot produce (_HINT_MARGIN) and a few stray values cannot either.

#: How far outside a bound a value must be to count as evidence (rounding stays far below).
_HINT_MARGIN = 0.01

LOGITS_HINT = '; these look like logits: pass input_type="logits"'
LOG_PROBABILITIES_HINT = '; these look like log-probabilities: pass input_type="log_probabilities"'
PROBABILITIES_HINT = '; these look like probabilities: pass input_type="probabilities"'
MULTILABEL_HINT = '; rows of independent probabilities? pass task="multilabel"'


def _sums_to_one(row: FloatArray) -> bool:
    return abs(float(row.sum(dtype=np.float64)) - 1.0) <= _HINT_MARGIN


def _probabilities_hint(x: FloatArray, bad: Bool, flat: int, task: Task, tol: float) -> str:
    """Why probabilities are outside [0, 1], when it is recognisable (else "").

    Logits: values below -0.01 and above 1.01 both occur, at least a quarter of all values are
    outside [0, 1] (a few stray values are not logits), and, for multiclass, the offending row
    does not sum to 1 (a row such as [1.2, -0.2] is a damaged probability row, not logits).
    Log-probabilities (multiclass): no value is positive and every row has logsumexp 0 within
    ``tol``.
    """
    lo, hi = float(x.min()), float(x.max())
    if lo < -_HINT_MARGIN and hi > 1 + _HINT_MARGIN and 4 * np.count_nonzero(bad) >= x.size:
        if task != "multiclass" or not _sums_to_one(x[np.unravel_index(flat, x.shape)[0]]):
            return LOGITS_HINT
    if task == "multiclass" and hi <= 0 and float(np.abs(row_logsumexp(x)).max()) <= tol:
        return LOG_PROBABILITIES_HINT
    return ""


def _check_probabilities(x: FloatArray, field: str, task: Task, tol: float) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        bad = (x < 0) | (x > 1)
        flat = _first(bad)
        value = x.ravel()[flat]
        shown = _fmt(value)
        if float(shown) in (0.0, 1.0):  # 1.0000001 would read "1": show every digit
            shown = str(value)  # the shortest repr in the array's own precision
        hint = _probabilities_hint(x, bad, flat, task, tol)
        raise InputError(_loc(field, flat, x.shape), f"probability {shown} is outside [0, 1]{hint}")


def _log_probabilities_hint(x: FloatArray, task: Task, tol: float) -> str:
    """Why log-probabilities are positive, when it is recognisable (else "").

    Logits: values above 0.01 and below -0.01 both occur (rounding gives neither; probabilities
    are never negative). Probabilities: every value is in [0, 1] and, for multiclass, every row
    sums to 1 within ``tol``.
    """
    lo, hi = float(x.min()), float(x.max())
    if hi > _HINT_MARGIN and lo < -_HINT_MARGIN:
        return LOGITS_HINT
    if lo >= 0 and hi <= 1:
        if task != "multiclass" or float(np.abs(row_sums(x) - 1.0).max()) <= tol:
            return PROBABILITIES_HINT
    return ""


def _check_log_probabilities(x: FloatArray, field: str, task: Task, tol: float) -> None:
    if float(x.max()) > 0:
        flat = _first(x > 0)
        hint = _log_probabilities_hint(x, task, tol)
        raise InputError(
            _loc(field, flat, x.shape),
            f"log-probability {_fmt(x.ravel()[flat])} is positive, expected <= 0{hint}",
        )


def _row_sum_hint(sums: F64, task_given: bool) -> str:
    """Multiclass rows that look multilabel: ``task`` was not given and more than half of the
    rows are off 1 by more than 0.01 (beyond rounding; one damaged row among good ones is not
    multilabel). Every entry is in [0, 1] already."""
    if task_given:
        return ""
    off = np.count_nonzero(np.abs(sums - 1.0) > _HINT_MARGIN)
    return MULTILABEL_HINT if 2 * off > sums.shape[0] else ""


def _normalise_rows(
    x: FloatArray,
    input_type: InputType,
    tol: float,
    renormalize: bool,
    field: str,
    extremes: tuple[float, float],
    task_given: bool = True,
) -> FloatArray:
    """Check (or with ``renormalize`` restore) multiclass rows: sum p = 1 or logsumexp = 0.

    ``extremes`` are the smallest and largest row sums: when both are within the tolerance the
    rule holds and no per-row pass is needed. ``task_given``: whether the caller named the task
    (when not, rows that look multilabel get a hint).
    """
    if input_type == "probabilities":
        if not renormalize and 1.0 - tol <= extremes[0] and extremes[1] <= 1.0 + tol:
            return x
        sums = row_sums(x)
        if renormalize:
            zero = sums <= 0
            if zero.any():
                i = _first(zero)
                raise InputError((field, i), "row sums to 0, cannot renormalize")
            return np.ascontiguousarray(x / sums[:, None].astype(x.dtype))
        bad = np.abs(sums - 1.0) > tol
        if bad.any():
            i = _first(bad)
            hint = _row_sum_hint(sums, task_given)
            raise InputError(
                (field, i), f"row sums to {_fmt(sums[i])}, expected 1 ± {_fmt(tol)}{hint}"
            )
        return x
    lse = row_logsumexp(x)
    if renormalize:
        return np.ascontiguousarray(x - lse[:, None].astype(x.dtype))
    bad = np.abs(lse) > tol
    if bad.any():
        i = _first(bad)
        raise InputError((field, i), f"row logsumexp is {_fmt(lse[i])}, expected 0 ± {_fmt(tol)}")
    return x


def _check_predictions(
    x: FloatArray,
    task: Task,
    input_type: InputType,
    tol: float,
    renormalize: bool,
    task_given: bool = True,
) -> FloatArray:
    _check_shape(x, task)
    extremes = _check_finite(x, "predictions")
    if input_type == "probabilities":
        _check_probabilities(x, "predictions", task, tol)
    elif input_type == "log_probabilities":
        _check_log_probabilities(x, "predictions", task, tol)
    if task == "multiclass" and input_type != "logits":
        assert extremes is not None
        x = _normalise_rows(x, input_type, tol, renormalize, "predictions", extremes, task_given)
    elif renormalize and input_type != "logits":
        raise InputError(("renormalize",), "only multiclass probability rows can be renormalized")
    return x


# ---------------------------------------------------------------------------------------------
# labels


def _check_class_names(names: Any, task: Task, k: int) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        raise InputError(("class_names",), "expected a list of strings")
    out = tuple(names)
    for i, name in enumerate(out):
        if not isinstance(name, str):
            raise InputError(
                ("class_names", i),
                f"expected a string, got {type(name).__name__}",
                kind="string_type",
            )
    want = 2 if task == "binary" else k
    if len(out) != want:
        what = "2 (negative, positive)" if task == "binary" else f"{k} (one per class)"
        raise InputError(("class_names",), f"expected {what} names, got {len(out)}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        for i, name in enumerate(out):
            if name in seen:
                raise InputError(("class_names", i), f"duplicate name {name!r}")
            seen.add(name)
    return out


def _names_to_index(arr: npt.NDArray[Any], names: tuple[str, ...] | None) -> I64:
    if names is None:
        raise InputError(("labels",), "string labels need class_names", kind="int_type")
    lookup = {name: i for i, name in enumerate(names)}
    out = np.empty(arr.shape[0], dtype=np.int64)
    for i, label in enumerate(arr.tolist()):  # strings: a dict lookup each, no vector form
        idx = lookup.get(label) if isinstance(label, str) else None
        if idx is None:
            shown = repr(label)[:60]
            raise InputError(("labels", i), f"{shown} is not one of class_names")
        out[i] = idx
    return out


def _integral(arr: npt.NDArray[Any], field: str, what: str) -> I64:
    if arr.dtype == np.bool_:
        raise InputError((field,), f"expected {what}, got booleans", kind="int_type")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        _check_finite(arr, field)
        frac = arr != np.round(arr)
        if frac.any():
            i = _first(frac)
            raise InputError(
                (field, i), f"{_fmt(arr[i])} is not an integer, expected {what}", kind="int_type"
            )
        return arr.astype(np.int64)
    raise InputError((field,), f"expected {what}", kind="int_type")


def _sparse_labels(
    arr: npt.NDArray[Any], k: int, ignore_index: int | None, names: tuple[str, ...] | None
) -> Labels:
    if arr.dtype.kind in "USO":
        idx = _names_to_index(arr, names)
        ignored = None
    else:
        idx = _integral(arr, "labels", f"an integer class index in [0, {k})")
        ignored = (idx == ignore_index) if ignore_index is not None else None
    bad = (idx < 0) | (idx >= k)
    if ignored is not None:
        bad &= ~ignored
    if bad.any():
        i = _first(bad)
        extra = f" or ignore_index {ignore_index}" if ignore_index is not None else ""
        raise InputError(("labels", i), f"class {int(idx[i])} is outside [0, {k}){extra}")
    if ignored is not None and ignored.any():
        true_class = np.where(ignored, -1, idx)
        index = np.where(ignored, 0, idx)
        return Labels("sparse", index, None, ~ignored, true_class)
    return Labels("sparse", idx, None, None, idx)


def _target_values(arr: npt.NDArray[Any], field: str) -> F64:
    out = _as_float(arr, field).astype(np.float64, copy=False)
    _check_finite(out, field)
    bad = (out < 0) | (out > 1)
    if bad.any():
        flat = _first(bad)
        raise InputError(
            _loc(field, flat, out.shape), f"target {_fmt(out.ravel()[flat])} is outside [0, 1]"
        )
    return out


def _check_labels(
    labels: Any,
    task: Task,
    n: int,
    k: int,
    ignore_index: int | None,
    names: tuple[str, ...] | None,
    tol: float,
) -> Labels:
    arr = _as_array(labels, "labels")
    if arr.ndim == 0 or arr.shape[0] != n:
        got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} labels"
        raise InputError(("labels",), f"expected {n} labels (one per prediction), got {got}")
    if ignore_index is not None and not (task == "multiclass" and arr.ndim == 1):
        raise InputError(("ignore_index",), "only for sparse multiclass labels (class indices)")
    if task == "multiclass" and arr.ndim == 1:
        return _sparse_labels(arr, k, ignore_index, names)
    if task == "binary":
        if arr.ndim != 1:
            raise InputError(
                ("labels",), f"binary labels must be 1-D (N,), got shape {list(arr.shape)}"
            )
        if arr.dtype.kind in "USO":
            target = _names_to_index(arr, names).astype(np.float64)
        else:
            target = _target_values(
                arr.astype(np.float64) if arr.dtype == np.bool_ else arr, "labels"
            )
        return Labels("binary", None, target, None, (target >= 0.5).astype(np.int64))
    if arr.ndim != 2 or arr.shape[1] != k:
        raise InputError(
            ("labels",), f"{task} targets must have shape [{n}, {k}], got {list(arr.shape)}"
        )
    target = _target_values(arr.astype(np.float64) if arr.dtype == np.bool_ else arr, "labels")
    if task == "multilabel":
        return Labels("dense", None, target, None, target >= 0.5)
    sums = target.sum(axis=1)
    bad = np.abs(sums - 1.0) > tol
    if bad.any():
        i = _first(bad)
        raise InputError(
            ("labels", i), f"target row sums to {_fmt(sums[i])}, expected 1 ± {_fmt(tol)}"
        )
    return Labels("dense", None, target, None, np.argmax(target, axis=1).astype(np.int64))


# ---------------------------------------------------------------------------------------------
# options


def check_flag_rules(
    flag: Mapping[str, Any] | FlagRules | None, *, default_min_confidence: float = 0.5
) -> FlagRules:
    """The ``flag`` object -> :class:`FlagRules`; ``None`` means ``min_confidence`` alone."""
    if flag is None:
        return FlagRules(min_confidence=default_min_confidence)
    if isinstance(flag, FlagRules):
        return flag
    if not isinstance(flag, Mapping):
        raise InputError(
            ("flag",), "expected an object with min_confidence, max_loss, misclassified"
        )
    unknown = set(flag) - {"min_confidence", "max_loss", "misclassified"}
    if unknown:
        name = sorted(unknown)[0]
        raise InputError(("flag", name), "unknown flag rule", kind="extra_forbidden")
    mc, ml, mis = flag.get("min_confidence"), flag.get("max_loss"), flag.get("misclassified")
    if mis is not None and not isinstance(mis, bool | np.bool_):
        raise InputError(("flag", "misclassified"), "expected true or false", kind="bool_type")
    return FlagRules(
        min_confidence=None
        if mc is None
        else _scalar(mc, ("flag", "min_confidence"), low=0, high=1),
        max_loss=None if ml is None else _scalar(ml, ("flag", "max_loss"), low=0),
        misclassified=bool(mis),
    )


def _pos_weight(value: Any, task: Task, k: int) -> F64 | float | None:
    if value is None:
        return None
    if task == "multiclass":
        raise InputError(
            ("pos_weight",),
            "only for binary and multilabel tasks; use class_weights for multiclass",
        )
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return _scalar(value, "pos_weight", low=0)
    if task == "binary":
        raise InputError(("pos_weight",), "expected a number for a binary task", kind="float_type")
    return _vector(value, "pos_weight", k, "class")


def check_options(
    task: Task,
    n: int,
    k: int,
    *,
    class_weights: Any = None,
    sample_weights: Any = None,
    pos_weight: Any = None,
    label_smoothing: Any = 0.0,
    focal_gamma: Any = 0.0,
    focal_alpha: Any = None,
    confidence: Any = "max_probability",
    decision_threshold: Any = 0.5,
    clip_eps: Any = DEFAULT_EPS,
) -> Options:
    """Check every scalar and vector option against the task and batch shape."""
    if confidence not in CONFIDENCE_METHODS:
        raise InputError(
            ("confidence",),
            f"{confidence!r} is not one of {', '.join(CONFIDENCE_METHODS)}",
            kind="enum",
        )
    if class_weights is not None and task != "multiclass":
        raise InputError(
            ("class_weights",), "only for multiclass; use pos_weight for binary and multilabel"
        )
    return Options(
        class_weights=None
        if class_weights is None
        else _vector(class_weights, "class_weights", k, "class"),
        sample_weights=None
        if sample_weights is None
        else _vector(sample_weights, "sample_weights", n, "item"),
        pos_weight=_pos_weight(pos_weight, task, k),
        label_smoothing=_scalar(label_smoothing, "label_smoothing", low=0, high=1),
        focal_gamma=_scalar(focal_gamma, "focal_gamma", low=0),
        focal_alpha=None
        if focal_alpha is None
        else _scalar(focal_alpha, "focal_alpha", low=0, high=1),
        confidence=confidence,
        decision_threshold=_scalar(decision_threshold, "decision_threshold", low=0, high=1),
        clip_eps=_scalar(clip_eps, "clip_eps", low=0, high=0.5, low_open=True, high_open=True),
    )


def _check_ignore_index(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(("ignore_index",), "expected an integer", kind="int_type")
    return int(value)


def check_batch(
    predictions: Any,
    labels: Any = None,
    *,
    task: str | None = None,
    input_type: str = "probabilities",
    ignore_index: Any = None,
    renormalize: bool = False,
    sum_tolerance: Any = 1e-4,
    class_names: Any = None,
    **options: Any,
) -> Batch:
    """Check everything a scoring call receives; return the trusted :class:`Batch`."""
    if input_type not in INPUT_TYPES:
        raise InputError(
            ("input_type",), f"{input_type!r} is not one of {', '.join(INPUT_TYPES)}", kind="enum"
        )
    tol = _scalar(sum_tolerance, "sum_tolerance", low=0, high=1)
    raw = _as_array(predictions, "predictions")
    the_task = _task_for(raw, task)
    x = _check_predictions(
        _as_float(raw, "predictions"),
        the_task,
        input_type,
        tol,
        bool(renormalize),
        task_given=task is not None,
    )
    n = x.shape[0]
    k = 2 if the_task == "binary" else x.shape[1]
    names = _check_class_names(class_names, the_task, k)
    checked = (
        None
        if labels is None
        else _check_labels(labels, the_task, n, k, _check_ignore_index(ignore_index), names, tol)
    )
    if labels is None and ignore_index is not None:
        _check_ignore_index(ignore_index)
    opts = check_options(the_task, n, k, **options)
    if opts.confidence == "true_class" and checked is None:
        raise InputError(("confidence",), "'true_class' needs labels")
    return Batch(the_task, input_type, x, n, k, checked, opts, names)
