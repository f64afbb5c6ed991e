"""The small-batch fast path (xentcore/fastpath.py) against the general path.

Every result of the fast path must be the general path's, bit for bit: each ScoreResult field
(arrays compared by their bytes, dtypes and shapes included), each property, and each error
(location, message and kind) of an input the fast path hands over. Every fallback trigger
(an option off its default, an array the kernels do not take, a failed check) must take the
general path. The general path is forced by switching ``fastpath.ENABLED`` off.
"""

from __future__ import annotations

import copy
import math
import pickle
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xentcore as xc
from xentcore import _kernels, fastpath
from xentcore.flags import FlagMasks
from xentcore.score import ScoreResult, score_batch
from xentcore.types import FlagRules, ScoreOptions
from xentcore.validate import Batch, check_batch, check_flag_rules

needs_native = pytest.mark.skipif(
    not (_kernels.NATIVE and hasattr(_kernels._rowops, "small_logits")),
    reason="xentcore._rowops not built with the fast path: the general path runs everywhere",
)
pytestmark = needs_native

METHODS = ["max_probability", "margin", "entropy", "true_class"]


@contextmanager
def general_path() -> Iterator[None]:
    with mock.patch.object(fastpath, "ENABLED", False):
        yield


def took_fast_path(r: ScoreResult) -> bool:
    return "_fast" in r.__dict__


def _same_float(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


def assert_same_value(a: Any, b: Any, what: str) -> None:
    assert type(a) is type(b), f"{what}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        assert a.tobytes() == b.tobytes(), f"{what}: {a!r} != {b!r}"
    elif isinstance(a, FlagMasks):
        for f in fields(FlagMasks):
            assert_same_value(getattr(a, f.name), getattr(b, f.name), f"{what}.{f.name}")
    elif isinstance(a, float):
        assert _same_float(a, b), f"{what}: {a!r} != {b!r}"
    elif isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_value(x, y, f"{what}[{i}]")
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def assert_same_result(fast: ScoreResult, slow: ScoreResult) -> None:
    """Every field and property of two results, bit for bit."""
    assert type(fast) is ScoreResult and type(slow) is ScoreResult
    for f in fields(ScoreResult):
        assert_same_value(getattr(fast, f.name), getattr(slow, f.name), f.name)
    for name in ("flagged", "flagged_indices", "reasons", "predicted"):
        assert_same_value(getattr(fast, name), getattr(slow, name), name)
    for name in ("confidence_mean", "n_correct", "accuracy"):
        assert_same_value(getattr(fast, name), getattr(slow, name), name)


def both_paths(call: Callable[[], ScoreResult]) -> tuple[ScoreResult, ScoreResult]:
    fast = call()
    with general_path():
        slow = call()
    assert not took_fast_path(slow)
    return fast, slow


def error_of(call: Callable[[], object]) -> tuple[Any, ...]:
    with pytest.raises(xc.InputError) as info:
        call()
    err = info.value
    return err.location, str(err), err.kind


def assert_same_error(call: Callable[[], object]) -> None:
    fast = error_of(call)
    with general_path():
        slow = error_of(call)
    assert fast == slow


# --- random batches -------------------------------------------------------------------------


def softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


def logits(rng: np.random.Generator, n: int, k: int, dtype: Any) -> npt.NDArray[Any]:
    scale = 10.0 ** rng.uniform(-1.0, 2.0)
    z = rng.standard_normal((n, k)) * scale
    if rng.random() < 0.3:  # ties on a row's top value, and whole tied rows
        z[:: max(1, n // 3), 0] = z[:: max(1, n // 3), 1]
        z[-1] = z[-1, 0]
    if rng.random() < 0.2:  # huge logits: stable forms, no overflow
        z *= 1e30
    return np.ascontiguousarray(z.astype(dtype))


def probabilities(rng: np.random.Generator, n: int, k: int, dtype: Any) -> npt.NDArray[Any]:
    p = softmax(rng.standard_normal((n, k)) * 10.0 ** rng.uniform(-1.0, 1.5))
    if rng.random() < 0.3:  # exact zeros and ones: clipped on their way into a log
        p[:: max(1, n // 2)] = np.eye(k)[rng.integers(0, k, size=len(p[:: max(1, n // 2)]))]
    return np.ascontiguousarray(p.astype(dtype))


def labels_of(rng: np.random.Generator, n: int, k: int) -> npt.NDArray[Any] | None:
    kind = rng.integers(0, 4)
    if kind == 0:
        return None
    dtype = [np.int64, np.int32, np.uint8][kind - 1]
    return rng.integers(0, k, size=n).astype(dtype)


FLAGS: list[Any] = [
    None,
    {"min_confidence": 0.7},
    {"min_confidence": None},
    {"max_loss": 0.5},
    {"misclassified": True},
    {"min_confidence": 0.9, "max_loss": 1.0, "misclassified": True},
    FlagRules(min_confidence=0.3, max_loss=2.0),
]


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.one_of(st.integers(1, 40), st.integers(100, 300)))
    k = draw(st.one_of(st.integers(2, 12), st.integers(40, 70)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    input_type = draw(st.sampled_from(["logits", "probabilities"]))
    x = (logits if input_type == "logits" else probabilities)(rng, n, k, dtype)
    y = labels_of(rng, n, k)
    confidence = draw(st.sampled_from(METHODS))
    flag = draw(st.sampled_from(FLAGS))
    if y is None:
        if confidence == "true_class":
            confidence = "max_probability"
        if isinstance(flag, FlagRules) or (flag is not None and set(flag) != {"min_confidence"}):
            flag = None  # rules that need labels
    options: dict[str, Any] = {"input_type": input_type, "confidence": confidence, "flag": flag}
    if draw(st.booleans()):
        options["threads"] = draw(st.sampled_from([1, 3]))
    if draw(st.booleans()):
        options["clip_eps"] = draw(st.sampled_from([1e-7, 1e-3, 1e-15]))
    if draw(st.booleans()):
        options["task"] = "multiclass"
    return {"x": x, "y": y, "options": options}


def fast_expected(b: dict[str, Any]) -> bool:
    """Whether the fast path should take this batch (probabilities: a gathered confidence)."""
    o = b["options"]
    return o["input_type"] == "logits" or o["confidence"] in ("max_probability", "true_class")


@given(batches())
def test_score_is_the_general_path_bit_for_bit(b: dict[str, Any]) -> None:
    fast, slow = both_paths(lambda: xc.score(b["x"], b["y"], **b["options"]))
    assert took_fast_path(fast) == fast_expected(b)
    assert_same_result(fast, slow)


@given(batches())
def test_score_batch_is_the_general_path_bit_for_bit(b: dict[str, Any]) -> None:
    """The service's path: check_batch (general), then score_batch."""
    o = dict(b["options"])
    rules = check_flag_rules(o.pop("flag"))
    o.pop("threads", None)
    batch = check_batch(b["x"], b["y"], ScoreOptions(**o))
    fast, slow = both_paths(lambda: score_batch(batch, rules))
    assert took_fast_path(fast) == fast_expected(b)
    assert_same_result(fast, slow)


def assert_same_batch(fast: Batch, slow: Batch) -> None:
    assert type(fast) is type(slow) is Batch
    assert fast.x is slow.x
    assert (fast.n_items, fast.n_classes, fast.warnings) == (
        slow.n_items,
        slow.n_classes,
        slow.warnings,
    )
    for f in fields(ScoreOptions):
        assert_same_value(getattr(fast.options, f.name), getattr(slow.options, f.name), f.name)
    if slow.labels is None:
        assert fast.labels is None
        return
    assert fast.labels is not None
    for f in fields(slow.labels):
        a, b = getattr(fast.labels, f.name), getattr(slow.labels, f.name)
        assert_same_value(a, b, f"labels.{f.name}")
    assert fast.labels.true_class is fast.labels.index  # as the general path's


@given(batches())
def test_fast_check_batch_is_check_batch(b: dict[str, Any]) -> None:
    o = dict(b["options"])
    o.pop("flag")
    o.pop("threads", None)
    options = ScoreOptions(**o)
    fast = fastpath.check_batch(b["x"], b["y"], options)
    assert (fastpath._fast_batch(b["x"], b["y"], options) is not None) == fast_expected(b)
    assert_same_batch(fast, check_batch(b["x"], b["y"], options))
    rules = check_flag_rules(b["options"]["flag"])
    assert_same_result(score_batch(fast, rules), xc.score(b["x"], b["y"], **b["options"]))


@pytest.mark.parametrize("n", [*range(1, 20), 31, 32, 33, 127, 128, 129, 136, 255, 256, 1000, 4097])
def test_loss_sum_is_numpys_pairwise_sum(n: int) -> None:
    rng = np.random.default_rng(n)
    z = rng.standard_normal((n, 3)) * 5
    y = rng.integers(0, 3, size=n)
    r = xc.score(z, y, input_type="logits")
    assert took_fast_path(r) and r.item_loss is not None
    assert _same_float(r.loss_sum or 0.0, float(r.item_loss.sum()))


def test_small_batches_of_the_benchmark() -> None:
    """The shapes of the issue: 1 item and 32 x 10 float32 logits, integer labels."""
    rng = np.random.default_rng(0)
    for n in (1, 32):
        z = rng.normal(0, 2, (n, 10)).astype(np.float32)
        y = rng.integers(0, 10, n)
        fast, slow = both_paths(lambda z=z, y=y: xc.score(z, y, input_type="logits"))
        assert took_fast_path(fast)
        assert_same_result(fast, slow)


# --- fallbacks: each takes the general path, with its result ---------------------------------

Z = np.random.default_rng(3).standard_normal((8, 4)).astype(np.float32)
Y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
P = softmax(Z.astype(np.float64))

UNALIGNED_Z = np.frombuffer(b"\0" + Z.tobytes(), np.float32, offset=1).reshape(Z.shape)
UNALIGNED_Y = np.frombuffer(b"\0" + Y.tobytes(), np.int64, offset=1)
NUMPY_HALF: Any = np.float64(0.5)  # a flag rule as a numpy scalar (FlagRules says float)

FALLBACKS: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "class_weights": (Z, Y, {"input_type": "logits", "class_weights": [1.0, 2.0, 1.0, 1.0]}),
    "sample_weights": (Z, Y, {"input_type": "logits", "sample_weights": np.ones(8)}),
    "ignore_index": (Z, Y, {"input_type": "logits", "ignore_index": -100}),
    "label_smoothing": (Z, Y, {"input_type": "logits", "label_smoothing": 0.1}),
    "focal_gamma": (Z, Y, {"input_type": "logits", "focal_gamma": 2.0}),
    "focal_alpha": (Z, Y, {"input_type": "logits", "focal_alpha": 0.25}),
    "class_names": (Z, Y, {"input_type": "logits", "class_names": ["a", "b", "c", "d"]}),
    "renormalize": (P, Y, {"renormalize": True}),
    "clip_eps_dtype": (P, Y, {"clip_eps": "dtype"}),
    "numpy_scalar_option": (Z, Y, {"input_type": "logits", "decision_threshold": np.float64(0.5)}),
    "log_probabilities": (np.log(P), Y, {"input_type": "log_probabilities"}),
    "probabilities_margin": (P, Y, {"confidence": "margin"}),
    "probabilities_entropy": (P, Y, {"confidence": "entropy"}),
    "task_multilabel": (P, (P > 0.3).astype(float), {"task": "multilabel"}),
    "binary": (P[:, 0], (P[:, 0] > 0.3).astype(float), {}),
    "list_predictions": (Z.tolist(), Y, {"input_type": "logits"}),
    "float_list_labels": (Z, [0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0], {"input_type": "logits"}),
    "string_list_labels": (
        Z,
        list("abcdabcd"),
        {"input_type": "logits", "class_names": list("abcd")},
    ),
    "nested_list_labels": (Z, P.tolist(), {"input_type": "logits"}),
    "float_labels": (Z, Y.astype(np.float64), {"input_type": "logits"}),
    "string_labels": (
        Z,
        np.array(list("abcdabcd")),
        {"input_type": "logits", "class_names": list("abcd")},
    ),
    "target_distributions": (Z, P, {"input_type": "logits"}),
    "float16": (Z.astype(np.float16), Y, {"input_type": "logits"}),
    "big_endian": (Z.astype(">f4"), Y, {"input_type": "logits"}),
    "fortran_order": (np.asfortranarray(Z), Y, {"input_type": "logits"}),
    "strided": (np.repeat(Z, 2, axis=1)[:, ::2], Y, {"input_type": "logits"}),
    "strided_labels": (Z, np.repeat(Y, 2)[::2], {"input_type": "logits"}),
    "unaligned": (UNALIGNED_Z, Y, {"input_type": "logits"}),
    "unaligned_labels": (Z, UNALIGNED_Y, {"input_type": "logits"}),
    "integer_predictions": (np.round(Z * 10).astype(np.int64), Y, {"input_type": "logits"}),
    "large_batch": (
        np.zeros((fastpath.MAX_VALUES // 4, 4), np.float32),
        np.zeros(fastpath.MAX_VALUES // 4, np.int64),
        {"input_type": "logits"},
    ),
    "risk_policy": (Z, Y, {"input_type": "logits", "flag": FlagRules(risk_thresholds=(0.5,))}),
    "numpy_rule": (Z, Y, {"input_type": "logits", "flag": FlagRules(min_confidence=NUMPY_HALF)}),
}


@pytest.mark.parametrize("name", FALLBACKS)
def test_each_fallback_takes_the_general_path(name: str) -> None:
    x, y, options = FALLBACKS[name]
    fast, slow = both_paths(lambda: xc.score(x, y, **options))
    assert not took_fast_path(fast), name
    assert_same_result(fast, slow)


@pytest.mark.parametrize("name", FALLBACKS)
def test_score_batch_of_each_fallback_is_the_general_paths(name: str) -> None:
    """What ``check_batch`` makes of these inputs may be a fast-path batch for ``score_batch``
    (a float16 array widened, "dtype" resolved, a list made an array...): its result is the
    general path's either way."""
    x, y, options = FALLBACKS[name]
    options = dict(options)
    rules = check_flag_rules(options.pop("flag", None))
    batch = check_batch(x, y, ScoreOptions(**options))
    fast, slow = both_paths(lambda: score_batch(batch, rules))
    assert_same_result(fast, slow)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint16, ">i8", "<i4", list])
def test_integer_labels_of_any_dtype_take_the_fast_path(dtype: Any) -> None:
    y = Y.tolist() if dtype is list else Y.astype(dtype)
    fast, slow = both_paths(lambda: xc.score(Z, y, input_type="logits"))
    assert took_fast_path(fast)
    assert_same_result(fast, slow)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1 - 1e-4, 1 + 1e-4, 1 - 2e-4, 1 + 2e-4, 1 - 5e-5, 1 + 5e-5])
def test_rows_near_the_sum_tolerance_get_the_general_verdict(dtype: Any, scale: float) -> None:
    """Rows summing to about 1 +- tol: within the margin of the edge the fast path hands them
    over, and whatever the general path says (a result or an error) is the answer."""
    x = (P * scale).astype(dtype)
    for tol in (1e-4, 1e-3):
        try:
            slow: Any = None
            with general_path():
                slow = xc.score(x, Y, sum_tolerance=tol)
        except xc.InputError:
            assert_same_error(lambda tol=tol: xc.score(x, Y, sum_tolerance=tol))
            continue
        assert_same_result(xc.score(x, Y, sum_tolerance=tol), slow)
    near = (P * (1 + 1e-4)).astype(dtype)  # every row within a few ulps of 1 + tol
    try:
        assert not took_fast_path(xc.score(near, Y))
    except xc.InputError:
        pass


def test_fallbacks_without_the_compiled_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kernels, "_rowops", None)
    r = xc.score(Z, Y, input_type="logits")
    assert not took_fast_path(r)


def test_fast_path_knows_every_option() -> None:
    """An option added to ScoreOptions switches the fast path off until it is listed (with the
    values it takes) in ACCEPTED_OPTIONS and checked in fastpath and score."""
    assert set(fastpath.ACCEPTED_OPTIONS) == {f.name for f in fields(ScoreOptions)}
    assert fastpath.ENABLED


def test_unknown_option_disables_the_fast_path() -> None:
    """What ENABLED is computed from, with a field added."""
    known = set(fastpath.ACCEPTED_OPTIONS)
    assert ({f.name for f in fields(ScoreOptions)} | {"new_option"}) != known


# --- errors: the general path's, whatever the fast path saw first ------------------------------


def _with(x: npt.NDArray[Any], at: tuple[int, int], value: float) -> npt.NDArray[Any]:
    out = x.copy()
    out[at] = value
    return out


ERRORS: dict[str, Callable[[], object]] = {
    "nan_logit": lambda: xc.score(_with(Z, (3, 2), np.nan), Y, input_type="logits"),
    "inf_logit": lambda: xc.score(_with(Z, (0, 0), np.inf), Y, input_type="logits"),
    "minus_inf_logit_f64": lambda: xc.score(
        _with(Z.astype(np.float64), (7, 3), -np.inf), Y, input_type="logits"
    ),
    "nan_unlabelled": lambda: xc.score(_with(Z, (5, 1), np.nan), input_type="logits"),
    "label_too_large": lambda: xc.score(Z, np.where(Y == 3, 4, Y), input_type="logits"),
    "label_negative": lambda: xc.score(Z, np.where(Y == 1, -1, Y), input_type="logits"),
    "label_negative_int8": lambda: xc.score(Z, (Y - 1).astype(np.int8), input_type="logits"),
    "label_huge_uint64": lambda: xc.score(Z, Y.astype(np.uint64) + 2**63, input_type="logits"),
    "labels_too_few": lambda: xc.score(Z, Y[:5], input_type="logits"),
    "label_list_out_of_range": lambda: xc.score(Z, [0, 1, 2, 3, 4, 1, 2, 3], input_type="logits"),
    "label_list_ragged": lambda: xc.score(Z, [0, [1, 2], 2, 3, 0, 1, 2, 3], input_type="logits"),
    "label_list_of_bools": lambda: xc.score(Z, [True] * 8, input_type="logits"),
    "label_list_of_strings": lambda: xc.score(Z, list("abcdabcd"), input_type="logits"),
    "probability_negative": lambda: xc.score(_with(P, (2, 1), -0.1), Y),
    "probability_above_one": lambda: xc.score(_with(P, (2, 1), 1.5), Y),
    "probability_nan": lambda: xc.score(_with(P, (4, 0), np.nan), Y),
    "row_sum": lambda: xc.score(P * 0.9, Y),
    "logits_as_probabilities": lambda: xc.score(Z, Y),
    "sum_tolerance_zero": lambda: xc.score(P * (1 + 1e-9), Y, sum_tolerance=0.0),
    "flag_unknown_rule": lambda: xc.score(Z, Y, input_type="logits", flag={"bogus": 1}),
    "flag_bad_value": lambda: xc.score(Z, Y, input_type="logits", flag={"min_confidence": 2}),
    "flag_not_a_mapping": lambda: xc.score(Z, Y, input_type="logits", flag=[1]),
    "max_loss_without_labels": lambda: xc.score(Z, input_type="logits", flag={"max_loss": 1.0}),
    "misclassified_without_labels": lambda: xc.score(
        Z, input_type="logits", flag={"misclassified": True}
    ),
    "true_class_without_labels": lambda: xc.score(Z, input_type="logits", confidence="true_class"),
    "threads_zero": lambda: xc.score(Z, Y, input_type="logits", threads=0),
    "threads_string": lambda: xc.score(Z, Y, input_type="logits", threads="2"),
    "bad_input_type": lambda: xc.score(Z, Y, input_type="logit"),
    "bad_confidence": lambda: xc.score(Z, Y, input_type="logits", confidence="max"),
    "bad_task": lambda: xc.score(Z, Y, input_type="logits", task="multi"),
    "clip_eps_half": lambda: xc.score(P, Y, clip_eps=0.5),
    "decision_threshold_nan": lambda: xc.score(
        Z, Y, input_type="logits", decision_threshold=np.nan
    ),
    "sum_tolerance_above_one": lambda: xc.score(Z, Y, input_type="logits", sum_tolerance=2.0),
    "one_class": lambda: xc.score(Z[:, :1].copy(), np.zeros(8, np.int64), input_type="logits"),
    "empty_batch": lambda: xc.score(Z[:0], Y[:0], input_type="logits"),
    # two errors: the batch's comes first, as in the general path
    "nan_and_bad_flag": lambda: xc.score(
        _with(Z, (1, 1), np.nan), Y, input_type="logits", flag={"bogus": 1}
    ),
    "bad_label_and_bad_threads": lambda: xc.score(
        Z, np.where(Y == 3, 9, Y), input_type="logits", threads=0
    ),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_the_general_paths(name: str) -> None:
    assert_same_error(ERRORS[name])


def test_threads_variable_is_read_as_the_general_path_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENT_THREADS", "zero")
    assert_same_error(lambda: xc.score(Z, Y, input_type="logits"))
    monkeypatch.setenv("XENT_THREADS", "2")
    fast, slow = both_paths(lambda: xc.score(Z, Y, input_type="logits"))
    assert took_fast_path(fast)
    assert_same_result(fast, slow)


def test_service_errors_are_the_general_paths() -> None:
    """fastpath.check_batch: the general check's errors, for what it hands over."""
    options = ScoreOptions(input_type="logits")
    for x, y in [(_with(Z, (3, 2), np.nan), Y), (Z, np.where(Y == 3, 4, Y)), (Z, Y[:3])]:
        fast = error_of(lambda x=x, y=y: fastpath.check_batch(x, y, options))
        assert fast == error_of(lambda x=x, y=y: check_batch(x, y, options))


# --- the lazy result ------------------------------------------------------------------------


def test_fields_are_made_on_first_read_one_by_one() -> None:
    fast, slow = both_paths(lambda: xc.score(Z, Y, input_type="logits"))
    assert set(fast.__dict__) == {"_fast"}
    loss = fast.item_loss
    assert set(fast.__dict__) == {"_fast", "item_loss"} and fast.item_loss is loss
    assert fast.confidence is fast.top_confidence  # one array for max_probability, as general
    assert slow.confidence is slow.top_confidence
    assert_same_result(fast, slow)
    assert set(fast.__dict__) >= {"_fast"} | {f.name for f in fields(ScoreResult)}


def test_every_field_has_a_maker() -> None:
    assert set(fastpath._MAKERS) == {f.name for f in fields(ScoreResult)}


def test_score_batch_results_are_made_at_once_but_masks() -> None:
    batch = check_batch(Z, Y, ScoreOptions(input_type="logits"))
    r = score_batch(batch, check_flag_rules(None))
    assert set(r.__dict__) == {"_fast"} | {f.name for f in fields(ScoreResult)} - {"masks"}
    assert r.confidence is r.top_confidence


def test_class_attributes_are_the_defaults() -> None:
    assert ScoreResult.item_loss is None and ScoreResult.n_clipped == 0
    with pytest.raises(AttributeError):
        ScoreResult.task  # noqa: B018
    with pytest.raises(AttributeError):
        ScoreResult.warnings  # noqa: B018
    r = ScoreResult(*[None] * 11)  # type: ignore[arg-type]
    assert r.item_loss is None and r.warnings == [] and r.n_clipped == 0


def test_masks_are_built_on_first_access_and_kept() -> None:
    fast, slow = both_paths(lambda: xc.score(Z, Y, input_type="logits", flag={"max_loss": 0.5}))
    assert "masks" not in fast.__dict__
    masks = fast.masks
    assert fast.masks is masks and fast.__dict__["masks"] is masks
    assert_same_value(masks, slow.masks, "masks")
    assert masks.counts() == slow.masks.counts()


def test_fast_result_behaves_as_a_dataclass() -> None:
    fast, slow = both_paths(lambda: xc.score(Z, Y, input_type="logits"))
    clone = pickle.loads(pickle.dumps(fast))
    assert_same_result(clone, slow)
    assert_same_result(copy.copy(fast), slow)
    assert_same_result(copy.deepcopy(fast), slow)
    changed = replace(fast, warnings=["x"])
    assert changed.warnings == ["x"] and not took_fast_path(changed)
    assert_same_value(changed.masks, slow.masks, "masks")
    assert repr(fast).startswith("ScoreResult(task='multiclass'")
    with pytest.raises(AttributeError, match="no attribute 'bogus'"):
        fast.bogus  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        slow.bogus  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):  # frozen
        fast.n_items = 3  # type: ignore[misc]


def test_results_do_not_share_buffers() -> None:
    a = xc.score(Z, Y, input_type="logits")
    b = xc.score(Z, Y, input_type="logits")
    assert a.item_loss is not None and b.item_loss is not None
    assert not np.shares_memory(a.item_loss, b.item_loss)
    assert not np.shares_memory(a.flagged, b.flagged)
    assert a.true_class is Y  # int64 labels: the caller's array, as the general path's


def test_small_check_rejects_what_the_general_path_rejects() -> None:
    rowops = _kernels._rowops
    assert rowops is not None
    x = P.copy()
    assert rowops.small_check(x, Y, 1e-4)
    assert not rowops.small_check(x, np.where(Y == 3, 4, Y), 1e-4)
    assert not rowops.small_check(x * 1.01, None, 1e-4)
    assert rowops.small_check(Z, None, -1.0)
    assert not rowops.small_check(_with(Z, (0, 0), np.inf), None, -1.0)
    for value in (np.nan, np.inf, -np.inf, 1e38):
        assert rowops.small_check(np.full((1, 2), 1e38, np.float32), None, -1.0)
        assert rowops.small_check(np.full((1, 2), value, np.float32), None, -1.0) == (
            math.isfinite(value)
        )
