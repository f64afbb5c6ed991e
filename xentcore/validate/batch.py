"""``check_batch``: predictions, labels and a raw :class:`ScoreOptions` -> a trusted Batch.

The rules are checked in a fixed order, so the first error a caller sees does not depend on
how the call was made: input type, sum tolerance, predictions (shape, task, values), class
names, ignore_index, labels, then the loss and confidence options.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

from xentcore.errors import InputError
from xentcore.types import FloatArray, InputType, ScoreOptions, Task
from xentcore.validate.arrays import as_array, as_float, check_finite
from xentcore.validate.labels import Labels, check_class_names, check_labels
from xentcore.validate.options import check_ignore_index, check_input_type, check_options, scalar
from xentcore.validate.predictions import check_predictions, resolve_task

__all__ = ["Batch", "check_batch", "check_ids"]


@dataclass(frozen=True)
class Batch:
    """A checked batch: what the kernels trust.

    ``x`` holds the predictions, C-contiguous float32 or float64, shape (N,) for binary, else
    (N, K); ``labels`` is None for an unlabelled batch; ``options`` is the checked copy of the
    caller's options (``task`` resolved, weights as float64 arrays, scalars as floats, class
    names as a tuple). ``n_classes`` is 2 for binary.
    """

    x: FloatArray
    labels: Labels | None
    options: ScoreOptions
    n_items: int
    n_classes: int
    warnings: tuple[str, ...] = ()

    @property
    def task(self) -> Task:
        """The resolved task."""
        task = self.options.task
        assert task is not None  # resolved by check_batch
        return task

    @property
    def input_type(self) -> InputType:
        """What the values of ``x`` are."""
        return self.options.input_type

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The checked class names (2 for binary), or None."""
        names: tuple[str, ...] | None = self.options.class_names
        return names


def check_batch(
    predictions: Any, labels: Any, options: ScoreOptions, *, finite_logits: bool = True
) -> Batch:
    """Check everything a scoring call receives; return the trusted :class:`Batch`.

    ``options`` is taken as the caller gave it (raw values); ``Batch.options`` is its checked
    copy. The task, when not given, is ``binary`` for 1-D and ``multiclass`` for 2-D predictions.
    Raises :class:`InputError` on the first rule broken (see the module docstring for the order).

    ``finite_logits=False`` leaves out the scan of logits for NaN and infinities (a pass over
    the whole array) for a caller whose kernel finds them on its way (``xentcore.score``); any
    later error is still preceded by that scan's, as the order above says. The Batch is then
    trusted only by that caller.
    """
    input_type = check_input_type(options.input_type)
    tol = scalar(options.sum_tolerance, "sum_tolerance", low=0, high=1)
    raw = as_array(predictions, "predictions")
    task = resolve_task(raw, options.task)
    x = check_predictions(
        as_float(raw, "predictions"),
        task,
        input_type,
        tol=tol,
        renormalize=bool(options.renormalize),
        task_given=options.task is not None,
        finite=finite_logits or input_type != "logits",
    )
    try:
        return _check_rest(x, raw.dtype, task, input_type, tol, labels, options)
    except InputError:
        if not finite_logits:
            check_finite(x, "predictions")  # its error comes first
        raise


def _check_rest(
    x: FloatArray,
    dtype: Any,
    task: Task,
    input_type: InputType,
    tol: float,
    labels: Any,
    options: ScoreOptions,
) -> Batch:
    """What :func:`check_batch` checks after the predictions."""
    n = x.shape[0]
    k = 2 if task == "binary" else x.shape[1]
    names = check_class_names(options.class_names, task, k)
    ignore_index = check_ignore_index(options.ignore_index)
    checked_labels = (
        None
        if labels is None
        else check_labels(labels, task, (n, k), ignore_index=ignore_index, names=names, tol=tol)
    )
    checked = check_options(
        options,
        task,
        (n, k),
        input_type=input_type,
        sum_tolerance=tol,
        ignore_index=ignore_index,
        class_names=names,
        dtype=dtype,
    )
    if checked.confidence == "true_class" and checked_labels is None:
        raise InputError(("confidence",), "'true_class' needs labels")
    return Batch(x, checked_labels, checked, n, k)


def check_ids(ids: Sized | None, n_items: int) -> None:
    """Item ids, when given, are one per prediction (they are echoed back and recorded)."""
    if ids is not None and len(ids) != n_items:
        raise InputError(("ids",), f"expected {n_items} ids (one per prediction), got {len(ids)}")
