"""The small-batch fast path: the common call checked and scored in one compiled pass.

A score of a few items costs what its steps cost in Python, not its arithmetic: the general
path (``check_batch`` then ``score_batch``) makes dozens of numpy calls and builds a dozen
objects, ~90 microseconds whatever the batch size, where torch's ``cross_entropy`` of 32 items
takes ~10. This module takes the common case in a fixed handful of steps:

* it is recognised cheaply: multiclass predictions as a C-contiguous 2-D float32 / float64
  array of fewer than ``MAX_VALUES`` values, logits or probabilities, integer class-index
  labels as an array (or none), and every option at a value of ``ACCEPTED_OPTIONS`` (an
  allow-list: any other value, or an option this module does not know, takes the general path);
* its checks and its scoring are one C call (``xentcore/_fused_small.c``, ``small_logits``:
  finiteness and label range, the fused logits kernel, the flag masks and the loss sum;
  probabilities: ``small_probabilities`` then ``finish_rows``, with numpy's log between);
* the flag rules of the default ``flag`` are resolved once, and a result is built without its
  dataclass ``__init__``: it holds what its fields are made of, and each field is made on its
  first read (:func:`field_of`; ``score_batch``'s results make all but ``masks`` at once), with
  the values and types of the general path's.

Whatever the fast path does not take, or finds wrong (a NaN, a label out of range, a row whose
sum is near the tolerance's edge), goes to the general path, which raises the precise error: the
errors, and the results, are the general path's, bit for bit (tests/xentcore/test_fast_path.py).

Three entry points, each returning None when the general path must run:
:func:`score` (``xentcore.score``'s arguments), :func:`score_checked` (``score_batch``'s checked
batch) and :func:`check_batch`, the service's drop-in for ``xentcore.validate.check_batch``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from xentcore import _kernels
from xentcore.flags import FlagMasks
from xentcore.types import FlagRules, ScoreOptions
from xentcore.validate import Batch, Labels, check_flag_rules
from xentcore.validate import check_batch as general_check_batch

if TYPE_CHECKING:
    from xentcore.score import ScoreResult

__all__ = [
    "ACCEPTED_OPTIONS",
    "ENABLED",
    "MAX_VALUES",
    "check_batch",
    "score",
    "score_checked",
]

#: Batches of this many values or more take the general path: from here on the fixed cost is
#: small beside the arithmetic, and the fused kernel may split rows over threads (the fast path
#: runs in the calling thread; below this size ``threads`` splits nothing, so the results are
#: the same whatever ``threads`` says).
MAX_VALUES = _kernels.THREAD_MIN_ELEMENTS

#: Every ScoreOptions field, with the values the fast path takes (any other takes the general
#: path). "number" means an int or a float (not a bool, nor a numpy scalar: those go the general
#: way, which converts them) within the stated bounds.
ACCEPTED_OPTIONS: dict[str, str] = {
    "task": "None or 'multiclass' (2-D predictions)",
    "input_type": "'logits' or 'probabilities'",
    "class_weights": "None",
    "sample_weights": "None",
    "pos_weight": "None",
    "label_smoothing": "0",
    "ignore_index": "None",
    "focal_gamma": "0",
    "focal_alpha": "None",
    "confidence": "any method for logits; 'max_probability' or 'true_class' for probabilities",
    "decision_threshold": "a number in [0, 1] (unused by multiclass, checked)",
    "renormalize": "False",
    "sum_tolerance": "a number in [0, 1]",
    "clip_eps": "a number in (0, 0.5)",
    "class_names": "None",
}

#: Whether the fast path runs: off when ScoreOptions has a field ``ACCEPTED_OPTIONS`` does not
#: list (a new option: the general path takes every call until this module learns it, and
#: test_fast_path.py fails), and for tests that compare it with the general path.
ENABLED: bool = {f.name for f in fields(ScoreOptions)} == set(ACCEPTED_OPTIONS)

_F32, _F64, _I64 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)
_NAN = float("nan")
#: confidence method -> the kernels' code (xentcore/_fused.h)
_CODES = _kernels.CONFIDENCE_CODES
#: confidence methods of probability rows read off one entry (multiclass._gathered)
_GATHERED = frozenset({"max_probability", "true_class"})
#: the flag rules of ``flag=None``, resolved once, and the kernels' arguments for them
_DEFAULT_RULES = check_flag_rules(None)


#: The types of a number the fast path takes as an option (bool and numpy scalars: general)
_NUMBERS = (float, int)


def _number(value: Any, low: float, high: float) -> bool:
    """An int or float (not bool) in [low, high]; NaN is not."""
    v: float = value
    return type(v) in _NUMBERS and low <= v <= high


def _float_array(x: npt.NDArray[Any]) -> bool:
    """2-D, C-contiguous and aligned (the C loops read typed pointers), native float32 /
    float64, K >= 2, within MAX_VALUES."""
    if x.ndim != 2:
        return False
    flags = x.flags
    if not (flags.c_contiguous and flags.aligned):
        return False
    dtype = x.dtype
    if not (dtype is _F32 or dtype is _F64 or dtype == _F32 or dtype == _F64):
        return False
    n: int = x.shape[0]
    k: int = x.shape[1]
    return n >= 1 and k >= 2 and n * k < MAX_VALUES


def _int_labels(labels: Any, n: int) -> npt.NDArray[np.int64] | None:
    """Class-index labels as the general path reads them (a list through ``np.asarray``, then
    ``astype(int64, copy=False)``), or None when they are not N integers (then the general
    path decides, and words any error)."""
    if type(labels) is list:
        try:
            labels = np.asarray(labels)
        except Exception:  # ragged: the general path says where
            return None
    if type(labels) is not np.ndarray or labels.ndim != 1 or labels.shape[0] != n:
        return None
    dtype = labels.dtype
    if dtype is not _I64:
        if dtype.kind not in "iu":
            return None
        labels = labels.astype(np.int64, copy=False)
    flags = labels.flags
    if not (flags.c_contiguous and flags.aligned):
        return None
    out: npt.NDArray[np.int64] = labels
    return out


def _rule(value: Any) -> float | None:
    """A threshold of a flag rule as the kernel takes it (NaN: off), None if not a number."""
    if value is None:
        return _NAN
    return float(value) if type(value) in _NUMBERS else None


_DEFAULT_RULE_ARGS = (
    _rule(_DEFAULT_RULES.min_confidence),
    _rule(_DEFAULT_RULES.max_loss),
    1 if _DEFAULT_RULES.misclassified else 0,
)
assert _DEFAULT_RULES.max_loss is None and not _DEFAULT_RULES.misclassified  # no labels needed


def flag_masks(block: npt.NDArray[np.bool_], rules: FlagRules, labelled: bool) -> FlagMasks:
    """The FlagMasks of a ``finish_rows`` block (rows: correct, low confidence, high loss,
    misclassified, risk, flagged); a rule that is off is the one all-False row, as
    ``apply_rules`` shares its ``off`` array."""
    off = block[4]
    masks: FlagMasks = object.__new__(FlagMasks)  # every field set, as FlagMasks.__init__
    masks.__dict__.update(
        low_confidence=off if rules.min_confidence is None else block[1],
        high_loss=block[2] if labelled and rules.max_loss is not None else off,
        misclassified=block[3] if labelled and rules.misclassified else off,
        risk_policy=off,
        flagged=block[5],
    )
    return masks


#: ScoreResult, clip_warning and check_threads, bound on first use (xentcore.score imports
#: this module).
_late: (
    tuple[type[ScoreResult], Callable[[str, float, int], list[str]], Callable[[Any], int]] | None
) = None


def _score_names() -> tuple[
    type[ScoreResult], Callable[[str, float, int], list[str]], Callable[[Any], int]
]:
    global _late
    if _late is None:
        from xentcore.score import ScoreResult, check_threads, clip_warning

        _late = (ScoreResult, clip_warning, check_threads)
    return _late


#: ``os.environ``'s own store (CPython: encoded keys), to see in tens of nanoseconds that
#: XENT_THREADS is unset (``os.environ.get`` takes ~0.5 microseconds, a tenth of a 1-item
#: score); None where it is not there, and then ``check_threads`` reads the variable.
_ENVIRON: Any = getattr(os.environ, "_data", None)
_THREADS_KEY: Any = None
if _ENVIRON is not None and callable(getattr(os.environ, "encodekey", None)):
    _THREADS_KEY = os.environ.encodekey("XENT_THREADS")  # score.THREADS_VARIABLE
else:
    _ENVIRON = None


def _threads_ok(threads: Any) -> bool:
    """Whether ``check_threads(threads)`` passes (its error is the general path's to raise)."""
    try:
        (_late if _late is not None else _score_names())[2](threads)
    except Exception:
        return False
    return True


def _result(
    x: npt.NDArray[Any],
    input_type: str,
    method: str,
    labels: npt.NDArray[np.int64] | None,
    rules: FlagRules,
    tol: float,
    eps: float,
    *,
    lazy: bool,
) -> ScoreResult | None:
    """Check and score ``x`` (logits or probability rows, fast-path shaped) in C; the
    ScoreResult of the general path, or None when a check fails or the kernels are missing.

    ``lazy``: the result holds what its fields are made of (one ``_fast`` entry), and each
    field is made on its first read (:func:`field_of`): the twenty entries of a result's
    ``__dict__`` are a third of a 1-item score, of which a caller reading two fields needs two.
    Else (``score_batch``, whose caller reads most of them) every field is made now but
    ``masks``, which is always made on its first read (:func:`flag_masks`): five arrays and
    an object, which a caller reading the loss alone never needs.
    """
    rowops = _kernels._rowops
    if rowops is None or not hasattr(rowops, "small_logits"):  # built without the fused kernel
        return None
    if rules is _DEFAULT_RULES:
        min_confidence, max_loss, mis = _DEFAULT_RULE_ARGS
    else:
        min_confidence, max_loss = _rule(rules.min_confidence), _rule(rules.max_loss)
        if min_confidence is None or max_loss is None or rules.risk_thresholds is not None:
            return None
        if labels is None and (rules.max_loss is not None or rules.misclassified):
            return None  # the general path says which rule needs labels
        mis = 1 if rules.misclassified else 0
    code = _CODES[method]
    n = x.shape[0]
    predicted = np.empty(n, np.int64)
    values = np.empty((3, n))  # top, confidence (or p_y), loss (or p_y clipped)
    block = np.empty((6, n), np.bool_)  # correct, low, high, mis, risk, flagged
    n_clipped = 0
    if input_type == "logits":
        total = rowops.small_logits(
            x, labels, code, min_confidence, max_loss, mis, predicted, values, block
        )
        if total is None:
            return None
    else:
        clipped = rowops.small_probabilities(x, labels, tol, eps, predicted, values)
        if clipped is None:
            return None
        n_clipped = clipped
        if labels is not None:
            loss = values[2]
            np.log(loss, out=loss)  # numpy's log, as multiclass._gather_nll: the same bits
            np.negative(loss, out=loss)
        total = rowops.finish_rows(
            values, predicted, labels, code, min_confidence, max_loss, mis, block
        )
    r = object.__new__((_late if _late is not None else _score_names())[0])
    state: tuple[Any, ...] = (x.shape, input_type, method, labels, rules, eps, n_clipped)
    state += (total, predicted, values, block)  # the layout of _SHAPE ... _BLOCK below
    if lazy:
        r.__dict__["_fast"] = state
    else:
        r.__dict__.update(result_fields(state))
    return r


#: Where each part of a fast-path result is in its ``_fast`` state (see ``_result``).
_SHAPE, _INPUT, _METHOD, _LABELS, _RULES, _EPS, _CLIPPED, _TOTAL, _PRED, _VALUES, _BLOCK = range(11)


def result_fields(state: tuple[Any, ...]) -> dict[str, Any]:
    """Every field of a fast-path ScoreResult but ``masks`` (see :func:`field_of`), as
    ``score_batch`` sets them, and the ``_fast`` state, for ``masks``: what an eager result
    holds from the start."""
    n, k = state[_SHAPE]
    labels, values, block = state[_LABELS], state[_VALUES], state[_BLOCK]
    top = values[0]
    if labels is None:
        d = _UNLABELLED.copy()  # a dict's copy and a few stores beat a literal of 21 entries
        d["warnings"] = []
    else:
        d = _LABELLED.copy()
        d["item_loss"] = values[2]
        d["loss_sum"] = state[_TOTAL]
        d["loss_mean"] = state[_TOTAL] / n
        d["weight_sum"] = float(n)
        d["n_scored"] = n
        d["true_class"] = labels
        d["correct"] = block[0]
        d["n_clipped"] = state[_CLIPPED]
        d["warnings"] = _warnings(state)
    d["input_type"] = state[_INPUT]
    d["n_items"] = n
    d["n_classes"] = k
    d["confidence_method"] = state[_METHOD]
    d["confidence"] = top if _CODES[state[_METHOD]] == 0 else values[1]
    d["top_confidence"] = top
    d["predicted_index"] = state[_PRED]
    d["rules"] = state[_RULES]
    d["_fast"] = state
    return d


def _warnings(state: tuple[Any, ...]) -> list[str]:
    n_clipped = state[_CLIPPED]
    if not n_clipped:
        return []
    clip_warning = (_late if _late is not None else _score_names())[1]
    return clip_warning(state[_INPUT], state[_EPS], n_clipped)


def _labelled(make: Callable[[Any, tuple[Any, ...]], Any]) -> Callable[..., Any]:
    """A field that labels give, None without them."""
    return lambda r, s: None if s[_LABELS] is None else make(r, s)


#: How each field of a fast-path result is made from its ``_fast`` state (and the result
#: itself: ``confidence`` is ``top_confidence``, the same array, for max_probability).
_MAKERS: dict[str, Callable[[Any, tuple[Any, ...]], Any]] = {
    "task": lambda r, s: "multiclass",
    "input_type": lambda r, s: s[_INPUT],
    "n_items": lambda r, s: s[_SHAPE][0],
    "n_classes": lambda r, s: s[_SHAPE][1],
    "class_names": lambda r, s: None,
    "confidence_method": lambda r, s: s[_METHOD],
    "confidence": lambda r, s: r.top_confidence if _CODES[s[_METHOD]] == 0 else s[_VALUES][1],
    "top_confidence": lambda r, s: s[_VALUES][0],
    "predicted_index": lambda r, s: s[_PRED],
    "masks": lambda r, s: flag_masks(s[_BLOCK], s[_RULES], s[_LABELS] is not None),
    "rules": lambda r, s: s[_RULES],
    "item_loss": _labelled(lambda r, s: s[_VALUES][2]),
    "loss_sum": _labelled(lambda r, s: s[_TOTAL]),
    "loss_mean": _labelled(lambda r, s: s[_TOTAL] / s[_SHAPE][0]),
    "weight_sum": _labelled(lambda r, s: float(s[_SHAPE][0])),
    "n_scored": _labelled(lambda r, s: s[_SHAPE][0]),
    "true_class": lambda r, s: s[_LABELS],
    "correct": _labelled(lambda r, s: s[_BLOCK][0]),
    "scored": lambda r, s: None,
    "warnings": lambda r, s: _warnings(s),
    "n_clipped": lambda r, s: s[_CLIPPED],
}


def field_of(result: ScoreResult, name: str) -> Any:
    """The field ``name`` of a fast-path ``result``, made on its first read (``ScoreResult``'s
    field descriptors call this) and kept in the result's ``__dict__``, which answers every
    later read. Each field is made on its own: a caller reading the loss does not pay for the
    flag masks (five arrays and an object), nor for the other nineteen fields."""
    d = result.__dict__
    state = d.get("_fast")
    if state is None:
        raise AttributeError(f"'ScoreResult' object has no attribute {name!r}")
    value = d[name] = _MAKERS[name](result, state)
    return value


#: The fields of a fast-path result that do not depend on the batch.
_LABELLED: dict[str, Any] = {"task": "multiclass", "class_names": None, "scored": None}
_UNLABELLED: dict[str, Any] = {
    **_LABELLED,
    "item_loss": None,
    "loss_sum": None,
    "loss_mean": None,
    "weight_sum": None,
    "n_scored": None,
    "true_class": None,
    "correct": None,
    "n_clipped": 0,
}


def _method(input_type: Any, confidence: Any) -> bool:
    """Whether the fast path scores this input type with this confidence method (both str)."""
    if type(input_type) is not str or type(confidence) is not str:
        return False
    if input_type == "logits":
        return confidence in _CODES
    return input_type == "probabilities" and confidence in _GATHERED


def score(
    predictions: Any,
    labels: Any,
    task: Any,
    input_type: Any,
    label_smoothing: Any,
    focal_gamma: Any,
    confidence: Any,
    flag: Any,
    decision_threshold: Any,
    sum_tolerance: Any,
    clip_eps: Any,
    threads: Any,
    *,
    lazy: bool = True,
) -> ScoreResult | None:
    """``xentcore.score`` of a fast-path call, or None for the general path.

    ``lazy=False`` makes every field now but ``masks`` (as ``score_batch``'s results): for a
    caller that reads most of them (the service's answers).

    The caller (``xentcore.score``) has checked that ``predictions`` is an ndarray and that
    ``class_weights``, ``sample_weights``, ``pos_weight``, ``ignore_index``, ``focal_alpha`` and
    ``class_names`` are None and ``renormalize`` False; the other options are checked here
    against ``ACCEPTED_OPTIONS`` (inline: this is a tenth of a 1-item score). ``flag`` and
    ``threads`` are checked only once the batch is known to be valid (the general path checks
    them after the batch: its first error must stay the first), and any error they raise sends
    the call to the general path too.
    """
    if not (
        ENABLED
        and (task is None or (type(task) is str and task == "multiclass"))
        and _method(input_type, confidence)
        and type(label_smoothing) in _NUMBERS
        and label_smoothing == 0
        and type(focal_gamma) in _NUMBERS
        and focal_gamma == 0
        and type(decision_threshold) in _NUMBERS
        and 0 <= decision_threshold <= 1
        and type(sum_tolerance) in _NUMBERS
        and 0 <= sum_tolerance <= 1
        and type(clip_eps) in _NUMBERS
        and 0 < clip_eps < 0.5
        and _float_array(predictions)
    ):
        return None
    y = None
    if labels is not None:
        y = _int_labels(labels, predictions.shape[0])
        if y is None:
            return None
    elif confidence == "true_class":
        return None
    if flag is None:
        rules = _DEFAULT_RULES
    else:
        try:  # the general path raises its error, after the batch's
            rules = check_flag_rules(flag)
        except Exception:
            return None
    if not (threads is None and _ENVIRON is not None and _THREADS_KEY not in _ENVIRON):
        if not _threads_ok(threads):  # XENT_THREADS unset (the test above): 1 thread
            return None
    return _result(
        predictions, input_type, confidence, y, rules, sum_tolerance, clip_eps, lazy=lazy
    )


def _options_accepted(o: ScoreOptions) -> bool:
    """Whether every option of ``o`` (raw or checked) has a value ``ACCEPTED_OPTIONS`` lists."""
    return (
        ENABLED
        and (o.task is None or (type(o.task) is str and o.task == "multiclass"))
        and type(o.input_type) is str
        and _method(o.input_type, o.confidence)
        and o.class_weights is None
        and o.sample_weights is None
        and o.pos_weight is None
        and o.ignore_index is None
        and o.focal_alpha is None
        and o.class_names is None
        and o.renormalize is False
        and _number(o.label_smoothing, 0, 0)
        and _number(o.focal_gamma, 0, 0)
        and _number(o.decision_threshold, 0, 1)
        and _number(o.sum_tolerance, 0, 1)
        and _number(o.clip_eps, 0, 0.5)
        and 0 < o.clip_eps < 0.5
    )


def score_checked(b: Batch, rules: FlagRules) -> ScoreResult | None:
    """``score_batch(b, rules)`` of a fast-path batch, or None for the general path.

    ``b`` was checked by ``check_batch`` (this module's or the general one): multiclass rows
    with class-index labels of which none is ignored (or no labels), no warnings, and options
    as ``ACCEPTED_OPTIONS`` lists.
    """
    o = b.options
    if b.warnings or o.task != "multiclass":
        return None
    if _CHECKED_BY_ID.get(id(o)) is not o and not _options_accepted(o):  # ours: accepted
        return None
    lab, y = b.labels, None
    if lab is not None:
        if lab.kind != "sparse" or lab.scored is not None or lab.true_class is not lab.index:
            return None
        y = _int_labels(lab.index, b.n_items)
        if y is None or y is not lab.index:
            return None
    x = b.x
    if type(x) is not np.ndarray or not _float_array(x):
        return None
    # eager: the service reads most fields of every result
    return _result(x, o.input_type, o.confidence, y, rules, o.sum_tolerance, o.clip_eps, lazy=False)


#: Checked copies of the fast path's options, by their values (resolved once) and by their
#: ids (score_checked need not check them again; held, so no other object takes the id).
_CHECKED: dict[tuple[Any, ...], ScoreOptions] = {}
_CHECKED_BY_ID: dict[int, ScoreOptions] = {}
_CHECKED_MAX = 256


def _checked_options(o: ScoreOptions) -> ScoreOptions:
    """The checked copy ``check_options`` makes of accepted options (cached by value)."""
    key = (
        o.input_type,
        o.confidence,
        float(o.label_smoothing),
        float(o.focal_gamma),
        float(o.decision_threshold),
        float(o.sum_tolerance),
        float(o.clip_eps),
    )
    checked = _CHECKED.get(key)
    if checked is None:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED_BY_ID.clear()
            _CHECKED.clear()
        checked = ScoreOptions(
            task="multiclass",
            input_type=o.input_type,
            label_smoothing=key[2],
            focal_gamma=key[3],
            confidence=o.confidence,
            decision_threshold=key[4],
            renormalize=False,
            sum_tolerance=key[5],
            clip_eps=key[6],
        )
        _CHECKED[key] = checked
        _CHECKED_BY_ID[id(checked)] = checked
    return checked


def _fast_batch(predictions: Any, labels: Any, options: ScoreOptions) -> Batch | None:
    if not _options_accepted(options) or type(predictions) is not np.ndarray:
        return None
    x = predictions
    if not _float_array(x):
        return None
    n, k = x.shape
    y = None
    if labels is not None:
        y = _int_labels(labels, n)
        if y is None:
            return None
    elif options.confidence == "true_class":
        return None
    rowops = _kernels._rowops
    if rowops is None or not hasattr(rowops, "small_check"):
        return None
    tol = -1.0 if options.input_type == "logits" else float(options.sum_tolerance)
    if not rowops.small_check(x, y, tol):
        return None
    checked_labels = None if y is None else Labels("sparse", y, None, None, y)
    return Batch(x, checked_labels, _checked_options(options), n, k)


def check_batch(predictions: Any, labels: Any, options: ScoreOptions) -> Batch:
    """``xentcore.validate.check_batch``, the fast-path batches checked in one C pass.

    The same Batch (equal fields; the checked options of equal raw options are one shared,
    frozen object) and, for every other input, the general check itself, with its errors.
    """
    fast = _fast_batch(predictions, labels, options)
    return fast if fast is not None else general_check_batch(predictions, labels, options)
