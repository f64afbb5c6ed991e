"""Predictions: the task from their shape, then the rules of their input type.

* every task: N or N x K, N >= 1, every value finite;
* ``probabilities``: every value in [0, 1]; multiclass rows sum to 1 within ``sum_tolerance``
  (or, with ``renormalize``, are divided by their sum);
* ``log_probabilities``: every value <= 0; multiclass rows have logsumexp 0 within
  ``sum_tolerance`` (or, with ``renormalize``, have it subtracted);
* ``logits``: any finite value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import row_logsumexp, row_sums
from xentcore.errors import InputError
from xentcore.types import TASKS, FloatArray, InputType, Task
from xentcore.validate.arrays import check_finite, first_true, fmt, located
from xentcore.validate.hints import log_probabilities_hint, probabilities_hint, row_sum_hint

__all__ = ["check_predictions", "resolve_task"]


def resolve_task(x: npt.NDArray[Any], task: str | None) -> Task:
    """The task: as given, else ``binary`` for N and ``multiclass`` for N x K predictions."""
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


def _check_probabilities(x: FloatArray, field: str, task: Task, tol: float) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        bad = (x < 0) | (x > 1)
        flat = first_true(bad)
        value = x.ravel()[flat]
        shown = fmt(value)
        if float(shown) in (0.0, 1.0):  # 1.0000001 would read "1": show every digit
            shown = str(value)  # the shortest repr in the array's own precision
        hint = probabilities_hint(x, bad, flat, task, tol)
        raise InputError(
            located(field, flat, x.shape), f"probability {shown} is outside [0, 1]{hint}"
        )


def _check_log_probabilities(x: FloatArray, field: str, task: Task, tol: float) -> None:
    if float(x.max()) > 0:
        flat = first_true(x > 0)
        hint = log_probabilities_hint(x, task, tol)
        raise InputError(
            located(field, flat, x.shape),
            f"log-probability {fmt(x.ravel()[flat])} is positive, expected <= 0{hint}",
        )


def _normalise_probability_rows(
    x: FloatArray, tol: float, renormalize: bool, extremes: tuple[float, float], task_given: bool
) -> FloatArray:
    """sum_k p_ik = 1 within ``tol``, or with ``renormalize`` p_ik / sum_k p_ik (a row summing
    to 0 cannot be). ``extremes`` are the smallest and largest row sums: when both are within
    the tolerance the rule holds and no per-row pass is needed."""
    if not renormalize and 1.0 - tol <= extremes[0] and extremes[1] <= 1.0 + tol:
        return x
    sums = row_sums(x)
    if renormalize:
        zero = sums <= 0
        if zero.any():
            i = first_true(zero)
            raise InputError(("predictions", i), "row sums to 0, cannot renormalize")
        return np.ascontiguousarray(x / sums[:, None].astype(x.dtype))
    bad = np.abs(sums - 1.0) > tol
    if bad.any():
        i = first_true(bad)
        hint = row_sum_hint(sums, task_given)
        raise InputError(
            ("predictions", i), f"row sums to {fmt(sums[i])}, expected 1 ± {fmt(tol)}{hint}"
        )
    return x


def _normalise_log_rows(x: FloatArray, tol: float, renormalize: bool) -> FloatArray:
    """logsumexp_k l_ik = 0 within ``tol``, or with ``renormalize`` l_ik - logsumexp_k l_ik."""
    lse = row_logsumexp(x)
    if renormalize:
        return np.ascontiguousarray(x - lse[:, None].astype(x.dtype))
    bad = np.abs(lse) > tol
    if bad.any():
        i = first_true(bad)
        raise InputError(
            ("predictions", i), f"row logsumexp is {fmt(lse[i])}, expected 0 ± {fmt(tol)}"
        )
    return x


def check_predictions(
    x: FloatArray,
    task: Task,
    input_type: InputType,
    *,
    tol: float,
    renormalize: bool,
    task_given: bool,
    finite: bool = True,
) -> FloatArray:
    """Check float predictions of a resolved task; return them (renormalized when asked).

    ``task_given``: whether the caller named the task (when not, multiclass probability rows
    that look multilabel get a hint). ``renormalize`` applies to multiclass probability and
    log-probability rows only; anywhere else it raises. ``finite=False`` leaves logits
    unscanned for NaN and infinities (see ``check_batch``'s ``finite_logits``).
    """
    _check_shape(x, task)
    extremes = check_finite(x, "predictions") if finite or input_type != "logits" else None
    if input_type == "probabilities":
        _check_probabilities(x, "predictions", task, tol)
    elif input_type == "log_probabilities":
        _check_log_probabilities(x, "predictions", task, tol)
    if task == "multiclass" and input_type == "probabilities":
        assert extremes is not None
        return _normalise_probability_rows(x, tol, renormalize, extremes, task_given)
    if task == "multiclass" and input_type == "log_probabilities":
        return _normalise_log_rows(x, tol, renormalize)
    if renormalize and input_type != "logits":
        raise InputError(("renormalize",), "only multiclass probability rows can be renormalized")
    return x
