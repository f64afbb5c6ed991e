"""Every InputError rule of the core: the exact ``location`` tuple, the message and the kind.

``str(err)`` is ``<rendered location>: <reason>``, the message the HTTP 422 carries, so each case
checks the location tuple exactly and a distinctive part of the reason (with the bad value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from xentcore.errors import format_location
from xentcore.validate import (
    LOG_PROBABILITIES_HINT,
    LOGITS_HINT,
    MULTILABEL_HINT,
    PROBABILITIES_HINT,
)

P2 = [[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]  # three valid multiclass rows, K = 2
P3 = [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]]  # K = 3
PB = [0.2, 0.7, 0.9]  # binary


@dataclass
class Case:
    call: Callable[[], object]
    location: tuple[str | int, ...]
    message: str
    kind: str = "value_error"
    extra: dict[str, Any] = field(default_factory=dict)


def score(*args: Any, **kwargs: Any) -> Callable[[], object]:
    return lambda: xc.score(*args, **kwargs)


def calib(*args: Any, **kwargs: Any) -> Callable[[], object]:
    return lambda: xc.calibration(*args, **kwargs)


def seqs(*args: Any, **kwargs: Any) -> Callable[[], object]:
    return lambda: xc.score_sequences(*args, **kwargs)


NAN, INF = float("nan"), float("inf")

CASES: dict[str, Case] = {
    # --- predictions: numbers, finiteness, shape
    "nan_2d": Case(
        score([[0.5, 0.5], [0.2, NAN]], [0, 1]),
        ("predictions", 1, 1),
        "nan is not a finite number",
        "finite_number",
    ),
    "inf_2d_logits": Case(
        score([[0.0, 1.0, 2.0], [INF, 0.0, 1.0]], input_type="logits"),
        ("predictions", 1, 0),
        "inf is not a finite number",
        "finite_number",
    ),
    "neg_inf_logprob": Case(
        score([[-np.inf, 0.0]], input_type="log_probabilities"),
        ("predictions", 0, 0),
        "-inf is not a finite number",
        "finite_number",
    ),
    "nan_binary": Case(
        score([0.2, 0.4, NAN]), ("predictions", 2), "nan is not a finite number", "finite_number"
    ),
    "inf_binary_logits": Case(
        score([1.0, -INF], input_type="logits"),
        ("predictions", 1),
        "-inf is not a finite number",
        "finite_number",
    ),
    "nan_float32_2d": Case(
        score(np.array([[0.5, 0.5], [NAN, 0.5]], dtype=np.float32)),
        ("predictions", 1, 0),
        "nan is not a finite number",
        "finite_number",
    ),
    "nan_multilabel": Case(
        score([[0.5, 0.5], [0.2, NAN]], task="multilabel"),
        ("predictions", 1, 1),
        "nan is not a finite number",
        "finite_number",
    ),
    "ragged_rows": Case(score([[0.5, 0.5], [1.0], [0.2, 0.8]]), ("predictions", 1), "ragged rows"),
    "ragged_scalar_row": Case(score([[0.5, 0.5], 0.3]), ("predictions", 1), "ragged rows"),
    "boolean_predictions": Case(
        score([True, False]), ("predictions",), "expected numbers, got booleans", "float_type"
    ),
    "string_predictions": Case(
        score(["0.5", "0.2"]), ("predictions",), "expected numbers", "float_type"
    ),
    "three_d": Case(
        score(np.zeros((2, 2, 2))),
        ("predictions",),
        "expected N or N x K, got shape (2, 2, 2)",
    ),
    "k_equals_1": Case(
        score([[1.0], [1.0]]), ("predictions",), "multiclass needs K >= 2 classes, got K = 1"
    ),
    "k_equals_1_logits": Case(
        score([[0.3], [2.0]], input_type="logits"),
        ("predictions",),
        "multiclass needs K >= 2 classes, got K = 1",
    ),
    "multilabel_k0": Case(
        score(np.zeros((2, 0)), task="multilabel"),
        ("predictions",),
        "multilabel needs K >= 1 classes, got K = 0",
    ),
    "binary_2d": Case(
        score(P2, task="binary"),
        ("predictions",),
        "binary predictions must be 1-D (N,), got shape [3, 2]",
    ),
    "multiclass_1d": Case(
        score(PB, task="multiclass"),
        ("predictions",),
        "multiclass predictions must be 2-D (N, K), got shape [3]",
    ),
    "multilabel_1d": Case(
        score(PB, task="multilabel"),
        ("predictions",),
        "multilabel predictions must be 2-D (N, K), got shape [3]",
    ),
    "empty_binary": Case(score([]), ("predictions",), "empty batch"),
    "empty_multiclass": Case(score(np.zeros((0, 3))), ("predictions",), "empty batch"),
    "unknown_task": Case(
        score(PB, task="regression"),
        ("task",),
        "'regression' is not one of binary, multiclass, multilabel",
        "enum",
    ),
    "unknown_input_type": Case(
        score(PB, input_type="odds"),
        ("input_type",),
        "'odds' is not one of probabilities, logits, log_probabilities",
        "enum",
    ),
    # --- probabilities and log-probabilities
    "probability_above_1": Case(
        score([[0.2, 0.8], [1.2, -0.2]]), ("predictions", 1, 0), "probability 1.2 is outside [0, 1]"
    ),
    "probability_negative_binary": Case(
        score([0.5, -0.1]), ("predictions", 1), "probability -0.1 is outside [0, 1]"
    ),
    "probability_above_1_multilabel": Case(
        score([[0.5, 1.5]], task="multilabel"),
        ("predictions", 0, 1),
        "probability 1.5 is outside [0, 1]",
    ),
    "row_sum": Case(
        score([[0.5, 0.5], [0.47, 0.4]]),
        ("predictions", 1),
        "row sums to 0.87, expected 1 ± 0.0001",
    ),
    "row_sum_tolerance": Case(
        score([[0.5, 0.5], [0.47, 0.4]], sum_tolerance=0.1),
        ("predictions", 1),
        "row sums to 0.87, expected 1 ± 0.1",
    ),
    "row_sum_just_outside": Case(
        score([[0.5, 0.50011]]), ("predictions", 0), "row sums to 1.00011, expected 1 ± 0.0001"
    ),
    "renormalize_zero_row": Case(
        score([[0.5, 0.5], [0.0, 0.0]], renormalize=True),
        ("predictions", 1),
        "row sums to 0, cannot renormalize",
    ),
    "renormalize_binary": Case(
        score(PB, renormalize=True),
        ("renormalize",),
        "only multiclass probability rows can be renormalized",
    ),
    "positive_logprob": Case(
        score([[-0.1, 0.2]], input_type="log_probabilities"),
        ("predictions", 0, 1),
        "log-probability 0.2 is positive, expected <= 0",
    ),
    "positive_logprob_binary": Case(
        score([-0.5, 0.1], input_type="log_probabilities"),
        ("predictions", 1),
        "log-probability 0.1 is positive, expected <= 0",
    ),
    "logprob_rows": Case(
        score(
            [[np.log(0.5), np.log(0.5)], [np.log(0.5), np.log(0.3)]], input_type="log_probabilities"
        ),
        ("predictions", 1),
        "row logsumexp is -0.223144, expected 0 ± 0.0001",
    ),
    # --- labels
    "label_length": Case(
        score(P2, [0, 1]), ("labels",), "expected 3 labels (one per prediction), got 2 labels"
    ),
    "label_scalar": Case(score(P2, 1), ("labels",), "got a scalar"),
    "label_length_binary": Case(
        score(PB, [1, 0, 1, 1]), ("labels",), "expected 3 labels (one per prediction), got 4 labels"
    ),
    "label_out_of_range": Case(score(P3, [0, 3, 1]), ("labels", 1), "class 3 is outside [0, 3)"),
    "label_negative": Case(score(P3, [0, 1, -1]), ("labels", 2), "class -1 is outside [0, 3)"),
    "label_out_of_range_with_ignore": Case(
        score(P3, [-100, -1, 1], ignore_index=-100),
        ("labels", 1),
        "class -1 is outside [0, 3) or ignore_index -100",
    ),
    "label_fraction": Case(
        score(P3, [0.0, 1.5, 2.0]),
        ("labels", 1),
        "1.5 is not an integer, expected an integer class index in [0, 3)",
        "int_type",
    ),
    "label_nan": Case(
        score(P3, [0.0, NAN, 2.0]), ("labels", 1), "nan is not a finite number", "finite_number"
    ),
    "label_booleans": Case(
        score(P2, [True, False, True]),
        ("labels",),
        "expected an integer class index in [0, 2), got booleans",
        "int_type",
    ),
    "label_strings_without_names": Case(
        score(P3, ["a", "b", "c"]), ("labels",), "string labels need class_names", "int_type"
    ),
    "label_unknown_name": Case(
        score(P3, ["cat", "dog", "cow"], class_names=["cat", "dog", "owl"]),
        ("labels", 2),
        "'cow' is not one of class_names",
    ),
    "label_unknown_name_binary": Case(
        score(PB, ["no", "yes", "maybe"], class_names=["no", "yes"]),
        ("labels", 2),
        "'maybe' is not one of class_names",
    ),
    "label_binary_2d": Case(
        score(PB, [[0, 1], [1, 0], [0, 1]]),
        ("labels",),
        "binary labels must be 1-D (N,), got shape [3, 2]",
    ),
    "label_binary_outside": Case(score(PB, [0, 1, 2]), ("labels", 2), "target 2 is outside [0, 1]"),
    "label_binary_nan": Case(
        score(PB, [0, NAN, 1]), ("labels", 1), "nan is not a finite number", "finite_number"
    ),
    "target_shape": Case(
        score(P3, [[1, 0], [0, 1], [1, 0]]),
        ("labels",),
        "multiclass targets must have shape [3, 3], got [3, 2]",
    ),
    "target_row_sum": Case(
        score(P3, [[1, 0, 0], [0.5, 0.4, 0], [0, 0, 1]]),
        ("labels", 1),
        "target row sums to 0.9, expected 1 ± 0.0001",
    ),
    "target_outside": Case(
        score(P3, [[1, 0, 0], [1.5, -0.5, 0], [0, 0, 1]]),
        ("labels", 1, 0),
        "target 1.5 is outside [0, 1]",
    ),
    "multilabel_target_shape": Case(
        score(P2, [0, 1, 1], task="multilabel"),
        ("labels",),
        "multilabel targets must have shape [3, 2], got [3]",
    ),
    "multilabel_target_outside": Case(
        score(P2, [[0, 1], [1, 1], [0, 2]], task="multilabel"),
        ("labels", 2, 1),
        "target 2 is outside [0, 1]",
    ),
    "ragged_labels": Case(score(P3, [[1, 0, 0], [1, 0], [0, 0, 1]]), ("labels", 1), "ragged rows"),
    # --- class names
    "class_names_string": Case(
        score(P2, class_names="ab"), ("class_names",), "expected a list of strings"
    ),
    "class_names_not_strings": Case(
        score(P2, class_names=["a", 2]),
        ("class_names", 1),
        "expected a string, got int",
        "string_type",
    ),
    "class_names_count": Case(
        score(P3, class_names=["a", "b"]),
        ("class_names",),
        "expected 3 (one per class) names, got 2",
    ),
    "class_names_binary_count": Case(
        score(PB, class_names=["a", "b", "c"]),
        ("class_names",),
        "expected 2 (negative, positive) names, got 3",
    ),
    "class_names_duplicate": Case(
        score(P3, class_names=["a", "b", "a"]), ("class_names", 2), "duplicate name 'a'"
    ),
    # --- options
    "class_weights_negative": Case(
        score(P3, [0, 1, 2], class_weights=[1.0, -1.0, 1.0]),
        ("class_weights", 1),
        "-1 is negative, expected >= 0",
    ),
    "class_weights_length": Case(
        score(P3, [0, 1, 2], class_weights=[1.0, 2.0]),
        ("class_weights",),
        "expected 3 numbers (one per class), got shape [2]",
    ),
    "class_weights_nan": Case(
        score(P3, [0, 1, 2], class_weights=[1.0, NAN, 1.0]),
        ("class_weights", 1),
        "nan is not a finite number",
        "finite_number",
    ),
    "class_weights_binary": Case(
        score(PB, [0, 1, 1], class_weights=[1.0, 2.0, 3.0]),
        ("class_weights",),
        "expected 2 numbers (one per class: negative, then positive), got shape [3]",
    ),
    "sample_weights_negative": Case(
        score(PB, [0, 1, 1], sample_weights=[1.0, 1.0, -2.0]),
        ("sample_weights", 2),
        "-2 is negative, expected >= 0",
    ),
    "sample_weights_length": Case(
        score(PB, [0, 1, 1], sample_weights=[1.0, 1.0]),
        ("sample_weights",),
        "expected 3 numbers (one per item), got shape [2]",
    ),
    "sample_weights_inf": Case(
        score(PB, [0, 1, 1], sample_weights=[1.0, INF, 1.0]),
        ("sample_weights", 1),
        "inf is not a finite number",
        "finite_number",
    ),
    "pos_weight_negative": Case(
        score(PB, [0, 1, 1], pos_weight=-1.0), ("pos_weight",), "-1 is below the minimum >= 0"
    ),
    "pos_weight_multiclass": Case(
        score(P3, [0, 1, 2], pos_weight=2.0),
        ("pos_weight",),
        "only for binary and multilabel tasks",
    ),
    "pos_weight_vector_binary": Case(
        score(PB, [0, 1, 1], pos_weight=[1.0, 2.0]),
        ("pos_weight",),
        "expected a number for a binary task",
        "float_type",
    ),
    "pos_weight_vector_length": Case(
        score(P3, task="multilabel", pos_weight=[1.0, 2.0]),
        ("pos_weight",),
        "expected 3 numbers (one per class), got shape [2]",
    ),
    "pos_weight_vector_negative": Case(
        score(P3, task="multilabel", pos_weight=[1.0, -2.0, 1.0]),
        ("pos_weight", 1),
        "-2 is negative, expected >= 0",
    ),
    "label_smoothing_above_1": Case(
        score(P3, [0, 1, 2], label_smoothing=1.5),
        ("label_smoothing",),
        "1.5 is above the maximum <= 1",
    ),
    "label_smoothing_negative": Case(
        score(P3, [0, 1, 2], label_smoothing=-0.1),
        ("label_smoothing",),
        "-0.1 is below the minimum >= 0",
    ),
    "label_smoothing_string": Case(
        score(P3, [0, 1, 2], label_smoothing="0.1"),
        ("label_smoothing",),
        "expected a number, got str",
        "float_type",
    ),
    "label_smoothing_bool": Case(
        score(P3, [0, 1, 2], label_smoothing=True),
        ("label_smoothing",),
        "expected a number, got bool",
        "float_type",
    ),
    "focal_gamma_negative": Case(
        score(P3, [0, 1, 2], focal_gamma=-1.0), ("focal_gamma",), "-1 is below the minimum >= 0"
    ),
    "focal_gamma_nan": Case(
        score(P3, [0, 1, 2], focal_gamma=NAN),
        ("focal_gamma",),
        "nan is not a finite number",
        "finite_number",
    ),
    "focal_alpha_above_1": Case(
        score(PB, [0, 1, 1], focal_alpha=1.5), ("focal_alpha",), "1.5 is above the maximum <= 1"
    ),
    "decision_threshold": Case(
        score(PB, decision_threshold=1.2), ("decision_threshold",), "1.2 is above the maximum <= 1"
    ),
    "clip_eps_zero": Case(score(PB, clip_eps=0.0), ("clip_eps",), "0 is below the minimum > 0"),
    "clip_eps_half": Case(score(PB, clip_eps=0.5), ("clip_eps",), "0.5 is above the maximum < 0.5"),
    "sum_tolerance": Case(
        score(P2, sum_tolerance=2.0), ("sum_tolerance",), "2 is above the maximum <= 1"
    ),
    "unknown_confidence": Case(
        score(P3, confidence="certainty"),
        ("confidence",),
        "'certainty' is not one of max_probability, margin, entropy, true_class",
        "enum",
    ),
    "true_class_without_labels": Case(
        score(P3, confidence="true_class"), ("confidence",), "'true_class' needs labels"
    ),
    "ignore_index_binary": Case(
        score(PB, [0, -100, -1], ignore_index=-100),
        ("labels", 2),
        "target -1 is outside [0, 1]",
    ),
    "ignore_index_dense": Case(
        score(P3, np.eye(3), ignore_index=-100),
        ("ignore_index",),
        "not for target distributions",
    ),
    "ignore_index_float": Case(
        score(P3, [0, 1, 2], ignore_index=1.0), ("ignore_index",), "expected an integer", "int_type"
    ),
    "ignore_index_bool": Case(
        score(P3, ignore_index=True), ("ignore_index",), "expected an integer", "int_type"
    ),
    # --- flag rules
    "flag_not_object": Case(
        score(P3, flag=0.5),
        ("flag",),
        "expected an object with min_confidence, max_loss, misclassified",
    ),
    "flag_unknown_rule": Case(
        score(P3, flag={"min_loss": 1.0}),
        ("flag", "min_loss"),
        "unknown flag rule",
        "extra_forbidden",
    ),
    "flag_misclassified_not_bool": Case(
        score(P3, [0, 1, 2], flag={"misclassified": 1}),
        ("flag", "misclassified"),
        "expected true or false",
        "bool_type",
    ),
    "flag_max_loss_needs_labels": Case(
        score(P3, flag={"max_loss": 1.0}), ("flag", "max_loss"), "this rule needs labels"
    ),
    "flag_misclassified_needs_labels": Case(
        score(P3, flag={"misclassified": True}), ("flag", "misclassified"), "this rule needs labels"
    ),
    # --- calibration
    "calibration_needs_labels": Case(calib(PB, None), ("labels",), "calibration needs labels"),
    "calibration_n_bins": Case(
        calib(PB, [0, 1, 1], n_bins=0), ("n_bins",), "expected an integer in [1, 10000], got 0"
    ),
    "calibration_n_bins_bool": Case(
        calib(PB, [0, 1, 1], n_bins=True),
        ("n_bins",),
        "expected an integer in [1, 10000], got True",
    ),
    "calibration_strategy": Case(
        calib(PB, [0, 1, 1], strategy="kmeans"),
        ("strategy",),
        "'kmeans' is not one of uniform, quantile",
        "enum",
    ),
    "calibration_multilabel": Case(
        calib(P2, [[0, 1], [1, 1], [0, 0]], task="multilabel"),
        ("task",),
        "calibration is for binary and multiclass tasks",
    ),
    "calibration_validates_predictions": Case(
        calib([[0.5, 0.6]], [0]), ("predictions", 0), "row sums to 1.1, expected 1 ± 0.0001"
    ),
    # --- sequences
    "sequence_empty": Case(
        seqs([[-0.1], []]), ("sequences", 1, "token_logprobs"), "empty sequence"
    ),
    "sequences_empty_batch": Case(seqs([]), ("sequences",), "empty batch"),
    "sequences_not_a_list": Case(seqs("abc"), ("sequences",), "expected a list of sequences"),
    "sequence_positive": Case(
        seqs([[-0.1, -0.2], [0.3]]),
        ("sequences", 1, "token_logprobs", 0),
        "log-prob 0.3 is positive, expected <= 0",
    ),
    "sequence_nan": Case(
        seqs([[-0.1], [-0.2, -0.3, NAN]]),
        ("sequences", 1, "token_logprobs", 2),
        "log-prob nan is not a finite number",
        "finite_number",
    ),
    "sequence_inf": Case(
        seqs([[-np.inf]]),
        ("sequences", 0, "token_logprobs", 0),
        "log-prob -inf is not a finite number",
        "finite_number",
    ),
    "sequence_2d": Case(
        seqs([[[-0.1, -0.2]]]),
        ("sequences", 0, "token_logprobs"),
        "expected a 1-D list of log-probs, got shape [1, 2]",
    ),
    "sequence_not_numbers": Case(
        seqs([["a", "b"]]),
        ("sequences", 0, "token_logprobs"),
        "expected a list of numbers",
        "float_type",
    ),
    "sequence_min_confidence": Case(
        seqs([[-0.1]], min_confidence=1.5),
        ("flag", "min_confidence"),
        "expected a number in [0, 1]",
    ),
    "sequence_min_token_probability": Case(
        seqs([[-0.1]], min_token_probability=-0.1),
        ("flag", "min_token_probability"),
        "expected a number in [0, 1]",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_input_error(name: str) -> None:
    case = CASES[name]
    with pytest.raises(xc.InputError) as info:
        case.call()
    err = info.value
    assert isinstance(err, ValueError)
    assert err.location == case.location
    assert case.message in err.reason, err.reason
    assert err.kind == case.kind
    assert str(err) == f"{format_location(case.location)}: {err.reason}"


@pytest.mark.parametrize(
    ("rule", "value", "message"),
    [
        ("min_confidence", 1.5, "1.5 is above the maximum <= 1"),
        ("min_confidence", -0.5, "-0.5 is below the minimum >= 0"),
        ("max_loss", -1.0, "-1 is below the minimum >= 0"),
    ],
)
def test_flag_rule_range_errors(rule: str, value: float, message: str) -> None:
    with pytest.raises(xc.InputError) as info:
        xc.score(P3, [0, 1, 2], flag={rule: value})
    assert info.value.location == ("flag", rule)
    assert message in info.value.reason
    assert str(info.value).startswith(f"flag.{rule}: ")


def test_flag_rule_range_errors_are_raised() -> None:
    """Whatever their location, out-of-range flag rules are rejected with the value shown."""
    for rule, value in (("min_confidence", 1.5), ("min_confidence", -0.5), ("max_loss", -1.0)):
        with pytest.raises(xc.InputError, match=f"{value:g}"):
            xc.score(P3, [0, 1, 2], flag={rule: value})


def test_message_names_field_and_index() -> None:
    """The contract's own example: ``predictions[12]: row sums to 0.87, expected 1 ± 0.0001``."""
    p = np.full((20, 2), 0.5)
    p[12] = [0.47, 0.4]
    with pytest.raises(xc.InputError) as info:
        xc.score(p)
    assert str(info.value) == "predictions[12]: row sums to 0.87, expected 1 ± 0.0001"


def test_first_offending_index_is_reported() -> None:
    p = np.full((10, 3), 1 / 3)
    p[4, 1] = np.nan
    p[7, 0] = np.nan
    with pytest.raises(xc.InputError) as info:
        xc.score(p)
    assert info.value.location == ("predictions", 4, 1)
    y = np.zeros(10, dtype=np.int64)
    y[[3, 8]] = [5, 9]
    with pytest.raises(xc.InputError) as info:
        xc.score(np.full((10, 3), 1 / 3), y)
    assert info.value.location == ("labels", 3)


def test_valid_edge_inputs_are_accepted() -> None:
    """Things that look odd but are valid: no error."""
    # an ignore_index outside [0, K) (torch's -100) and inside
    xc.score(P3, [-100, 1, 2], ignore_index=-100)
    xc.score(P3, [0, 1, 2], ignore_index=1)
    # labels as floats with integral values, any integer dtype
    xc.score(P3, [0.0, 1.0, 2.0])
    xc.score(P3, np.array([0, 1, 2], dtype=np.uint8))
    # float16 and integer predictions
    xc.score(np.array(P3, dtype=np.float16), [0, 1, 2], sum_tolerance=1e-2)
    xc.score(np.array([[1, 0], [0, 1]]), [0, 1])
    # rows off by less than the tolerance; label_smoothing and decision_threshold at the bounds
    xc.score([[0.5, 0.50009]], [0])
    xc.score(P3, [0, 1, 2], label_smoothing=1.0)
    xc.score(PB, decision_threshold=0.0)
    # lists of numpy scalars and tuples
    xc.score((np.float64(0.3), np.float32(0.6)), (0, 1))
    # multilabel with K = 1
    xc.score([[0.3], [0.9]], [[0], [1]], task="multilabel")


@pytest.mark.parametrize("bad", [None, "x", 1.5])
def test_input_error_for_non_numeric_n_bins(bad: Any) -> None:
    with pytest.raises(xc.InputError) as info:
        xc.calibration(PB, [0, 1, 1], n_bins=bad)
    assert info.value.location == ("n_bins",)


# --- hints: appended to the message when the mistake is recognisable ------------------------

LOGITS = np.array([[2.1, -0.7, 0.3], [-1.2, 0.4, 3.3], [0.5, 1.9, -2.4], [-0.1, -1.5, 2.2]])


def reason(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(xc.InputError) as info:
        xc.score(*args, **kwargs)
    return info.value.reason


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        # logits given as probabilities: multiclass, binary, multilabel, float32
        (score(LOGITS), "probability 2.1 is outside [0, 1]" + LOGITS_HINT),
        (score(LOGITS[:, 0]), "probability 2.1 is outside [0, 1]" + LOGITS_HINT),
        (score(LOGITS, task="multilabel"), "probability 2.1 is outside [0, 1]" + LOGITS_HINT),
        (score(LOGITS.astype(np.float32)), "is outside [0, 1]" + LOGITS_HINT),
        # logits given as log-probabilities
        (
            score(LOGITS, input_type="log_probabilities"),
            "log-probability 2.1 is positive, expected <= 0" + LOGITS_HINT,
        ),
        (
            score(LOGITS[:, 0], input_type="log_probabilities"),
            "is positive, expected <= 0" + LOGITS_HINT,
        ),
        # log-probabilities given as probabilities (multiclass rows with logsumexp 0)
        (
            score(np.log([[0.2, 0.8], [0.5, 0.5]])),
            "probability -1.60944 is outside [0, 1]" + LOG_PROBABILITIES_HINT,
        ),
        # probabilities given as log-probabilities
        (
            score([[0.2, 0.8], [0.5, 0.5]], input_type="log_probabilities"),
            "log-probability 0.2 is positive, expected <= 0" + PROBABILITIES_HINT,
        ),
        (
            score(PB, input_type="log_probabilities"),
            "is positive, expected <= 0" + PROBABILITIES_HINT,
        ),
        # independent probabilities without task
        (
            score([[0.9, 0.8, 0.1], [0.3, 0.2, 0.9], [0.5, 0.5, 0.0]]),
            "row sums to 1.8, expected 1 ± 0.0001" + MULTILABEL_HINT,
        ),
        (score([[0.5, 0.3]]), "row sums to 0.8, expected 1 ± 0.0001" + MULTILABEL_HINT),
    ],
)
def test_hint(call: Callable[[], object], expected: str) -> None:
    with pytest.raises(xc.InputError) as info:
        call()
    assert info.value.reason.endswith(expected), info.value.reason
    assert info.value.reason.count(";") == 1  # one hint, after the unchanged message


@pytest.mark.parametrize(
    "call",
    [
        # rounding: one value just above 1 (shown with every digit), or just below 0
        score([0.2, 1.0000001, 0.7]),
        score([[0.5, 0.5], [1.0000001, 0.0]]),
        score(np.array([-1e-7, 1.0000001, 0.5, 0.3]), task="binary"),
        score([[-1e-7, 1.0000001]]),
        # a damaged probability row still sums to 1: not logits
        score([[0.2, 0.8], [1.2, -0.2]]),
        # a few stray values among many probabilities: not logits
        score(np.r_[np.full(100, 0.5), -3.0, 4.0]),
        # only one side out of range (percentages, or all-negative binary scores)
        score([[30.0, 50.0, 20.0]]),
        score([-0.5, -2.0, -0.1]),
        # log-probability rows that do not sum to 1 in probability: no log-probability hint
        score([[-0.1, -0.2], [-0.5, -0.5]]),
        # log-probabilities: rounding just above 0; a value in [0, 1] with negatives
        score([[-1e-9, 1e-9]], input_type="log_probabilities"),
        score([[-0.1, 0.005]], input_type="log_probabilities"),
        # probabilities given as log-probs, but multiclass rows that do not sum to 1
        score([[0.2, 0.3]], input_type="log_probabilities"),
        # one damaged row among good ones; float16-style rounding; an explicit task
        score([[0.5, 0.5], [0.47, 0.4]]),
        score([[0.5, 0.501], [0.4, 0.601], [0.3, 0.701]]),
        score([[0.9, 0.8, 0.1], [0.3, 0.2, 0.9]], task="multiclass"),
        # renormalize, logits: never a hint
        score([[0.5, 0.5], [0.0, 0.0]], renormalize=True),
    ],
)
def test_no_hint(call: Callable[[], object]) -> None:
    with pytest.raises(xc.InputError) as info:
        call()
    assert ";" not in info.value.reason, info.value.reason
    assert "look like" not in info.value.reason and "multilabel" not in info.value.reason


def test_rounding_above_one_shows_every_digit() -> None:
    """A probability of 1.0000001 is not shown as "1" (which would read as inside [0, 1])."""
    assert reason([0.2, 1.0000001]) == "probability 1.0000001 is outside [0, 1]"
    f32 = np.array([0.2, 1.0000001], dtype=np.float32)
    assert reason(f32) == "probability 1.0000001 is outside [0, 1]"
    assert reason([0.2, 1.5]) == "probability 1.5 is outside [0, 1]"


def test_hints_over_many_rows() -> None:
    """Multilabel rows: the hint fires though some rows happen to sum to 1; one bad row among
    good multiclass rows gets none; logits of a confident binary model (mostly negative)."""
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(1000, 5))
    p[::10] = [0.6, 0.4, 0.0, 0.0, 0.0]  # a tenth of the rows sum to 1
    assert reason(p).endswith(MULTILABEL_HINT)
    q = np.full((1000, 4), 0.25)
    q[500] = [0.5, 0.5, 0.5, 0.5]
    assert reason(q) == "row sums to 2, expected 1 ± 0.0001"
    z = np.r_[rng.normal(-6, 1, 990), rng.normal(3, 1, 10)]
    assert reason(z).endswith(LOGITS_HINT)


@pytest.mark.parametrize(
    ("value", "task", "shape"),
    [
        (np.zeros((2, 3, 4)), None, "(2, 3, 4)"),
        (np.zeros((2, 3, 4)), "binary", "(2, 3, 4)"),
        (np.zeros((2, 3, 4)), "multiclass", "(2, 3, 4)"),
        (np.zeros((2, 3, 4, 1)), "multilabel", "(2, 3, 4, 1)"),
        ([[[0.5, 0.5]]], None, "(1, 1, 2)"),
        (0.5, None, "()"),
        (np.float32(0.5), "binary", "()"),
    ],
)
def test_predictions_of_another_rank(value: Any, task: str | None, shape: str) -> None:
    with pytest.raises(xc.InputError) as info:
        xc.score(value, task=task)
    assert info.value.location == ("predictions",)
    assert str(info.value) == f"predictions: expected N or N x K, got shape {shape}"
