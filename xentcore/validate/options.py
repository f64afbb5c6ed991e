"""Scalar and vector options of a scoring call, and the flag rules.

Bounds (closed unless marked open): ``label_smoothing``, a scalar ``focal_alpha``,
``decision_threshold`` and ``sum_tolerance`` in [0, 1]; ``focal_gamma`` and a scalar
``pos_weight`` >= 0; ``clip_eps`` in (0, 0.5), or ``"dtype"``: the machine epsilon of the
predictions' dtype as given (scikit-learn's ``log_loss``). Vectors, every entry finite and >= 0
(a negative weight is rejected, never applied): ``class_weights`` one per class (binary: 2, the
negative class then the positive), ``sample_weights`` one per item, a vector ``pos_weight``
(multilabel only) one per class, a vector ``focal_alpha`` (multiclass and multilabel) one per
class, each in [0, 1] for multilabel (alpha_t = alpha y + (1 - alpha)(1 - y) needs both
factors >= 0). Flag rules: ``min_confidence`` in [0, 1], ``max_loss`` >= 0, ``misclassified``
a boolean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from xentcore.errors import InputError, Location
from xentcore.types import (
    CONFIDENCE_METHODS,
    F64,
    INPUT_TYPES,
    FlagRules,
    InputType,
    ScoreOptions,
    Task,
)
from xentcore.validate.arrays import as_float, check_finite, first_true, fmt

__all__ = [
    "CLIP_EPS_DTYPE",
    "check_flag_rules",
    "dtype_eps",
    "check_ignore_index",
    "check_input_type",
    "check_options",
    "scalar",
]


def scalar(
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
            loc, f"{fmt(v)} is below the minimum {'>' if low_open else '>='} {fmt(low)}"
        )
    if high is not None and (v > high or (high_open and v == high)):
        raise InputError(
            loc, f"{fmt(v)} is above the maximum {'<' if high_open else '<='} {fmt(high)}"
        )
    return v


#: ``clip_eps`` that follows the predictions' dtype (as given, before any widening).
CLIP_EPS_DTYPE = "dtype"


def _vector(value: Any, field: str, n: int, what: str, *, high: float | None = None) -> F64:
    """``n`` finite numbers >= 0 (and <= ``high``), one per ``what``, as a contiguous float64
    array."""
    arr = as_float(value, field)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(
            (field,), f"expected {n} numbers (one per {what}), got shape {list(arr.shape)}"
        )
    out: F64 = arr.astype(np.float64, copy=False)
    check_finite(out, field)
    if (out < 0).any():
        i = first_true(out < 0)
        raise InputError((field, i), f"{fmt(out[i])} is negative, expected >= 0")
    if high is not None and (out > high).any():
        i = first_true(out > high)
        raise InputError((field, i), f"{fmt(out[i])} is above the maximum <= {fmt(high)}")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_input_type(value: Any) -> InputType:
    """One of ``INPUT_TYPES``."""
    if value not in INPUT_TYPES:
        raise InputError(
            ("input_type",), f"{value!r} is not one of {', '.join(INPUT_TYPES)}", kind="enum"
        )
    return value  # type: ignore[no-any-return]  # one of INPUT_TYPES


def check_ignore_index(value: Any) -> int | None:
    """An integer (or None); whether labels may carry it is the labels' rule."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(("ignore_index",), "expected an integer", kind="int_type")
    return int(value)


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
        else scalar(mc, ("flag", "min_confidence"), low=0, high=1),
        max_loss=None if ml is None else scalar(ml, ("flag", "max_loss"), low=0),
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
    if _is_number(value):
        return scalar(value, "pos_weight", low=0)
    if task == "binary":
        raise InputError(("pos_weight",), "expected a number for a binary task", kind="float_type")
    return _vector(value, "pos_weight", k, "class")


def _class_weights(value: Any, task: Task, k: int) -> F64 | None:
    """One weight per class: K for multiclass and multilabel (torch ``weight=``), 2 for binary
    (the negative class, then the positive)."""
    if value is None:
        return None
    if task == "binary":
        return _vector(value, "class_weights", 2, "class: negative, then positive")
    return _vector(value, "class_weights", k, "class")


def _focal_alpha(value: Any, task: Task, k: int) -> F64 | float | None:
    """A number in [0, 1], or (multiclass, multilabel) one alpha per class: >= 0 for multiclass
    (Keras' per-class alpha, e.g. inverse class frequencies), in [0, 1] for multilabel."""
    if value is None:
        return None
    if _is_number(value):
        return scalar(value, "focal_alpha", low=0, high=1)
    if task == "binary":
        raise InputError(
            ("focal_alpha",),
            "expected a number for a binary task (alpha weighs the positive class, 1 - alpha "
            "the negative); use class_weights for two weights",
            kind="float_type",
        )
    return _vector(value, "focal_alpha", k, "class", high=1.0 if task == "multilabel" else None)


def dtype_eps(dtype: np.dtype[Any] | None) -> float:
    """The ``clip_eps`` of ``"dtype"``: np.finfo(dtype).eps of a float16, float32 or float64
    ``dtype``, else (integers, wider floats, None) float64's, as scikit-learn's ``log_loss``
    (which converts those to float64)."""
    known = dtype is not None and dtype.kind == "f" and dtype.itemsize <= 8
    return float(np.finfo(dtype if known else np.float64).eps)


def _clip_eps(value: Any, dtype: np.dtype[Any] | None) -> float:
    """``clip_eps`` in (0, 0.5), or ``"dtype"`` (see :func:`dtype_eps`)."""
    if isinstance(value, str):
        if value != CLIP_EPS_DTYPE:
            raise InputError(
                ("clip_eps",), f"expected a number or {CLIP_EPS_DTYPE!r}, got {value[:40]!r}"
            )
        return dtype_eps(dtype)
    return scalar(value, "clip_eps", low=0, high=0.5, low_open=True, high_open=True)


def check_options(
    options: ScoreOptions,
    task: Task,
    shape: tuple[int, int],
    *,
    input_type: InputType,
    sum_tolerance: float,
    ignore_index: int | None,
    class_names: tuple[str, ...] | None,
    dtype: np.dtype[Any] | None = None,
) -> ScoreOptions:
    """Check the loss and confidence options of a batch of ``shape`` (N, K) and resolved
    ``task``; return the checked copy of ``options``.

    In the copy, weights are float64 arrays and scalars floats; the keyword arguments, checked
    before (see ``check_batch``), take the place of their raw fields; ``renormalize`` is a bool;
    ``clip_eps`` is a float (``"dtype"`` resolved with ``dtype``, the predictions' dtype as the
    caller gave them; None: float64).
    """
    n, k = shape
    confidence = options.confidence
    if confidence not in CONFIDENCE_METHODS:
        raise InputError(
            ("confidence",),
            f"{confidence!r} is not one of {', '.join(CONFIDENCE_METHODS)}",
            kind="enum",
        )
    sw = options.sample_weights
    return ScoreOptions(
        task=task,
        input_type=input_type,
        class_weights=_class_weights(options.class_weights, task, k),
        sample_weights=None if sw is None else _vector(sw, "sample_weights", n, "item"),
        pos_weight=_pos_weight(options.pos_weight, task, k),
        label_smoothing=scalar(options.label_smoothing, "label_smoothing", low=0, high=1),
        ignore_index=ignore_index,
        focal_gamma=scalar(options.focal_gamma, "focal_gamma", low=0),
        focal_alpha=_focal_alpha(options.focal_alpha, task, k),
        confidence=confidence,
        decision_threshold=scalar(options.decision_threshold, "decision_threshold", low=0, high=1),
        renormalize=bool(options.renormalize),
        sum_tolerance=sum_tolerance,
        clip_eps=_clip_eps(options.clip_eps, dtype),
        class_names=class_names,
    )
