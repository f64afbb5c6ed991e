"""Labels and class names, checked against the task and the predictions' shape.

* binary: N targets in [0, 1] (booleans, or class names through ``class_names``), or
  ``ignore_index`` (the item has no loss);
* multiclass: N class indices in [0, K) (or ``ignore_index``; or class names), or N x K target
  distributions whose rows sum to 1 within ``sum_tolerance`` (a row that does not is rejected,
  where torch would take it as given: a loss of a "distribution" of mass 0.9 is not a
  cross-entropy; no ``ignore_index``, as torch's probability targets);
* multilabel: N x K targets in [0, 1], or ``ignore_index`` (that entry has no loss; an item
  with no scored entry has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from xentcore.errors import InputError
from xentcore.types import F64, I64, Bool, Task
from xentcore.validate.arrays import as_array, as_float, check_finite, first_true, fmt, located

__all__ = ["Labels", "check_class_names", "check_labels"]


@dataclass(frozen=True)
class Labels:
    """Checked labels.

    ``kind`` is ``"sparse"`` (multiclass class indices in ``index``), ``"dense"`` (multiclass
    target distributions or multilabel targets in ``target``, shape (N, K)) or ``"binary"``
    (targets in [0, 1] in ``target``, shape (N,)). ``scored`` is None when every item has a loss,
    else a boolean mask (False where the label equals ``ignore_index``, or for multilabel where
    every entry of the row does; ``index`` is 0 there, a binary ``target`` 0).
    ``entries_scored`` (multilabel only) is None when every entry has a loss, else the (N, K)
    mask of the entries that do (``target`` is 0 and the true set False where one does not).
    ``true_class`` is the single true class of every item (int64, -1 where ignored; binary:
    target >= 0.5; dense multiclass: the argmax of the target); for multilabel the boolean true
    set (N, K).
    """

    kind: Literal["sparse", "dense", "binary"]
    index: I64 | None
    target: F64 | None
    scored: Bool | None
    true_class: npt.NDArray[Any]
    entries_scored: Bool | None = None


def check_class_names(names: Any, task: Task, k: int) -> tuple[str, ...] | None:
    """Distinct strings, 2 for a binary task (negative, positive), else one per class."""
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
    """Integers as int64; floats only when finite and integral (2.0 is class 2)."""
    if arr.dtype == np.bool_:
        raise InputError((field,), f"expected {what}, got booleans", kind="int_type")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        check_finite(arr, field)
        frac = arr != np.round(arr)
        if frac.any():
            i = first_true(frac)
            raise InputError(
                (field, i), f"{fmt(arr[i])} is not an integer, expected {what}", kind="int_type"
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
        i = first_true(bad)
        extra = f" or ignore_index {ignore_index}" if ignore_index is not None else ""
        raise InputError(("labels", i), f"class {int(idx[i])} is outside [0, {k}){extra}")
    if ignored is not None and ignored.any():
        true_class = np.where(ignored, -1, idx)
        index = np.where(ignored, 0, idx)
        return Labels("sparse", index, None, ~ignored, true_class)
    return Labels("sparse", idx, None, None, idx)


def _target_values(arr: npt.NDArray[Any], field: str) -> F64:
    """Finite float64 targets in [0, 1] (booleans read as 0 and 1)."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    out = as_float(arr, field).astype(np.float64, copy=False)
    check_finite(out, field)
    bad = (out < 0) | (out > 1)
    if bad.any():
        flat = first_true(bad)
        raise InputError(
            located(field, flat, out.shape), f"target {fmt(out.ravel()[flat])} is outside [0, 1]"
        )
    return out


def _ignored_targets(arr: npt.NDArray[Any], ignore_index: int | None) -> Bool | None:
    """Where numeric targets equal ``ignore_index`` (None when none does)."""
    if ignore_index is None or arr.dtype.kind not in "biuf":
        return None
    ignored: Bool = arr == ignore_index
    return ignored if ignored.any() else None


def _binary_labels(
    arr: npt.NDArray[Any], names: tuple[str, ...] | None, ignore_index: int | None
) -> Labels:
    if arr.ndim != 1:
        raise InputError(
            ("labels",), f"binary labels must be 1-D (N,), got shape {list(arr.shape)}"
        )
    if arr.dtype.kind in "USO":
        target = _names_to_index(arr, names).astype(np.float64)
        return Labels("binary", None, target, None, (target >= 0.5).astype(np.int64))
    ignored = _ignored_targets(arr, ignore_index)
    if ignored is None:
        target = _target_values(arr, "labels")
        return Labels("binary", None, target, None, (target >= 0.5).astype(np.int64))
    target = _target_values(np.where(ignored, 0, arr), "labels")  # 0: any valid target
    true_class = np.where(ignored, -1, target >= 0.5).astype(np.int64)
    return Labels("binary", None, target, ~ignored, true_class)


def _multilabel_labels(arr: npt.NDArray[Any], ignore_index: int | None) -> Labels:
    ignored = _ignored_targets(arr, ignore_index)
    if ignored is None:
        target = _target_values(arr, "labels")
        return Labels("dense", None, target, None, target >= 0.5)
    target = _target_values(np.where(ignored, 0, arr), "labels")
    entries = ~ignored
    rows: Bool = np.any(entries, axis=1)
    return Labels("dense", None, target, None if rows.all() else rows, target >= 0.5, entries)


def _dense_labels(
    arr: npt.NDArray[Any], task: Task, n: int, k: int, tol: float, ignore_index: int | None
) -> Labels:
    if arr.ndim != 2 or arr.shape[1] != k:
        raise InputError(
            ("labels",), f"{task} targets must have shape [{n}, {k}], got {list(arr.shape)}"
        )
    if task == "multilabel":
        return _multilabel_labels(arr, ignore_index)
    if ignore_index is not None:
        raise InputError(
            ("ignore_index",),
            "not for target distributions (as torch's probability targets): only for class "
            "indices, binary and multilabel labels",
        )
    target = _target_values(arr, "labels")
    sums = target.sum(axis=1)
    bad = np.abs(sums - 1.0) > tol
    if bad.any():
        i = first_true(bad)
        raise InputError(
            ("labels", i), f"target row sums to {fmt(sums[i])}, expected 1 ± {fmt(tol)}"
        )
    return Labels("dense", None, target, None, np.argmax(target, axis=1).astype(np.int64))


def check_labels(
    labels: Any,
    task: Task,
    shape: tuple[int, int],
    *,
    ignore_index: int | None,
    names: tuple[str, ...] | None,
    tol: float,
) -> Labels:
    """Check the labels of a batch of ``shape`` (N, K) (K = 2 for binary): one per item."""
    n, k = shape
    arr = as_array(labels, "labels")
    if arr.ndim == 0 or arr.shape[0] != n:
        got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} labels"
        raise InputError(("labels",), f"expected {n} labels (one per prediction), got {got}")
    if task == "multiclass" and arr.ndim == 1:
        return _sparse_labels(arr, k, ignore_index, names)
    if task == "binary":
        return _binary_labels(arr, names, ignore_index)
    return _dense_labels(arr, task, n, k, tol, ignore_index)
