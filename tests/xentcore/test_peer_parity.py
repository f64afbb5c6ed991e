"""Peer parity of the options of issue 18, each checked against the peer.

* per-class ``class_weights`` of binary and multilabel tasks (torch's BCE ``weight``), per-class
  ``focal_alpha`` (Keras' focal losses, torchvision's ``sigmoid_focal_loss`` per column) and
  ``ignore_index`` of binary and multilabel labels: against ``tests/golden/peer_golden.npz``,
  written by ``tests/golden/make_peer_golden.py`` from torch 2.13 and Keras 3.15 (neither is
  imported here);
* ``clip_eps="dtype"``: against scikit-learn's ``log_loss``, live;
* negative weights and target rows that do not sum to 1: rejected (torch would take both as
  given), with the field and the index.

Tolerances are those of ``test_torch_golden.py``: float64 inputs at rtol 1e-10, float32 inputs
(against torch's float64 result on the same values) at the contract's 1e-6; Keras'
``binary_focal_crossentropy`` at 5e-7, the float32 rounding of its final mean (the same
per-class alpha is checked at 1e-10 against torchvision's formula, column by column).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import log_loss

import xentcore as xc
from xentcore import binary
from xentcore.types import ScoreOptions
from xentcore.validate.labels import check_labels
from xentcore.validate.options import check_options

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "peer_golden.npz"
RTOL32, RTOL64, ATOL = 1e-6, 1e-10, 1e-12
F64 = npt.NDArray[np.float64]


@cache
def _golden() -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    with np.load(GOLDEN, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("manifest"))), arrays


def _cases(*, multilabel_ignore: bool = False) -> list[str]:
    cases = _golden()[0]["cases"]
    return sorted(
        name for name, case in cases.items() if _is_multilabel_ignore(case) == multilabel_ignore
    )


def _is_multilabel_ignore(case: dict[str, Any]) -> bool:
    return case["task"] == "multilabel" and case["opts"].get("ignore_index") is not None


def _load(
    name: str,
) -> tuple[dict[str, Any], npt.NDArray[Any], npt.NDArray[Any], F64, float, float]:
    meta, arrays = _golden()
    case = meta["cases"][name]
    x = arrays[case["x"]]
    if case["dtype"] == "float32":
        x32 = x.astype(np.float32)
        assert np.array_equal(x32.astype(np.float64), x)
        x = x32
    item = arrays[f"{name}__item"]
    return (
        case,
        x,
        arrays[case["y"]],
        item,
        float(arrays[f"{name}__mean"]),
        float(arrays[f"{name}__sum"]),
    )


def _opts(case: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in case["opts"].items() if value is not None}


#: Keras' torch backend takes ``ops.mean`` in float32 whatever the input (``binary_focal_
#: crossentropy`` ends with a mean over the columns): its items carry float32 rounding.
RTOL_KERAS_MEAN = 5e-7


def _rtol(case: dict[str, Any]) -> float:
    if case["kind"] == "keras_binary_focal":
        return RTOL_KERAS_MEAN
    return RTOL32 if case["dtype"] == "float32" else RTOL64


def test_golden_file_covers_every_peer() -> None:
    meta, _ = _golden()
    assert meta["torch"].startswith("2.13") and meta["keras"].startswith("3.")
    kinds = {c["kind"] for c in meta["cases"].values()}
    assert kinds == {
        "bce_weight",
        "ce2_weight",
        "focal_binary_weight",
        "keras_binary_focal",
        "keras_categorical_focal",
        "focal_multiclass_alpha",
        "bce_ignore",
    }
    assert GOLDEN.stat().st_size < 500_000


@pytest.mark.parametrize("name", _cases())
def test_matches_the_peer(name: str) -> None:
    case, x, y, item, mean, total = _load(name)
    r = xc.score(x, y, task=case["task"], flag={}, **_opts(case))
    assert r.item_loss is not None and r.loss_mean is not None and r.loss_sum is not None
    rtol = _rtol(case)
    scored = ~np.isnan(item)
    assert np.array_equal(np.isnan(r.item_loss), ~scored)  # no loss exactly where none
    np.testing.assert_allclose(r.item_loss[scored], item[scored], rtol=rtol, atol=ATOL)
    np.testing.assert_allclose(r.loss_sum, total, rtol=rtol, atol=ATOL)
    np.testing.assert_allclose(r.loss_mean, mean, rtol=rtol, atol=ATOL)
    assert r.n_scored == int(scored.sum())


def _twins() -> list[str]:
    meta, _ = _golden()
    return sorted(
        name
        for name, case in meta["cases"].items()
        if case["task"] == "binary" and case["opts"]["input_type"] == "logits"
    )


@pytest.mark.parametrize("input_type", ["probabilities", "log_probabilities"])
@pytest.mark.parametrize("name", _twins())
def test_binary_probability_inputs_match_the_peer(name: str, input_type: str) -> None:
    """The same figures from sigmoid(z) (or log sigmoid(z)): moderate logits, nothing clipped."""
    case, x, y, item, mean, total = _load(name)
    z = x.astype(np.float64)
    pred = -np.logaddexp(0.0, -z) if input_type == "log_probabilities" else 1 / (1 + np.exp(-z))
    opts = {**_opts(case), "input_type": input_type}
    r = xc.score(pred, y, task="binary", flag={}, **opts)
    assert r.item_loss is not None and r.loss_mean is not None
    assert not any("clipped" in w for w in r.warnings)
    scored = ~np.isnan(item)
    np.testing.assert_allclose(r.item_loss[scored], item[scored], rtol=1e-9, atol=ATOL)
    np.testing.assert_allclose(r.loss_mean, mean, rtol=1e-9)
    np.testing.assert_allclose(r.loss_sum, total, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# multilabel ignore_index: the kernel, then the whole score, against torch


@pytest.mark.parametrize("name", _cases(multilabel_ignore=True))
def test_multilabel_ignored_entries_match_torch_in_the_kernel(name: str) -> None:
    case, x, y, item, mean, total = _load(name)
    opts = _opts(case)
    n, k = x.shape
    lab = check_labels(
        y, "multilabel", (n, k), ignore_index=opts["ignore_index"], names=None, tol=1e-4
    )
    assert lab.entries_scored is not None and np.array_equal(lab.entries_scored, y != -100)
    assert lab.scored is not None and np.array_equal(lab.scored, ~np.isnan(item))
    assert not lab.true_class[~lab.entries_scored].any()  # an ignored entry is not in the set
    raw = ScoreOptions(task="multilabel", **{k: v for k, v in opts.items() if k != "ignore_index"})
    o = check_options(
        raw,
        "multilabel",
        (n, k),
        input_type="logits",
        sum_tolerance=1e-4,
        ignore_index=opts["ignore_index"],
        class_names=None,
    )
    st = binary.sweep(
        x, o, target=lab.target, truth=lab.true_class, entries_scored=lab.entries_scored
    )
    assert st.loss is not None
    scored = lab.scored
    assert np.isnan(st.loss[~scored]).all()
    np.testing.assert_allclose(st.loss[scored], item[scored], rtol=RTOL64, atol=ATOL)
    np.testing.assert_allclose(st.loss[scored].sum(), total, rtol=RTOL64)
    np.testing.assert_allclose(st.loss[scored].mean(), mean, rtol=RTOL64)


def test_multilabel_true_class_confidence_reads_scored_entries_only() -> None:
    p = np.array([[0.9, 0.2, 0.6], [0.3, 0.4, 0.8]])
    y = np.array([[1, -1, 0], [-1, -1, -1]])
    lab = check_labels(y, "multilabel", (2, 3), ignore_index=-1, names=None, tol=1e-4)
    o = ScoreOptions(task="multilabel", confidence="true_class")
    o = check_options(
        o, "multilabel", (2, 3), input_type="probabilities", sum_tolerance=1e-4,
        ignore_index=-1, class_names=None,
    )  # fmt: skip
    st = binary.sweep(
        p, o, target=lab.target, truth=lab.true_class, entries_scored=lab.entries_scored
    )
    assert st.confidence[0] == pytest.approx(0.4)  # min(0.9, 1 - 0.6); the ignored 0.2 not read
    assert np.isnan(st.confidence[1])


@pytest.mark.parametrize("name", _cases(multilabel_ignore=True))
def test_multilabel_ignored_entries_match_torch(name: str) -> None:
    case, x, y, item, mean, total = _load(name)
    r = xc.score(x, y, task="multilabel", flag={}, **_opts(case))
    assert r.item_loss is not None and r.loss_mean is not None and r.loss_sum is not None
    scored = ~np.isnan(item)
    assert np.array_equal(np.isnan(r.item_loss), ~scored)
    np.testing.assert_allclose(r.item_loss[scored], item[scored], rtol=RTOL64, atol=ATOL)
    np.testing.assert_allclose(r.loss_sum, total, rtol=RTOL64)
    np.testing.assert_allclose(r.loss_mean, mean, rtol=RTOL64)
    assert r.n_scored == int(scored.sum())


def test_multilabel_ignored_entries_never_make_an_item_wrong() -> None:
    p = np.array([[0.9, 0.2, 0.6], [0.3, 0.4, 0.8], [0.7, 0.7, 0.7]])
    y = np.array([[1, 1, -1], [-1, -1, -1], [1, -1, 0]])
    r = xc.score(p, y, task="multilabel", ignore_index=-1, flag={"misclassified": True})
    assert r.n_scored == 2 and r.scored is not None and r.scored.tolist() == [True, False, True]
    assert r.correct is not None and r.correct.tolist() == [False, True, False]
    assert r.accuracy == 0.0  # item 0: class 1 predicted 0; item 2: class 2 predicted 1
    assert r.reasons == [["misclassified"], [], ["misclassified"]]
    r = xc.score(p[:1], [[1, 0, -1]], task="multilabel", ignore_index=-1)
    assert r.accuracy == 1.0  # the ignored third entry (predicted 1) is not judged
    assert r.item_loss is not None
    assert r.item_loss[0] == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2, rel=1e-14)


def test_multilabel_items_with_ignored_entries_are_kept_unlabelled() -> None:
    from xentcore.keep import keep_batch
    from xentcore.score import score_batch
    from xentcore.validate import check_batch, check_flag_rules

    p = np.array([[0.9, 0.2], [0.3, 0.4]])
    y = np.array([[1, 0], [1, -1]])
    b = check_batch(p, y, ScoreOptions(task="multilabel", ignore_index=-1))
    r = score_batch(b, check_flag_rules({}))
    kept = keep_batch(b, r, np.zeros(2, dtype=bool), max_classes=10)
    assert kept.labeled.tolist() == [True, False]


# ---------------------------------------------------------------------------------------------
# binary and multilabel class weights: the reduction


def test_binary_class_weights_mean_divides_by_items_not_weights() -> None:
    """API.md section 2: v_i = w_{y_i} only for class-index multiclass labels; a binary
    batch's mean divides by N, as torch's ``BCELoss(weight=w[y])`` (and its probability-target
    ``cross_entropy``), where a multiclass K = 2 batch with class indices divides by sum w_y."""
    p = np.array([0.8, 0.3, 0.6, 0.1])
    y = np.array([1, 0, 0, 1])
    w = np.array([0.5, 3.0])
    r = xc.score(p, y, class_weights=w)
    plain = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert r.item_loss is not None
    np.testing.assert_allclose(r.item_loss, w[y] * plain, rtol=1e-14)
    assert r.loss_mean == pytest.approx((w[y] * plain).sum() / 4, rel=1e-14)
    rm = xc.score(np.stack([1 - p, p], axis=1), y, class_weights=w)
    np.testing.assert_allclose(rm.item_loss, r.item_loss, rtol=1e-14)
    assert rm.loss_mean == pytest.approx((w[y] * plain).sum() / w[y].sum(), rel=1e-14)


def test_multilabel_class_weights_mean_is_torchs_element_mean() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, size=(6, 3))
    y = rng.integers(0, 2, size=(6, 3))
    w = np.array([0.2, 1.0, 4.0])
    r = xc.score(p, y, task="multilabel", class_weights=w)
    elements = -w * (y * np.log(p) + (1 - y) * np.log(1 - p))
    assert r.loss_mean == pytest.approx(elements.mean(), rel=1e-14)  # sum over N K / (N K)
    assert r.loss_sum == pytest.approx(elements.mean(axis=1).sum(), rel=1e-14)


def test_binary_class_weights_equal_ones_change_nothing() -> None:
    p, y = [0.8, 0.3, 0.6], [1, 0, 0.4]
    a, b = xc.score(p, y), xc.score(p, y, class_weights=[1.0, 1.0])
    assert a.item_loss is not None and b.item_loss is not None
    np.testing.assert_array_equal(a.item_loss, b.item_loss)


# ---------------------------------------------------------------------------------------------
# focal_alpha: one per class


def test_multiclass_equal_alphas_are_the_scalar_alpha() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(30, 4))
    y = rng.integers(0, 4, size=30)
    a = xc.score(z, y, input_type="logits", focal_gamma=2.0, focal_alpha=0.3)
    b = xc.score(z, y, input_type="logits", focal_gamma=2.0, focal_alpha=[0.3] * 4)
    assert a.item_loss is not None and b.item_loss is not None
    np.testing.assert_allclose(b.item_loss, a.item_loss, rtol=1e-14)
    assert b.loss_mean == pytest.approx(a.loss_mean, rel=1e-14)


def test_multiclass_alpha_without_focal_term_weighs_the_label_class() -> None:
    """gamma = 0, class indices: alpha_y (-log p_y), and (unlike class_weights) the mean still
    divides by N (Keras' reduction)."""
    z = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    y = np.array([0, 1, 2])
    alpha = np.array([0.5, 2.0, 1.5])
    r = xc.score(z, y, input_type="logits", focal_alpha=alpha)
    plain = xc.score(z, y, input_type="logits")
    assert r.item_loss is not None and plain.item_loss is not None
    np.testing.assert_allclose(r.item_loss, alpha[y] * plain.item_loss, rtol=1e-14)
    assert r.loss_mean == pytest.approx((alpha[y] * plain.item_loss).mean(), rel=1e-14)


def test_multilabel_equal_alphas_are_the_scalar_alpha() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(20, 3)) * 2
    y = rng.integers(0, 2, size=(20, 3))
    opts: dict[str, Any] = {"task": "multilabel", "input_type": "logits", "focal_gamma": 1.5}
    a = xc.score(z, y, focal_alpha=0.7, **opts)
    b = xc.score(z, y, focal_alpha=[0.7, 0.7, 0.7], **opts)
    assert a.item_loss is not None and b.item_loss is not None
    np.testing.assert_allclose(b.item_loss, a.item_loss, rtol=1e-14)


@pytest.mark.parametrize(
    ("call", "location", "message"),
    [
        (
            lambda: xc.score([0.2, 0.9], [0, 1], focal_alpha=[0.25, 0.75]),
            ("focal_alpha",),
            "expected a number for a binary task",
        ),
        (
            lambda: xc.score([[0.2, 0.8]], [1], focal_alpha=[0.25, 0.5, 1.0]),
            ("focal_alpha",),
            "expected 2 numbers (one per class), got shape [3]",
        ),
        (
            lambda: xc.score([[0.2, 0.8]], [1], focal_alpha=[0.25, -0.5]),
            ("focal_alpha", 1),
            "-0.5 is negative, expected >= 0",
        ),
        (
            lambda: xc.score([[0.2, 0.8]], [[0, 1]], task="multilabel", focal_alpha=[0.25, 1.5]),
            ("focal_alpha", 1),
            "1.5 is above the maximum <= 1",
        ),
    ],
)
def test_focal_alpha_errors(call: Any, location: tuple[Any, ...], message: str) -> None:
    with pytest.raises(xc.InputError) as err:
        call()
    assert err.value.location == location
    assert message in str(err.value)


def test_multiclass_alpha_above_one_is_kerass_inverse_frequency() -> None:
    r = xc.score([[0.2, 0.8]], [1], focal_alpha=[4.0, 0.5], focal_gamma=2.0)
    assert r.item_loss is not None
    assert r.item_loss[0] == pytest.approx(-0.5 * 0.2**2 * np.log(0.8), rel=1e-14)


# ---------------------------------------------------------------------------------------------
# binary ignore_index


def test_binary_ignored_items_have_no_loss_and_no_verdict() -> None:
    p = np.array([0.9, 0.2, 0.6, 0.4])
    y = np.array([1, -100, 0, -100])
    r = xc.score(
        p,
        y,
        ignore_index=-100,
        confidence="true_class",
        flag={"misclassified": True, "max_loss": 0.0},
    )
    assert r.item_loss is not None
    assert np.isnan(r.item_loss[[1, 3]]).all()
    assert r.n_scored == 2 and r.accuracy == 0.5
    assert r.loss_mean == pytest.approx(-(np.log(0.9) + np.log(0.4)) / 2, rel=1e-14)
    assert r.true_class is not None and r.true_class.tolist() == [1, -1, 0, -1]
    assert np.isnan(r.confidence[[1, 3]]).all()
    assert r.reasons[1] == [] and r.reasons[3] == []  # never high_loss nor misclassified


def test_binary_ignore_index_in_range_and_all_ignored() -> None:
    r = xc.score([0.9, 0.2, 0.6], [1, 0, 0], ignore_index=0)
    assert r.n_scored == 1 and r.loss_mean == pytest.approx(-np.log(0.9), rel=1e-14)
    r = xc.score([0.9, 0.2], [-1, -1], ignore_index=-1)
    assert r.n_scored == 0 and r.loss_mean is None and r.loss_sum == 0.0


def test_binary_ignore_index_with_soft_targets_and_sample_weights() -> None:
    p = np.array([0.9, 0.2, 0.6])
    y = np.array([0.7, -100.0, 0.1])
    s = np.array([2.0, 5.0, 1.0])
    r = xc.score(p, y, ignore_index=-100, sample_weights=s)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    keep = [0, 2]
    assert r.loss_mean == pytest.approx((s[keep] * loss[keep]).sum() / s[keep].sum(), rel=1e-14)
    assert log_loss([1, 0], [0.9, 0.6], sample_weight=[2.0, 1.0]) == pytest.approx(
        xc.score([0.9, 0.2, 0.6], [1, -100, 0], ignore_index=-100, sample_weights=s).loss_mean,
        rel=1e-12,
    )


def test_binary_label_outside_unit_interval_is_still_an_error() -> None:
    with pytest.raises(xc.InputError) as err:
        xc.score([0.9, 0.2, 0.6], [1, -100, -1], ignore_index=-100)
    assert err.value.location == ("labels", 2)
    assert "target -1 is outside [0, 1]" in str(err.value)


def test_binary_names_are_never_ignored() -> None:
    r = xc.score([0.9, 0.2], ["yes", "no"], class_names=["no", "yes"], ignore_index=0)
    assert r.n_scored == 2


def test_ignore_index_refused_for_target_distributions() -> None:
    with pytest.raises(xc.InputError) as err:
        xc.score([[0.2, 0.8]], [[0.0, 1.0]], ignore_index=-100)
    assert err.value.location == ("ignore_index",)
    assert "not for target distributions" in str(err.value)


# ---------------------------------------------------------------------------------------------
# clip_eps="dtype": scikit-learn's log_loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_clip_eps_dtype_matches_sklearn_binary(dtype: Any) -> None:
    rng = np.random.default_rng(6)
    p = rng.uniform(0.0, 1.0, size=200)
    p[:5] = [0.0, 1.0, 0.0, 1.0, 1e-9]  # wrong, certain predictions: the clip decides the loss
    y = (rng.uniform(size=200) < 0.5).astype(np.int64)
    y[:5] = [1, 0, 0, 1, 1]
    px = p.astype(dtype)
    r = xc.score(px, y, clip_eps="dtype")
    rel = 1e-12 if dtype == np.float64 else (1e-6 if dtype == np.float32 else 2e-3)
    assert r.loss_mean == pytest.approx(log_loss(y, px), rel=rel)
    eps = float(np.finfo(dtype).eps)
    assert f"(eps = {eps:.6g})" in r.warnings[0]


def test_clip_eps_dtype_of_float32_costs_what_sklearn_says() -> None:
    """REFERENCES.md: a wrong 0/1 prediction costs 15.94 in float32, 36.04 in float64."""
    p32 = np.array([0.0], dtype=np.float32)
    r32 = xc.score(p32, [1], clip_eps="dtype")
    assert r32.loss_sum == pytest.approx(-np.log(float(np.finfo(np.float32).eps)), rel=1e-12)
    assert round(r32.loss_sum, 2) == 15.94
    assert round(xc.score([0.0], [1], clip_eps="dtype").loss_sum, 2) == 36.04  # a list: float64
    assert round(xc.score(p32, [1]).loss_sum, 2) == 36.04  # the default stays float64's eps


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_eps_dtype_matches_sklearn_multiclass(dtype: Any) -> None:
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.full(4, 0.5), size=300)
    p[:4] = np.eye(4)[[1, 2, 3, 0]]  # certain and wrong
    px = p.astype(dtype)
    y = rng.integers(0, 4, size=300)
    y[:4] = [0, 1, 2, 3]
    s = rng.uniform(0.0, 2.0, size=300)
    r = xc.score(px, y, clip_eps="dtype", sample_weights=s)
    rel = 1e-12 if dtype == np.float64 else 1e-6
    assert r.loss_mean == pytest.approx(log_loss(y, px, sample_weight=s, labels=range(4)), rel=rel)


def test_clip_eps_dtype_of_integer_predictions_is_float64s() -> None:
    r = xc.score(np.array([0, 1]), [1, 1], clip_eps="dtype")
    assert r.loss_sum == pytest.approx(log_loss([1, 1], [0.0, 1.0], labels=[0, 1]) * 2, rel=1e-12)


def test_clip_eps_dtype_for_log_probabilities() -> None:
    lp = np.array([[-120.0, 0.0]], dtype=np.float32)
    r = xc.score(lp, [0], input_type="log_probabilities", clip_eps="dtype")
    assert r.loss_sum == pytest.approx(-np.log(float(np.finfo(np.float32).eps)), rel=1e-12)


def test_clip_eps_rejects_other_strings() -> None:
    with pytest.raises(xc.InputError) as err:
        xc.score([0.5], [1], clip_eps="float32")
    assert err.value.location == ("clip_eps",)
    assert "expected a number or 'dtype'" in str(err.value)


# ---------------------------------------------------------------------------------------------
# negative weights and target rows that do not sum to 1: refused (torch takes both as given)


@pytest.mark.parametrize(
    ("task", "predictions", "labels", "weights", "index"),
    [
        ("multiclass", [[0.2, 0.3, 0.5]], [2], [1.0, -0.5, 1.0], 1),
        ("binary", [0.2, 0.7], [0, 1], [-1.0, 1.0], 0),
        ("multilabel", [[0.2, 0.7]], [[0, 1]], [1.0, -2.0], 1),
    ],
)
def test_negative_class_weight_is_refused_with_its_index(
    task: str, predictions: Any, labels: Any, weights: list[float], index: int
) -> None:
    with pytest.raises(xc.InputError) as err:
        xc.score(predictions, labels, task=task, class_weights=weights)
    assert err.value.location == ("class_weights", index)
    assert f"class_weights[{index}]:" in str(err.value) and "is negative, expected >= 0" in str(
        err.value
    )


@pytest.mark.parametrize(
    ("field", "value"), [("sample_weights", [1.0, -1.0]), ("pos_weight", -2.0)]
)
def test_other_negative_weights_are_refused(field: str, value: Any) -> None:
    with pytest.raises(xc.InputError) as err:
        xc.score([0.2, 0.7], [0, 1], **{field: value})
    assert err.value.location[0] == field


def test_binary_class_weights_need_two_numbers() -> None:
    with pytest.raises(xc.InputError) as err:
        xc.score([0.2, 0.7], [0, 1], class_weights=[1.0, 2.0, 3.0])
    assert err.value.location == ("class_weights",)
    assert "expected 2 numbers (one per class: negative, then positive)" in str(err.value)


def test_target_rows_not_summing_to_one_are_refused() -> None:
    with pytest.raises(xc.InputError) as err:
        xc.score([[0.2, 0.8], [0.5, 0.5]], [[0.5, 0.5], [0.6, 0.3]])
    assert err.value.location == ("labels", 1)
    assert "target row sums to 0.9, expected 1 ± 0.0001" in str(err.value)
    ok = xc.score([[0.2, 0.8]], [[0.6, 0.39995]])  # within sum_tolerance: taken as given
    assert ok.item_loss is not None
    assert ok.item_loss[0] == pytest.approx(-(0.6 * np.log(0.2) + 0.39995 * np.log(0.8)))
