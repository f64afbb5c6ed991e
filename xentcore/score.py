"""``score``: loss, confidence, predictions and flags of a batch, composed from the kernels."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from xentcore import _kernels, binary, fastpath, multiclass
from xentcore.errors import InputError
from xentcore.flags import FlagMasks, apply_rules, reason_lists
from xentcore.rowstats import RowStats
from xentcore.types import DEFAULT_EPS, F64, Bool, FlagRules, ScoreOptions
from xentcore.validate import Batch, Labels, check_batch, check_flag_rules
from xentcore.validate.arrays import check_finite

__all__ = [
    "NO_WEIGHT_WARNING",
    "THREADS_VARIABLE",
    "ScoreResult",
    "check_threads",
    "clip_warning",
    "score",
    "score_batch",
]


class _Once:
    """A property made on its first read and kept in the instance's ``__dict__`` (which then
    answers every read): ``functools.cached_property`` without its lock, which on Python 3.11
    costs more than these properties themselves on a small batch."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.name = make.__name__
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.make(instance)
        return value


@dataclass(frozen=True)
class ScoreResult:
    """What ``score`` returns. Arrays have one entry per item (N).

    ``item_loss`` is NaN where an item has no loss (ignored); ``confidence`` is NaN only for
    ``true_class`` on ignored items. ``loss_mean`` / ``loss_sum`` / ``accuracy`` are None without
    labels; ``loss_mean`` is also None when no scored item carries weight. ``predicted_index`` is
    the raw prediction (int64 class, or an (N, K) boolean matrix for multilabel); ``predicted``
    renders it as the contract does (class names when given; lists for multilabel).
    ``top_confidence`` is the top-label confidence used by calibration (None for multilabel).
    ``true_class`` is the single true class per item (-1 where ignored; multilabel: (N, K) bool).
    ``n_clipped`` counts the input values clipped on their way into a log (see ``warnings``).

    A result of the small-batch fast path (``xentcore.fastpath``) makes each field on its first
    read: the same values and types, a field read or not.
    """

    task: str
    input_type: str
    n_items: int
    n_classes: int
    class_names: tuple[str, ...] | None
    confidence_method: str
    confidence: F64
    top_confidence: F64 | None
    predicted_index: npt.NDArray[Any]
    masks: FlagMasks
    rules: FlagRules
    item_loss: F64 | None = None
    loss_sum: float | None = None
    loss_mean: float | None = None
    weight_sum: float | None = None
    n_scored: int | None = None
    true_class: npt.NDArray[Any] | None = None
    correct: Bool | None = None
    scored: Bool | None = None
    warnings: list[str] = field(default_factory=list)
    n_clipped: int = 0

    @property
    def flagged(self) -> Bool:
        """Whether each item is flagged by any rule."""
        return self.masks.flagged

    @_Once
    def flagged_indices(self) -> npt.NDArray[np.intp]:
        """Indices of the flagged items, ascending."""
        indices: npt.NDArray[np.intp] = self.masks.flagged.nonzero()[0]  # 1-D: flatnonzero
        return indices

    @_Once
    def reasons(self) -> list[list[str]]:
        """The reasons each item is flagged for (built on first access)."""
        return reason_lists(self.masks)

    @_Once
    def predicted(self) -> npt.NDArray[Any] | list[list[Any]]:
        """Predicted class per item: index or name; for multilabel a list per item."""
        pred = self.predicted_index
        if self.task == "multilabel":
            rows, cols = np.nonzero(pred)
            split = np.searchsorted(rows, np.arange(1, self.n_items))
            names = self.class_names
            return [
                [names[c] for c in part] if names else part.tolist()
                for part in np.split(cols, split)
            ]
        if self.class_names is not None:
            named: npt.NDArray[Any] = np.asarray(self.class_names, dtype=object)[pred]
            return named
        return pred

    @property
    def confidence_mean(self) -> float | None:
        """Plain mean of the confidences that exist (None if none do)."""
        c = self.confidence
        total = float(np.add.reduce(c))  # what mean() sums (pairwise); NaN if one is NaN
        if not math.isnan(total):
            return total / c.shape[0] if c.shape[0] else None
        ok = ~np.isnan(c)
        return float(c[ok].mean()) if ok.any() else None

    @property
    def n_correct(self) -> int | None:
        """Scored items whose prediction equals the true class."""
        if self.correct is None:
            return None
        ok = self.correct if self.scored is None else self.correct & self.scored
        return int(np.count_nonzero(ok))

    @property
    def accuracy(self) -> float | None:
        """Fraction of scored items predicted right (None without labels or scored items)."""
        n_correct = self.n_correct
        if n_correct is None or not self.n_scored:
            return None
        return n_correct / self.n_scored


class _FastField:
    """A ScoreResult field as the class sees it: its default (as the dataclass left it), and
    for a result of the small-batch fast path, which holds what its fields are made of until
    one is read, the field made then (:func:`xentcore.fastpath.field_of`).

    A non-data descriptor: a result built by ``__init__`` has every field in its ``__dict__``,
    which answers before the class does, so this runs only for a fast-path result's first read
    of a field (a descriptor call, where ``__getattr__`` would first raise an AttributeError).
    """

    __slots__ = ("default", "name")

    def __init__(self, name: str, default: Any) -> None:
        self.name = name
        self.default = default

    def __get__(self, obj: ScoreResult | None, owner: type | None = None) -> Any:
        if obj is None:  # the class's own attribute: the default, as before
            if self.default is MISSING:
                raise AttributeError(f"type object 'ScoreResult' has no attribute {self.name!r}")
            return self.default
        return fastpath.field_of(obj, self.name)


for _field in fields(ScoreResult):
    setattr(ScoreResult, _field.name, _FastField(_field.name, _field.default))


def _reduce(
    item_loss: F64, scored: Bool | None, sample_weights: F64 | None, denominators: F64 | None
) -> tuple[float, float | None, float]:
    """(sum, mean, weight sum) of the contract's section 2 over scored items.

    sum = sum_i s_i loss_i and weight = sum_i s_i v_i over scored items; with neither sample
    weights nor class weights these are a plain sum and a count (no N-sized temporaries).
    Weights so large that a sum overflows float64 (near 1e308) leave that sum infinite (the
    service shows it as null), and the mean is taken with the weights divided by the largest
    one: the same ratio, computed without overflow.
    """
    if scored is not None:
        item_loss = item_loss[scored]
        sample_weights = None if sample_weights is None else sample_weights[scored]
        denominators = None if denominators is None else denominators[scored]
    if sample_weights is None:
        total = float(item_loss.sum())
        weight = float(item_loss.size) if denominators is None else float(denominators.sum())
        return total, (total / weight if weight > 0 else None), weight
    with np.errstate(over="ignore", invalid="ignore"):
        total, weight = _weighted_sums(sample_weights, item_loss, denominators)
    if math.isfinite(total) and math.isfinite(weight):
        return total, (total / weight if weight > 0 else None), weight
    scale = float(np.max(sample_weights))
    small_total, small_weight = _weighted_sums(sample_weights / scale, item_loss, denominators)
    return total, (small_total / small_weight if small_weight > 0 else None), weight


def _weighted_sums(
    sample_weights: F64, item_loss: F64, denominators: F64 | None
) -> tuple[float, float]:
    total = float(np.dot(sample_weights, item_loss))
    weight = float(
        sample_weights.sum() if denominators is None else np.dot(sample_weights, denominators)
    )
    return total, weight


#: The warning of a batch whose scored items carry no weight (its mean loss is None).
NO_WEIGHT_WARNING = "no scored item carries weight: mean loss is null"


def clip_warning(input_type: str, clip_eps: float, n_clipped: int) -> list[str]:
    """The warning that ``n_clipped`` input values were clipped on their way into a log."""
    if not n_clipped:
        return []
    what = "log-probabilities" if input_type == "log_probabilities" else "probabilities"
    bounds = "[log(eps), log(1-eps)]" if input_type == "log_probabilities" else "[eps, 1-eps]"
    return [f"{n_clipped} {what} clipped to {bounds} (eps = {clip_eps:.6g})"]


def _row_stats(b: Batch, threads: int) -> RowStats:
    """The kernel sweep of the batch's task."""
    lab = b.labels
    if b.task == "multiclass":
        return multiclass.sweep(
            b.x,
            b.options,
            index=None if lab is None else lab.index,
            target=None if lab is None else lab.target,
            threads=threads,
        )
    return binary.sweep(
        b.x,
        b.options,
        target=None if lab is None else lab.target,
        truth=None if lab is None else lab.true_class,
        entries_scored=None if lab is None else lab.entries_scored,
    )


def _labelled(b: Batch, lab: Labels, st: RowStats, loss: F64) -> dict[str, Any]:
    """The ScoreResult fields only labels give: mask ignored items (NaN loss; NaN
    ``true_class`` confidence, in place), reduce the loss, judge each prediction."""
    o, scored = b.options, lab.scored
    if scored is not None:
        loss[~scored] = np.nan
        if o.confidence == "true_class":
            st.confidence[~scored] = np.nan
    denominators = None
    if lab.kind == "sparse" and o.class_weights is not None:
        assert lab.index is not None
        denominators = o.class_weights[lab.index]
    total, mean, weight = _reduce(loss, scored, o.sample_weights, denominators)
    correct = st.predicted == lab.true_class
    if b.task == "multilabel":
        if lab.entries_scored is not None:  # an ignored entry never makes an item wrong
            correct |= ~lab.entries_scored
        correct = correct.all(axis=1)
    return {
        "item_loss": loss,
        "loss_sum": total,
        "loss_mean": mean,
        "weight_sum": weight,
        "n_scored": b.n_items if scored is None else int(np.count_nonzero(scored)),
        "true_class": lab.true_class,
        "correct": correct,
        "scored": scored,
    }


def score_batch(b: Batch, rules: FlagRules, *, threads: int = 1) -> ScoreResult:
    """Score a checked batch (see :func:`score`) and flag its items by ``rules``.

    ``threads`` (a checked integer >= 1; see :func:`check_threads`) splits the rows of the
    fused logits kernel over that many threads; the default, 1, runs everything in the
    calling thread (the service's workers already use the cores).

    Raises :class:`InputError` when a rule needs labels (``max_loss``, ``misclassified``) and
    the batch has none.

    A small batch of the common kind (``xentcore.fastpath``: multiclass logits or probability
    rows, class-index labels, default loss options) is scored in one compiled pass, with the
    same results.
    """
    if b.n_items * b.n_classes < fastpath.MAX_VALUES:
        fast = fastpath.score_checked(b, rules)
        if fast is not None:
            return fast
    return _score_general(b, rules, threads)


def _score_general(b: Batch, rules: FlagRules, threads: int) -> ScoreResult:
    """:func:`score_batch` by the kernels of each task family, step by step."""
    lab = b.labels
    if lab is None and (rules.max_loss is not None or rules.misclassified):
        name = "max_loss" if rules.max_loss is not None else "misclassified"
        raise InputError(("flag", name), "this rule needs labels")
    st = _row_stats(b, threads)
    o = b.options
    fig = {} if lab is None or st.loss is None else _labelled(b, lab, st, st.loss)
    warnings = [*b.warnings, *clip_warning(b.input_type, o.clip_eps, st.n_clipped)]
    if fig and fig["loss_mean"] is None:
        warnings.append(NO_WEIGHT_WARNING)
    loss, correct, scored = fig.get("item_loss"), fig.get("correct"), fig.get("scored")
    return ScoreResult(
        b.task,
        b.input_type,
        b.n_items,
        b.n_classes,
        b.class_names,
        o.confidence,
        st.confidence,
        st.top_confidence,
        st.predicted,
        apply_rules(rules, st.confidence, loss, correct, scored, st.predicted),
        rules,
        warnings=warnings,
        n_clipped=st.n_clipped,
        **fig,
    )


#: The parameters of :func:`score` that are not ScoreOptions fields (and its one local before
#: it reads them: the fast path's result).
_NOT_OPTIONS = frozenset({"predictions", "labels", "flag", "threads", "fast"})

#: The environment variable giving :func:`score` its default ``threads``.
THREADS_VARIABLE = "XENT_THREADS"


def check_threads(threads: Any) -> int:
    """``threads`` as given to :func:`score` -> an integer >= 1.

    None reads ``XENT_THREADS`` from the environment (unset or empty: 1).
    """
    if threads is None:
        raw = os.environ.get(THREADS_VARIABLE, "").strip()
        if not raw:
            return 1
        value = int(raw) if raw.isdigit() else 0
        if value < 1:
            raise InputError(("threads",), f"{THREADS_VARIABLE}={raw!r}: expected an integer >= 1")
        return value
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise InputError(("threads",), f"threads: expected an integer >= 1, got {threads!r}")
    return int(threads)


def score(
    predictions: Any,
    labels: Any = None,
    *,
    task: str | None = None,
    input_type: str = "probabilities",
    class_weights: Any = None,
    sample_weights: Any = None,
    pos_weight: Any = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    focal_gamma: float = 0.0,
    focal_alpha: float | Sequence[float] | None = None,
    confidence: str = "max_probability",
    flag: Any = None,
    decision_threshold: float = 0.5,
    renormalize: bool = False,
    sum_tolerance: float = 1e-4,
    clip_eps: float | Literal["dtype"] = DEFAULT_EPS,
    class_names: Any = None,
    threads: int | None = None,
) -> ScoreResult:
    """Cross-entropy loss, confidence, prediction and flags for every item of a batch.

    Per-item loss (``item_loss``), by task:

    * binary: ``-[pos_weight y' log p + (1 - y') log(1 - p)]`` with ``y' = y(1 - e) + e/2``;
    * multiclass, class-index labels (torch's ``cross_entropy`` with ``reduction="none"``):
      ``(1 - e) w_y (-log p_y) + (e / K) sum_k w_k (-log p_k)``;
    * multiclass, target distributions q: ``-sum_k w_k q'_k log p_k`` with ``q' = (1 - e) q + e/K``;
    * multilabel: the mean over classes of the binary loss of each entry;
    * focal (``focal_gamma`` > 0): binary terms times ``(1 - p_t)^gamma`` (and ``alpha_t``),
      multiclass terms times ``(1 - p_k)^gamma`` (and ``alpha``), Lin et al. 2017.

    Reduction: ``loss_sum = sum_i s_i loss_i`` and ``loss_mean = loss_sum / sum_i s_i v_i`` over
    scored items, with s the sample weights and v_i = w_{y_i} for class-index labels with class
    weights (torch's ``reduction="mean"``), else 1 (scikit-learn's ``log_loss``).

    Probabilities are clipped to [clip_eps, 1 - clip_eps] before logs (a warning says how many);
    logits are never clipped. Invalid input raises :class:`InputError` naming field and index.

    ``threads``: multiclass logits with class-index (or no) labels and no focal term are scored
    by rows split over this many threads (default: the ``XENT_THREADS`` environment variable,
    else 1). The results do not depend on it.

    Small batches of the common kind (a float32 / float64 array of logits or probability rows,
    an integer array of class indices, the default loss options) are checked and scored in one
    compiled pass, and the result's fields made on their first read (``xentcore.fastpath``):
    the same results and errors, at a fixed cost of a few microseconds.

    >>> import xentcore as xc
    >>> r = xc.score([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], [0, 2])
    >>> round(r.loss_mean, 6), r.predicted.tolist(), r.accuracy
    (1.32963, [0, 1], 0.5)
    >>> r.flagged.tolist(), r.reasons
    ([False, False], [[], []])
    """
    if (  # the small-batch fast path (xentcore/fastpath.py) takes these options at None only
        type(predictions) is np.ndarray
        and class_weights is None
        and sample_weights is None
        and pos_weight is None
        and ignore_index is None
        and focal_alpha is None
        and class_names is None
        and renormalize is False
    ):
        fast = fastpath.score(
            predictions,
            labels,
            task,
            input_type,
            label_smoothing,
            focal_gamma,
            confidence,
            flag,
            decision_threshold,
            sum_tolerance,
            clip_eps,
            threads,
        )
        if fast is not None:
            return fast
    # Every keyword parameter but ``flag`` is a ScoreOptions field of the same name (a test
    # holds them equal): the raw options are the parameters, and check_batch checks them all.
    raw = {name: value for name, value in locals().items() if name not in _NOT_OPTIONS}
    scan = not _wide_logits(predictions, input_type)
    b = check_batch(predictions, labels, ScoreOptions(**raw), finite_logits=scan)
    # what fastpath.score declined runs the general kernels, as it always did, not
    # score_batch's fast path (which would take lists or float16 once checked): a caller
    # that passes lists has its call go the documented way (test_fused.py spies on it)
    if scan:
        return _score_general(b, check_flag_rules(flag), check_threads(threads))
    return _score_unscanned(b, flag, threads)


def _wide_logits(predictions: Any, input_type: Any) -> bool:
    """Whether ``score`` may leave the NaN / infinity scan of the predictions to the fused
    kernel: a C-contiguous native float array of logits rows wider than the kernel's narrow
    rows, on which the kernel runs (:func:`_score_unscanned` makes sure it does)."""
    return (
        type(predictions) is np.ndarray
        and input_type == "logits"
        and predictions.ndim == 2
        and predictions.shape[1] > _kernels.NARROW_K
        and predictions.dtype in (np.float32, np.float64)
        and _kernels.fused_ok(predictions)
    )


def _score_unscanned(b: Batch, flag: Any, threads: Any) -> ScoreResult:
    """``_score_general`` of a batch whose logits were not scanned for NaN and infinities.

    The fused kernel finds them on its way (a row holding one comes out with a NaN top
    probability): the exact scan then runs to raise its error, naming the first such value.
    Every other error is preceded by the scan, as ``check_batch`` orders them, and a batch the
    kernel would not score (target distributions, a focal term) is scanned first.
    """
    o = b.options
    kernel = b.task == "multiclass" and (b.labels is None or b.labels.kind == "sparse")
    if not (kernel and o.focal_gamma == 0 and o.focal_alpha is None):
        check_finite(b.x, "predictions")
        return _score_general(b, check_flag_rules(flag), check_threads(threads))
    try:
        result = _score_general(b, check_flag_rules(flag), check_threads(threads))
    except InputError:
        check_finite(b.x, "predictions")
        raise
    top = result.top_confidence
    if top is not None and math.isnan(float(np.add.reduce(top))):
        check_finite(b.x, "predictions")
    return result
