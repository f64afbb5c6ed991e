"""Scalar and vector options of a scoring call, and the flag rules.

Bounds (closed unless marked open): ``label_smoothing``, ``focal_alpha``,
``decision_threshold`` and ``sum_tolerance`` in [0, 1]; ``focal_gamma`` and a scalar
``pos_weight`` >= 0; ``clip_eps`` in (0, 0.5). ``class_weights`` (multiclass only) has one
entry per class, ``sample_weights`` one per item, a vector ``pos_weight`` (multilabel only) one
per class; every entry finite and >= 0. Flag rules: ``min_confidence`` in [0, 1],
``max_loss`` >= 0, ``misclassified`` a boolean.
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
    "check_flag_rules",
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


def _vector(value: Any, field: str, n: int, what: str) -> F64:
    """``n`` finite numbers >= 0 (one per ``what``) as a contiguous float64 array."""
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
    return out


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
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return scalar(value, "pos_weight", low=0)
    if task == "binary":
        raise InputError(("pos_weight",), "expected a number for a binary task", kind="float_type")
    return _vector(value, "pos_weight", k, "class")


def check_options(
    options: ScoreOptions,
    task: Task,
    shape: tuple[int, int],
    *,
    input_type: InputType,
    sum_tolerance: float,
    ignore_index: int | None,
    class_names: tuple[str, ...] | None,
) -> ScoreOptions:
    """Check the loss and confidence options of a batch of ``shape`` (N, K) and resolved
    ``task``; return the checked copy of ``options``.

    In the copy, weights are float64 arrays and scalars floats; the keyword arguments, checked
    before (see ``check_batch``), take the place of their raw fields; ``renormalize`` is a bool.
    """
    n, k = shape
    confidence = options.confidence
    if confidence not in CONFIDENCE_METHODS:
        raise InputError(
            ("confidence",),
            f"{confidence!r} is not one of {', '.join(CONFIDENCE_METHODS)}",
            kind="enum",
        )
    cw, sw, alpha = options.class_weights, options.sample_weights, options.focal_alpha
    if cw is not None and task != "multiclass":
        raise InputError(
            ("class_weights",), "only for multiclass; use pos_weight for binary and multilabel"
        )
    return ScoreOptions(
        task=task,
        input_type=input_type,
        class_weights=None if cw is None else _vector(cw, "class_weights", k, "class"),
        sample_weights=None if sw is None else _vector(sw, "sample_weights", n, "item"),
        pos_weight=_pos_weight(options.pos_weight, task, k),
        label_smoothing=scalar(options.label_smoothing, "label_smoothing", low=0, high=1),
        ignore_index=ignore_index,
        focal_gamma=scalar(options.focal_gamma, "focal_gamma", low=0),
        focal_alpha=None if alpha is None else scalar(alpha, "focal_alpha", low=0, high=1),
        confidence=confidence,
        decision_threshold=scalar(options.decision_threshold, "decision_threshold", low=0, high=1),
        renormalize=bool(options.renormalize),
        sum_tolerance=sum_tolerance,
        clip_eps=scalar(
            options.clip_eps, "clip_eps", low=0, high=0.5, low_open=True, high_open=True
        ),
        class_names=class_names,
    )
