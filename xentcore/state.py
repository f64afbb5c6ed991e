"""``Summary``: the exact, mergeable state of a scored set (API.md section 11).

A :class:`Summary` holds what the monitoring store keeps per batch (every field of
:class:`xentcore.summary.BatchSummary`), plus the task and the number of classes, with every
count a Python ``int`` (exact) and every float sum a :class:`DoubleDouble`: an unevaluated pair
``hi + lo`` of float64 (``hi = fl(hi + lo)``, about 106 significant bits). Summaries of shards,
windows or workers add up with ``+`` in any order and grouping:

    loss_sum = sum_i s_i loss_i         weight_sum = sum_i s_i v_i   (section 2's reduction)
    confidence_sum = sum_i c_i over items with a confidence     (confidence_count of them)
    bin_count_b, bin_confidence_sum_b, bin_correct_sum_b: the 15 uniform reliability bins
    flagged, low_confidence, ..., n_classified, correct: counts

and :meth:`Summary.figures` recomputes section 5's figures from the merged sums
(``loss_mean = loss_sum / weight_sum``, ``ece = sum_b |correct_b - confidence_b| / sum_b count_b``,
...). Sequences (LLM outputs): ``loss_sum = sum_i fl(n_i nll_i)`` over sequences of ``n_i``
tokens, ``weight_sum = sum_i n_i`` (token-weighted NLL), no true class and no bins.

Error bounds (u = 2**-53, the unit roundoff of float64)
---------------------------------------------------------
* One merge ``a + b`` adds each pair with Joldes, Muller and Popescu's AccurateDWPlusDW
  (ACM TOMS 44(2), 2017, Algorithm 6: Knuth/Moller TwoSum, then two Fast2Sum renormalisations):
  relative error at most ``3u**2 / (1 - 4u)`` (about 3.7e-32) of the merged value, cancellation
  included. ``a + b`` is bitwise commutative (TwoSum's error term is exact whatever the order);
  merging m parts in any grouping gives the exact sum of their states within
  ``3 m u**2 sum_i |x_i|`` (x_i: the items' values), so any two groupings agree within 1e-12
  relative whenever ``sum |x_i| / |sum x_i| < 1e-12 / (6 m u**2)`` (about 1.3e19 / m): always
  for the sums a Summary holds (losses, weights, confidences, counts: all >= 0, ratio 1).
* One batch (:meth:`Summary.from_result`): each sum of n per-item values is reduced by
  :meth:`DoubleDouble.sum_of`: n <= 2048 values by ``math.fsum`` twice (``hi = RN(sum)``,
  ``lo = RN(sum - hi)``: within ``u**2 |sum|``); more by the error-free TwoSum recurrence of
  Ogita, Rump and Oishi's Sum2, its error terms kept, finished by ``math.fsum`` of the chains'
  sums and errors. Compiled (``xentcore/_sums.c``, 8 chains; the 15 bins' counts and sums in
  one pass, a chain per bin): within ``gamma_m**2 sum_i |x_i|``, ``gamma_m = m u / (1 - m u)``,
  m the values in the longest chain (< 2e-16 sum |x_i| for n <= 1e9 over 8 chains; a bin of
  m <= 1e7 values: < 2e-18). Without the extension, numpy over L <= 4096 lanes: within
  ``(m + 24)**2 u**2 sum_i |x_i|`` with m = n // L rows per lane.
* :meth:`Summary.figures` divides the rounded sums (``hi``): each ratio within 2u of the ratio
  of the exact sums. The ECE's per-bin gaps ``|correct_b - confidence_b|`` are taken in
  double-double before rounding, so a well-calibrated bin loses nothing to cancellation (the
  store's float bin sums can put :func:`xentcore.summary.figures`' ECE 1e-11 relative off
  there; elsewhere the two agree within 1e-12).

Edge cases: an empty ``Summary()`` (task None) is the identity of ``+`` and ``0 + s`` is ``s``,
so ``sum(parts)`` and ``sum(parts, Summary())`` both work. A task or a number of classes of
None means "not known" (a summary read back from the store's BatchSummary): it merges with any;
two different known values raise ValueError. A sum that overflows float64 is ``inf`` with
``lo = 0`` (``to_dict`` writes non-finite values as the strings "inf", "-inf", "nan").

>>> import json
>>> import xentcore as xc
>>> a = xc.Summary.from_result(xc.score([0.9, 0.2], [1, 0]))
>>> b = xc.Summary.from_result(xc.score([0.6, 0.4], [0, 1]))
>>> total = a + b
>>> total.task, total.n_items, total.figures()["accuracy"]
('binary', 4, 0.5)
>>> whole = xc.score([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1])
>>> abs(total.figures()["loss_mean"] - whole.loss_mean) < 1e-15
True
>>> xc.Summary.from_dict(json.loads(json.dumps(total.to_dict()))) == total
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcore._kernels import _rowops
from xentcore.calibration import uniform_bin_index
from xentcore.score import ScoreResult
from xentcore.sequences import SequenceResult
from xentcore.summary import (
    BIN_FIELDS,
    COUNT_FIELDS,
    N_BINS,
    SUM_FIELDS,
    BatchSummary,
    figures,
    reliability,
)
from xentcore.types import F64, TASKS, Bool

__all__ = ["FORMAT", "SUMMARY_TASKS", "DoubleDouble", "Summary"]

#: The version of :meth:`Summary.to_dict`'s layout; :meth:`Summary.from_dict` reads only it.
FORMAT = 1
#: The tasks a Summary can carry: the three of ``score`` and the sequences of token log-probs.
SUMMARY_TASKS: tuple[str, ...] = (*TASKS, "sequences")

#: The float sums of a Summary (each a DoubleDouble), and its counts (each an int): the
#: scalar fields of the store's BatchSummary.
_SUM_FIELDS = SUM_FIELDS
_COUNT_FIELDS = COUNT_FIELDS
#: Up to this many values are summed by math.fsum (fastest there); more by the lane recurrence.
_FSUM_MAX = 2048
_MAX_LANES = 4096
#: Whether the compiled TwoSum chains (xentcore/_sums.c) are built.
_NATIVE_SUMS = _rowops is not None and hasattr(_rowops, "uniform_bins")
#: The strings to_dict writes for non-finite floats (JSON has no number for them).
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
Figure = float | int | None | list[dict[str, float | int | None]]


def _two_sum(a: float, b: float) -> tuple[float, float]:
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth/Moller, any order of a, b)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _fast_two_sum(a: float, b: float) -> tuple[float, float]:
    """(s, e) with s = fl(a + b), s + e = a + b exactly, when |a| >= |b| or a = 0 (Dekker)."""
    s = a + b
    return s, b - (s - a)


@dataclass(frozen=True, slots=True)
class DoubleDouble:
    """A float64 sum kept as the unevaluated pair ``hi + lo``, normalised: ``hi = fl(hi + lo)``.

    ``float(x)`` is ``hi``, the sum rounded to float64. ``x + y`` and ``x - y`` are
    AccurateDWPlusDW (Joldes, Muller and Popescu 2017): relative error <= 3u^2 / (1 - 4u)
    (u = 2**-53) of the result, cancellation included; a non-finite ``hi`` carries ``lo = 0``.

    >>> x = DoubleDouble.sum_of([1e300, 1.0, -1e300])
    >>> x, 1e300 + 1.0 - 1e300
    (DoubleDouble(hi=1.0, lo=0.0), 0.0)
    """

    hi: float = 0.0
    lo: float = 0.0

    def __float__(self) -> float:
        return self.hi

    def __neg__(self) -> DoubleDouble:
        return DoubleDouble(-self.hi, -self.lo)

    def __add__(self, other: DoubleDouble) -> DoubleDouble:
        sh, sl = _two_sum(self.hi, other.hi)
        if not math.isfinite(sh):  # beyond float64: inf (or nan from inf - inf), no residual
            return DoubleDouble(sh, 0.0)
        th, tl = _two_sum(self.lo, other.lo)
        vh, vl = _fast_two_sum(sh, sl + th)
        return DoubleDouble(*_fast_two_sum(vh, tl + vl))

    def __sub__(self, other: DoubleDouble) -> DoubleDouble:
        return self + -other

    @classmethod
    def of_int(cls, n: int) -> DoubleDouble:
        """The integer n exactly (|n| < 2**106): hi = float(n), lo = n - hi."""
        hi = float(n)
        return cls(hi, float(n - int(hi)))

    @classmethod
    def sum_of(cls, values: npt.ArrayLike) -> DoubleDouble:
        """The sum of the values (any shape, as float64) as a normalised double-double.

        n <= 2048 values: ``hi = fsum(x)``, ``lo = fsum(x + [-hi])``, within u^2 |sum|.
        More, compiled: 8 TwoSum chains (``xentcore/_sums.c``), their sums and errors added by
        ``math.fsum``: within ``gamma_m^2 sum |x_i|`` (m = ceil(n / 8)). Without the extension:
        an error-free TwoSum recurrence down each of L lanes (L a power of two in [256, 4096],
        m = n // L rows), its error terms accumulated per lane, finished by ``math.fsum`` of
        the lane sums, error sums and the n - mL left over: within ``(m + 24)^2 u^2 sum |x_i|``
        (the 24: numpy's pairwise sum of the <= 4096 lane error sums). An overflowing sum gives
        the plain float64 sum (``inf`` or ``nan``), lo = 0.
        """
        x = np.ascontiguousarray(values, dtype=np.float64).ravel()
        if x.size <= _FSUM_MAX:
            return _fsum_pair(x.tolist(), x)
        out = _chain_sum(x) if _NATIVE_SUMS else _lane_sum(x)
        if math.isfinite(out.hi) and math.isfinite(out.lo):
            return out
        with np.errstate(over="ignore", invalid="ignore"):  # the sum is beyond float64
            return cls(float(np.sum(x)), 0.0)


_ZERO = DoubleDouble()
_ZERO_BINS = (_ZERO,) * N_BINS


def _fsum_pair(values: list[float], x: F64) -> DoubleDouble:
    """hi = RN(sum), lo = RN(sum - hi) by math.fsum (correctly rounded), then normalised."""
    try:
        hi = math.fsum(values)
        if not math.isfinite(hi):
            return DoubleDouble(hi, 0.0)
        values.append(-hi)
        return DoubleDouble(*_fast_two_sum(hi, math.fsum(values)))
    except (OverflowError, ValueError):  # a partial sum beyond float64, or inf - inf
        with np.errstate(over="ignore", invalid="ignore"):
            return DoubleDouble(float(np.sum(x)), 0.0)


def _chain_sum(x: F64) -> DoubleDouble:
    """The double-double sum of ``x`` from the compiled TwoSum chains (``xentcore/_sums.c``),
    their sums and errors added by ``math.fsum`` (an overflowing sum: see ``sum_of``)."""
    assert _rowops is not None
    parts = np.empty(2 * _rowops.SUM_LANES)
    _rowops.chain_sums(x, parts)
    return _fsum_pair(parts.tolist(), x)


def _native_bins(conf: F64, correct: Bool) -> dict[str, Any]:
    """``_bins`` in one compiled pass (``xentcore/_sums.c``): counts, correct counts and a
    TwoSum chain of the confidences per bin (confidences are in [0, 1]: no overflow)."""
    assert _rowops is not None
    sums = np.empty((N_BINS, 2 * _rowops.SUM_LANES))
    count = np.empty(N_BINS, np.int64)
    right = np.empty(N_BINS, np.int64)
    _rowops.uniform_bins(
        np.ascontiguousarray(conf, dtype=np.float64),
        np.ascontiguousarray(correct, dtype=np.bool_),
        sums,
        count,
        right,
    )
    return {
        "bin_count": tuple(DoubleDouble.of_int(c) for c in count.tolist()),
        "bin_confidence_sum": tuple(_fsum_pair(row, conf) for row in sums.tolist()),
        "bin_correct_sum": tuple(DoubleDouble.of_int(c) for c in right.tolist()),
    }


def _lane_sum(x: F64) -> DoubleDouble:
    """Sum2 (Ogita, Rump and Oishi 2005) down L lanes at once: x as m rows of L, then fsum."""
    n = x.size
    lanes = min(_MAX_LANES, max(256, 1 << ((n // 64).bit_length() - 1)))
    m = n // lanes
    rows = x[: m * lanes].reshape(m, lanes)
    s = rows[0].copy()
    err = np.zeros(lanes)
    t, v, w = np.empty(lanes), np.empty(lanes), np.empty(lanes)
    # An overflowing sum turns to inf / nan here; sum_of checks the result and falls back.
    with np.errstate(over="ignore", invalid="ignore"):
        for row in rows[1:]:
            np.add(s, row, out=t)  # t = fl(s + row), then TwoSum's exact error, in place:
            np.subtract(t, s, out=v)  # v: the part of row that t took
            np.subtract(t, v, out=w)
            np.subtract(s, w, out=w)  # w = s - (t - v): what s lost
            np.subtract(row, v, out=v)  # v = row - v: what row lost
            err += w
            err += v
            s, t = t, s
        parts = [float(err.sum())]
        while s.size > 1:  # halve the L lane sums (a power of two) with TwoSum, errors kept
            h = s.size // 2
            a, b = s[:h], s[h:]
            t2 = a + b
            v2 = t2 - a
            parts.append(float(((a - (t2 - v2)) + (b - v2)).sum()))
            s = t2
    parts.append(float(s[0]))
    parts.extend(x[m * lanes :].tolist())
    return _fsum_pair(parts, x)


def _join(what: str, a: Any, b: Any) -> Any:
    """The known one of a and b (None: not known); two different known values are an error."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    raise ValueError(f"cannot merge summaries of different {what}: {a!r} and {b!r}")


def _check_task(task: Any) -> None:
    if task is not None and task not in SUMMARY_TASKS:
        raise ValueError(f"task: expected None or one of {list(SUMMARY_TASKS)}, got {task!r}")


def _check_n_classes(n_classes: Any) -> None:
    ok = n_classes is None or (
        isinstance(n_classes, int) and not isinstance(n_classes, bool) and n_classes >= 1
    )
    if not ok:
        raise ValueError(f"n_classes: expected None or an integer >= 1, got {n_classes!r}")


@dataclass(frozen=True, slots=True)
class Summary:
    """The exact, mergeable state of a scored set: ``s1 + s2``, ``figures()``, ``to_dict()``.

    Fields: ``task`` (None, "binary", "multiclass", "multilabel" or "sequences"; None only for
    the empty identity or a state whose task is not known), ``n_classes`` (None for sequences
    or when not known), every count of :class:`~xentcore.summary.BatchSummary` as an int, its
    float sums as :class:`DoubleDouble`, and its 15 calibration bins (``bin_count``,
    ``bin_confidence_sum``, ``bin_correct_sum``) as tuples of 15 DoubleDouble. See the module
    docstring for the formulas and error bounds.

    Build one with :meth:`from_result`, :meth:`from_dict` or :meth:`from_batch_summary`; merge
    with ``+`` (bitwise commutative, associative within 3 m u^2 sum |x_i|); ``Summary()`` is
    the identity.
    """

    task: str | None = None
    n_classes: int | None = None
    n_items: int = 0
    n_scored: int = 0
    loss_sum: DoubleDouble = _ZERO
    weight_sum: DoubleDouble = _ZERO
    confidence_sum: DoubleDouble = _ZERO
    confidence_count: int = 0
    flagged: int = 0
    low_confidence: int = 0
    high_loss: int = 0
    misclassified: int = 0
    low_token_probability: int = 0
    risk_policy: int = 0
    n_classified: int = 0
    correct: int = 0
    bin_count: tuple[DoubleDouble, ...] = _ZERO_BINS
    bin_confidence_sum: tuple[DoubleDouble, ...] = _ZERO_BINS
    bin_correct_sum: tuple[DoubleDouble, ...] = _ZERO_BINS

    def __post_init__(self) -> None:
        _check_task(self.task)
        _check_n_classes(self.n_classes)
        for name in BIN_FIELDS:
            if len(getattr(self, name)) != N_BINS:
                got = len(getattr(self, name))
                raise ValueError(f"{name}: expected {N_BINS} bins, got {got}")

    def __repr__(self) -> str:
        return (
            f"Summary(task={self.task!r}, n_classes={self.n_classes!r}, "
            f"n_items={self.n_items}, n_scored={self.n_scored}, "
            f"loss_sum={self.loss_sum.hi!r}, weight_sum={self.weight_sum.hi!r}, "
            f"flagged={self.flagged})"
        )

    def __add__(self, other: object) -> Summary:
        """The summary of both sets. ``0`` stands for the empty summary (so ``sum`` works)."""
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        if not isinstance(other, Summary):
            return NotImplemented
        task = _join("tasks", self.task, other.task)
        n_classes = _join("numbers of classes", self.n_classes, other.n_classes)
        merged: dict[str, Any] = {
            k: getattr(self, k) + getattr(other, k) for k in (*_COUNT_FIELDS, *_SUM_FIELDS)
        }
        for k in BIN_FIELDS:
            pairs = zip(getattr(self, k), getattr(other, k), strict=True)
            merged[k] = tuple(a + b for a, b in pairs)
        return Summary(task, n_classes, **merged)

    __radd__ = __add__

    # -- from a scored batch ------------------------------------------------------------------

    @classmethod
    def from_result(cls, result: ScoreResult | SequenceResult) -> Summary:
        """The summary of one scored batch, its sums taken from the per-item arrays.

        ``confidence_sum`` and the bins' confidence sums are :meth:`DoubleDouble.sum_of` of the
        items' confidences (the bins over scored items' top-label confidence, as
        :func:`xentcore.summary.summarize`); counts are exact. ``loss_sum`` is ``sum_of`` the
        scored items' ``item_loss`` and ``weight_sum`` their count when the result is
        unweighted (its ``weight_sum`` is that count and its ``loss_sum`` their plain sum);
        with sample weights, or class weights on class-index labels, a ScoreResult does not
        carry the weights, so its own ``loss_sum`` / ``weight_sum`` (float64 dot products,
        within n u of the exact sums for these non-negative terms) are taken as they are.
        Sequences: ``loss_sum = sum_of(nll_i * n_i)``, ``weight_sum`` the exact token count.
        """
        if isinstance(result, ScoreResult):
            return _from_score(result)
        if isinstance(result, SequenceResult):
            return _from_sequences(result)
        raise TypeError(
            f"Summary.from_result: expected a ScoreResult or a SequenceResult, "
            f"got {type(result).__name__}"
        )

    # -- the figures --------------------------------------------------------------------------

    def figures(self) -> dict[str, Figure]:
        """Section 5's figures, as :func:`xentcore.summary.figures`, plus ``reliability``.

        n_items, n_scored, loss_mean (loss_sum / weight_sum; None without scored items or
        weight), confidence_mean, flag_rate, accuracy (correct / n_classified), ece (None
        without binned items), the counts flagged, low_confidence, high_loss, misclassified,
        low_token_probability, risk_policy, and ``reliability``: the 15 bins as
        :func:`xentcore.summary.reliability` gives them.
        """
        rounded = self.to_batch_summary()
        out: dict[str, Figure] = dict(figures(rounded))
        out["ece"] = self._ece()
        out["reliability"] = reliability(rounded)
        return out

    def _ece(self) -> float | None:
        """sum_b |correct_b - confidence_b| / sum_b count_b, each gap in double-double."""
        total = sum(self.bin_count, _ZERO).hi
        if not total > 0:
            return None
        pairs = zip(self.bin_correct_sum, self.bin_confidence_sum, strict=True)
        return math.fsum(abs((c - k).hi) for c, k in pairs) / total

    # -- interop with the store's BatchSummary -----------------------------------------------

    def to_batch_summary(self) -> BatchSummary:
        """The store's :class:`~xentcore.summary.BatchSummary`: every sum rounded to float64
        (``hi``); the task and number of classes are not part of it."""
        values: dict[str, Any] = {k: getattr(self, k) for k in _COUNT_FIELDS}
        values.update({k: getattr(self, k).hi for k in _SUM_FIELDS})
        values.update({k: [d.hi for d in getattr(self, k)] for k in BIN_FIELDS})
        return BatchSummary(**values)

    @classmethod
    def from_batch_summary(
        cls, summary: BatchSummary, *, task: str | None = None, n_classes: int | None = None
    ) -> Summary:
        """A Summary of a store's BatchSummary (its sums as given, lo = 0); ``task`` and
        ``n_classes`` as known (None: not known, merges with any)."""
        values: dict[str, Any] = {}
        for k in _COUNT_FIELDS:
            value = getattr(summary, k)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"BatchSummary.{k}: expected an integer, got {value!r}")
            values[k] = int(value)
        values.update({k: DoubleDouble(float(getattr(summary, k)), 0.0) for k in _SUM_FIELDS})
        for k in BIN_FIELDS:
            values[k] = tuple(DoubleDouble(float(v), 0.0) for v in getattr(summary, k))
        return cls(task, n_classes, **values)

    # -- JSON-safe state -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-safe values (``json.dumps(d, allow_nan=False)`` works).

        ``{"format": 1, "task", "n_classes", <every count: int>, <every sum: [hi, lo]>,
        <every bin field: 15 [hi, lo] pairs>}``; floats are JSON numbers (the strings "inf",
        "-inf", "nan" for an overflowed sum), so a round trip through JSON is bit-exact.
        """
        out: dict[str, Any] = {"format": FORMAT, "task": self.task, "n_classes": self.n_classes}
        for k in _FIELD_ORDER:
            value = getattr(self, k)
            if isinstance(value, DoubleDouble):
                out[k] = _pair_out(value)
            elif isinstance(value, tuple):
                out[k] = [_pair_out(d) for d in value]
            else:
                out[k] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """The Summary of a :meth:`to_dict` value (e.g. read back from JSON), checked.

        Raises ValueError, naming the key (and bin), for: a format other than 1, a missing or
        unknown key, a count that is not an integer >= 0, a sum that is not a [hi, lo] pair of
        numbers with hi = fl(hi + lo), a bin list that is not 15 pairs, an unknown task or a
        bad number of classes. Integers are accepted for floats when exactly representable.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"Summary.from_dict: expected a mapping, got {type(data).__name__}")
        if "format" not in data:
            raise ValueError("Summary.from_dict: missing key 'format'")
        fmt = data["format"]
        if isinstance(fmt, bool) or fmt != FORMAT:
            raise ValueError(
                f"Summary.from_dict: unknown format {fmt!r} (this xentcore reads format {FORMAT})"
            )
        missing = [k for k in _DICT_KEYS if k not in data]
        extra = sorted(str(k) for k in data if k not in _DICT_KEYS)
        if missing or extra:
            parts = [f"missing keys {missing}"] if missing else []
            parts += [f"unknown keys {extra}"] if extra else []
            raise ValueError(f"Summary.from_dict: {'; '.join(parts)}")
        try:
            _check_task(data["task"])
            _check_n_classes(data["n_classes"])
        except ValueError as e:
            raise ValueError(f"Summary.from_dict: {e}") from None
        values: dict[str, Any] = {}
        for k in _COUNT_FIELDS:
            values[k] = _count_in(k, data[k])
        for k in _SUM_FIELDS:
            values[k] = _pair_in(k, data[k])
        for k in BIN_FIELDS:
            bins = data[k]
            if not isinstance(bins, list | tuple) or len(bins) != N_BINS:
                raise ValueError(
                    f"Summary.from_dict: {k!r}: expected a list of {N_BINS} [hi, lo] pairs, "
                    f"got {_describe(bins)}"
                )
            values[k] = tuple(_pair_in(f"{k}[{b}]", pair) for b, pair in enumerate(bins))
        return cls(data["task"], data["n_classes"], **values)


#: Summary's fields after task and n_classes, in declaration order (to_dict's key order).
_FIELD_ORDER = tuple(
    name for name in Summary.__dataclass_fields__ if name not in ("task", "n_classes")
)
_DICT_KEYS = ("format", "task", "n_classes", *_FIELD_ORDER)


def _float_out(x: float) -> float | str:
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _pair_out(d: DoubleDouble) -> list[float | str]:
    return [_float_out(d.hi), _float_out(d.lo)]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _count_in(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"Summary.from_dict: {key!r}: expected an integer >= 0, got {_describe(value)}"
        )
    return value


def _float_in(where: str, value: Any) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            as_float = float(value)
        except OverflowError:
            as_float = math.nan
        if as_float == value:  # JSON does not tell 3 from 3.0: accept an exact integer
            return as_float
    raise ValueError(f"Summary.from_dict: {where}: expected a number, got {_describe(value)}")


def _pair_in(where: str, value: Any) -> DoubleDouble:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(
            f"Summary.from_dict: {where!r}: expected a [hi, lo] pair of numbers, "
            f"got {_describe(value)}"
        )
    hi, lo = _float_in(f"{where!r} hi", value[0]), _float_in(f"{where!r} lo", value[1])
    normalised = lo == 0.0 if not math.isfinite(hi) else (hi + lo == hi and math.isfinite(lo))
    if not normalised:
        raise ValueError(
            f"Summary.from_dict: {where!r}: [{hi!r}, {lo!r}] is not a normalised pair "
            "(expected hi = fl(hi + lo), and lo = 0 when hi is not finite)"
        )
    return DoubleDouble(hi, lo)


def _from_score(r: ScoreResult) -> Summary:
    conf = r.confidence
    has = ~np.isnan(conf)
    if not has.all():
        conf = conf[has]
    counts = r.masks.counts()
    base: dict[str, Any] = {
        "task": r.task,
        "n_classes": int(r.n_classes),
        "n_items": int(r.n_items),
        "confidence_sum": DoubleDouble.sum_of(conf),
        "confidence_count": int(conf.size),
        "flagged": int(np.count_nonzero(r.flagged)),
        **{k: counts[k] for k in ("low_confidence", "high_loss", "misclassified", "risk_policy")},
    }
    if r.n_scored is None:
        return Summary(**base)
    loss_sum, weight_sum = _loss_sums(r)
    bins: dict[str, Any] = {}
    if r.top_confidence is not None and r.correct is not None:
        bins = _bins(r.top_confidence, r.correct, r.scored)
    return Summary(
        **base,
        n_scored=int(r.n_scored),
        loss_sum=loss_sum,
        weight_sum=weight_sum,
        n_classified=int(r.n_scored),
        correct=r.n_correct or 0,
        **bins,
    )


def _loss_sums(r: ScoreResult) -> tuple[DoubleDouble, DoubleDouble]:
    """(loss_sum, weight_sum): from item_loss when the result is unweighted, else its own."""
    total = float(r.loss_sum or 0.0)
    weight = float(r.weight_sum or 0.0)
    if r.item_loss is not None:
        loss = r.item_loss if r.scored is None else r.item_loss[r.scored]
        # score() reduces an unweighted batch by this very sum (and counts its weight):
        # equal bit for bit, the per-item losses are the terms of the result's loss_sum.
        if weight == loss.size and float(loss.sum()) == total:
            return DoubleDouble.sum_of(loss), DoubleDouble.of_int(loss.size)
    return DoubleDouble(total, 0.0), DoubleDouble(weight, 0.0)


def _bins(conf: F64, correct: Bool, scored: Bool | None) -> dict[str, Any]:
    """The 15 uniform bins of the scored items' top-label confidence, as summarize's."""
    if scored is not None:
        conf, correct = conf[scored], correct[scored]
    if _NATIVE_SUMS and conf.size > _FSUM_MAX:
        return _native_bins(conf, correct)
    index = uniform_bin_index(conf, N_BINS).astype(np.uint8)  # uint8: a radix sort below
    count = np.bincount(index, minlength=N_BINS)
    n_right = np.bincount(index[correct], minlength=N_BINS)
    ordered = conf[np.argsort(index, kind="stable")]
    ends = np.cumsum(count).tolist()
    starts = [0, *ends[:-1]]
    return {
        "bin_count": tuple(DoubleDouble.of_int(int(c)) for c in count.tolist()),
        "bin_confidence_sum": tuple(
            DoubleDouble.sum_of(ordered[a:b]) for a, b in zip(starts, ends, strict=True)
        ),
        "bin_correct_sum": tuple(DoubleDouble.of_int(int(c)) for c in n_right.tolist()),
    }


def _from_sequences(r: SequenceResult) -> Summary:
    n = int(r.n_tokens.size)
    counts = r.counts()
    return Summary(
        task="sequences",
        n_items=n,
        n_scored=n,
        loss_sum=DoubleDouble.sum_of(r.nll * r.n_tokens),
        weight_sum=DoubleDouble.of_int(int(r.n_tokens.sum())),
        confidence_sum=DoubleDouble.sum_of(r.confidence),
        confidence_count=n,
        flagged=int(r.flagged_indices.size),
        low_confidence=counts["low_confidence"],
        low_token_probability=counts["low_token_probability"],
        risk_policy=counts["risk_policy"],
    )
