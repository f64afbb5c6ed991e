"""One options object from the caller to the kernels: ``ScoreOptions`` raw in, checked out."""

from __future__ import annotations

import inspect
from dataclasses import fields

import numpy as np
import pytest

import xentcore as xc
from xentcore import binary, multiclass
from xentcore.types import DEFAULT_EPS, ScoreOptions
from xentcore.validate import DEFAULT_EPS as VALIDATE_EPS
from xentcore.validate import Batch, check_batch


def test_score_parameters_are_the_options_fields() -> None:
    """``score`` builds its ScoreOptions from its own parameters, by name."""
    params = inspect.signature(xc.score).parameters
    keyword = [
        name
        for name, p in params.items()
        if p.kind is p.KEYWORD_ONLY and name not in ("flag", "threads")
    ]
    assert sorted(keyword) == sorted(f.name for f in fields(ScoreOptions))
    for f in fields(ScoreOptions):  # the same defaults
        assert params[f.name].default == f.default, f.name


def test_default_eps_is_still_exported_by_validate() -> None:
    assert VALIDATE_EPS == DEFAULT_EPS


def test_check_batch_returns_the_checked_copy() -> None:
    raw = ScoreOptions(
        class_weights=[1, 2, 3],
        sample_weights=(1, 1),
        label_smoothing=0,
        decision_threshold=1,
        class_names=["a", "b", "c"],
        renormalize=0,
        sum_tolerance=1e-3,
    )
    b = check_batch([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], ["a", "c"], raw)
    o = b.options
    assert isinstance(b, Batch) and o is not raw
    assert b.task == o.task == "multiclass" and b.input_type == "probabilities"
    assert o.class_weights.dtype == np.float64 and o.class_weights.tolist() == [1.0, 2.0, 3.0]
    assert o.sample_weights.dtype == np.float64
    assert type(o.label_smoothing) is float and type(o.decision_threshold) is float
    assert o.renormalize is False and o.sum_tolerance == 1e-3
    assert o.class_names == b.class_names == ("a", "b", "c")
    assert raw.task is None and raw.class_weights == [1, 2, 3]  # the raw object is untouched
    assert (b.n_items, b.n_classes) == (2, 3)
    assert b.labels is not None and b.labels.index.tolist() == [0, 2]


def test_check_batch_errors_come_in_the_documented_order() -> None:
    # input_type first, then sum_tolerance, then predictions, then the other options
    bad = ScoreOptions(input_type="nope", sum_tolerance=-1, clip_eps=2)  # type: ignore[arg-type]
    with pytest.raises(xc.InputError) as err:
        check_batch([[0.5, 0.5]], [0], bad)
    assert err.value.location == ("input_type",)
    with pytest.raises(xc.InputError) as err:
        check_batch([[0.5, 0.6]], [0], ScoreOptions(sum_tolerance=-1, clip_eps=2))
    assert err.value.location == ("sum_tolerance",)
    with pytest.raises(xc.InputError) as err:
        check_batch([[0.5, 0.6]], [0], ScoreOptions(clip_eps=2))
    assert err.value.location == ("predictions", 0)
    with pytest.raises(xc.InputError) as err:
        check_batch([[0.5, 0.5]], [7], ScoreOptions(clip_eps=2))
    assert err.value.location == ("labels", 0)
    with pytest.raises(xc.InputError) as err:
        check_batch([[0.5, 0.5]], [0], ScoreOptions(clip_eps=2))
    assert err.value.location == ("clip_eps",)


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_binary_sweep_reads_the_options(task: str) -> None:
    rng = np.random.default_rng(5)
    shape = (40,) if task == "binary" else (40, 3)
    z = rng.normal(size=shape) * 3
    y = (rng.random(shape) < 0.5).astype(float)
    opts = {"pos_weight": 2.0, "label_smoothing": 0.1, "focal_gamma": 1.5, "focal_alpha": 0.3}
    r = xc.score(z, y, task=task, input_type="logits", confidence="entropy", **opts)
    b = check_batch(
        z, y, ScoreOptions(task=task, input_type="logits", confidence="entropy", **opts)
    )  # type: ignore[arg-type]
    assert b.labels is not None
    st = binary.sweep(b.x, b.options, target=b.labels.target, truth=b.labels.true_class)
    assert st.loss is not None
    np.testing.assert_array_equal(st.loss, r.item_loss)
    np.testing.assert_array_equal(st.confidence, r.confidence)
    np.testing.assert_array_equal(st.predicted, r.predicted_index)
    assert (st.top_confidence is None) == (task == "multilabel")


def test_multiclass_sweep_reads_the_options() -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(size=(50, 4))
    y = rng.integers(0, 4, 50)
    w = [0.5, 1.0, 2.0, 1.5]
    r = xc.score(z, y, input_type="logits", class_weights=w, focal_gamma=2.0, confidence="margin")
    o = ScoreOptions(
        task="multiclass",
        input_type="logits",
        class_weights=np.array(w),
        focal_gamma=2.0,
        confidence="margin",
    )
    st = multiclass.sweep(z, o, index=y)
    assert st.loss is not None
    np.testing.assert_array_equal(st.loss, r.item_loss)
    np.testing.assert_array_equal(st.confidence, r.confidence)


def test_score_result_is_frozen() -> None:
    r = xc.score([0.45, 0.9], [0, 1], flag={"min_confidence": 0.6})
    with pytest.raises(AttributeError):
        r.loss_mean = 0.0  # type: ignore[misc]
    assert r.reasons == [["low_confidence"], []]  # cached properties still work


@pytest.mark.parametrize(
    ("predictions", "eps"),
    [
        (np.array([0.2, 0.9], dtype=np.float64), float(np.finfo(np.float64).eps)),
        (np.array([0.2, 0.9], dtype=np.float32), float(np.finfo(np.float32).eps)),
        (np.array([0.2, 0.9], dtype=np.float16), float(np.finfo(np.float16).eps)),
        (np.array([0.2, 0.9], dtype=np.longdouble), float(np.finfo(np.float64).eps)),
        (np.array([0, 1]), float(np.finfo(np.float64).eps)),
        ([0.2, 0.9], float(np.finfo(np.float64).eps)),
    ],
)
def test_clip_eps_dtype_is_resolved_in_the_checked_copy(predictions: object, eps: float) -> None:
    """``"dtype"`` follows the predictions as given (float16 before its widening to float32),
    as scikit-learn's ``log_loss``; the checked copy holds the float every reader uses."""
    b = check_batch(predictions, None, ScoreOptions(clip_eps="dtype"))
    assert type(b.options.clip_eps) is float and b.options.clip_eps == eps


def test_per_class_options_in_the_checked_copy() -> None:
    raw = ScoreOptions(class_weights=(1, 3), focal_alpha=0.25, ignore_index=-100)
    b = check_batch([0.2, 0.9, 0.5], [0, 1, -100], raw)
    o = b.options
    assert o.class_weights.dtype == np.float64 and o.class_weights.tolist() == [1.0, 3.0]
    assert type(o.focal_alpha) is float and o.ignore_index == -100
    assert b.labels is not None and b.labels.scored is not None
    assert b.labels.scored.tolist() == [True, True, False]
    assert b.labels.target is not None and b.labels.target.tolist() == [0.0, 1.0, 0.0]
    raw = ScoreOptions(task="multilabel", class_weights=[1, 2], focal_alpha=[0.1, 0.9])
    o = check_batch([[0.2, 0.9]], [[0, 1]], raw).options
    assert o.focal_alpha.dtype == np.float64 and o.focal_alpha.tolist() == [0.1, 0.9]
    assert o.class_weights.tolist() == [1.0, 2.0]
    assert raw.focal_alpha == [0.1, 0.9]  # the raw object is untouched


def test_per_class_alpha_takes_the_general_multiclass_path() -> None:
    """The fused logits kernel takes scalar options only: a per-class alpha is scored by the
    numpy path, and equals the per-class weighting of the plain loss there."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    alpha = np.array([0.5, 1.0, 2.0])
    r = xc.score(z, y, input_type="logits", focal_alpha=alpha)
    plain = xc.score(z, y, input_type="logits")
    assert r.item_loss is not None and plain.item_loss is not None
    np.testing.assert_allclose(r.item_loss, alpha[y] * plain.item_loss, rtol=1e-6)
