"""Tiny batches whose every figure is worked out by hand in the comments.

ln values used throughout: ln 0.8 = -0.223144, ln 0.7 = -0.356675, ln 0.6 = -0.510826,
ln 0.4 = -0.916291, ln 0.3 = -1.203973, ln 0.2 = -1.609438, ln 0.1 = -2.302585, ln 0.9 = -0.105361.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xentcore as xc

ln = math.log


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def test_public_api() -> None:
    assert sorted(xc.__all__) == [
        "CalibrationResult",
        "InputError",
        "NATIVE_KERNELS",
        "RiskCoverage",
        "RiskPolicyFit",
        "ScoreResult",
        "SequenceResult",
        "Summary",
        "calibration",
        "risk_control",
        "risk_coverage",
        "score",
        "score_sequences",
    ]
    assert issubclass(xc.InputError, ValueError)
    assert isinstance(xc.NATIVE_KERNELS, bool)


# ---------------------------------------------------------------------------------------------
# binary: p = [0.8, 0.3, 0.6], y = [1, 0, 0]

P_BIN = [0.8, 0.3, 0.6]
Y_BIN = [1, 0, 0]


def test_binary_loss_confidence_prediction() -> None:
    r = xc.score(P_BIN, Y_BIN)
    assert r.task == "binary" and r.n_items == 3 and r.n_classes == 2
    assert r.item_loss is not None
    # -ln 0.8 = 0.223144, -ln(1 - 0.3) = 0.356675, -ln(1 - 0.6) = 0.916291
    assert r.item_loss.tolist() == [approx(-ln(0.8)), approx(-ln(0.7)), approx(-ln(0.4))]
    # sum 1.496109, mean 0.498703
    assert r.loss_sum == approx(-ln(0.8) - ln(0.7) - ln(0.4))
    assert r.loss_mean == approx((-ln(0.8) - ln(0.7) - ln(0.4)) / 3)
    assert r.n_scored == 3
    # max(p, 1 - p) = [0.8, 0.7, 0.6]; predicted p >= 0.5 -> [1, 0, 1]; 2 of 3 right
    assert r.confidence.tolist() == [approx(0.8), approx(0.7), approx(0.6)]
    assert r.confidence_mean == approx(0.7)
    assert np.asarray(r.predicted).tolist() == [1, 0, 1]
    assert r.accuracy == approx(2 / 3)
    # default flag rule: min_confidence 0.5 alone, nobody below it
    assert r.flagged.tolist() == [False, False, False]
    assert r.reasons == [[], [], []]
    assert r.warnings == []


def test_binary_confidence_methods() -> None:
    # margin |2p - 1| = [0.6, 0.4, 0.2]
    m = xc.score(P_BIN, Y_BIN, confidence="margin").confidence
    assert m.tolist() == [approx(0.6), approx(0.4), approx(0.2)]

    # entropy 1 - H(p)/ln 2; H(0.8) = 0.8*0.223144 + 0.2*1.609438 = 0.500402 -> 1 - 0.721928
    def ent(p: float) -> float:
        return 1 - (-(p * ln(p) + (1 - p) * ln(1 - p))) / ln(2)

    e = xc.score(P_BIN, Y_BIN, confidence="entropy").confidence
    assert e.tolist() == [approx(ent(0.8)), approx(ent(0.3)), approx(ent(0.6))]
    assert e[0] == pytest.approx(0.278072, abs=1e-6)
    # true_class: p of the label -> [0.8, 0.7, 0.4]
    t = xc.score(P_BIN, Y_BIN, confidence="true_class").confidence
    assert t.tolist() == [approx(0.8), approx(0.7), approx(0.4)]


def test_binary_flags_and_reasons() -> None:
    flag = {"min_confidence": 0.75, "max_loss": 0.5, "misclassified": True}
    r = xc.score(P_BIN, Y_BIN, flag=flag)
    # item 0: conf 0.8, loss 0.22, right -> clean
    # item 1: conf 0.7 < 0.75 -> low_confidence; loss 0.36; right
    # item 2: conf 0.6 < 0.75; loss 0.92 > 0.5; predicted 1 != 0 -> all three
    assert r.flagged.tolist() == [False, True, True]
    assert r.reasons == [[], ["low_confidence"], ["low_confidence", "high_loss", "misclassified"]]
    assert r.flagged_indices.tolist() == [1, 2]
    # only the rules given apply: max_loss alone
    r2 = xc.score(P_BIN, Y_BIN, flag={"max_loss": 0.3})
    assert r2.reasons == [[], ["high_loss"], ["high_loss"]]
    # an empty flag object turns every rule off
    assert not xc.score(P_BIN, Y_BIN, flag={}).flagged.any()
    # without labels only confidence can flag
    r3 = xc.score(P_BIN, flag={"min_confidence": 0.65})
    assert r3.reasons == [[], [], ["low_confidence"]]
    assert r3.loss_mean is None and r3.loss_sum is None and r3.item_loss is None
    assert r3.accuracy is None and r3.n_scored is None


def test_binary_decision_threshold() -> None:
    # threshold 0.7: 0.8 -> 1, 0.3 -> 0, 0.6 -> 0: all right; confidence unchanged
    r = xc.score(P_BIN, Y_BIN, decision_threshold=0.7, flag={"misclassified": True})
    assert np.asarray(r.predicted).tolist() == [1, 0, 0]
    assert r.accuracy == 1.0
    assert not r.flagged.any()
    # p >= threshold is inclusive
    assert np.asarray(xc.score([0.5, 0.49]).predicted).tolist() == [1, 0]


def test_binary_class_names() -> None:
    names = ["neg", "pos"]
    r = xc.score(P_BIN, ["pos", "neg", "neg"], class_names=names)
    assert list(r.predicted) == ["pos", "neg", "pos"]
    assert r.loss_sum == approx(-ln(0.8) - ln(0.7) - ln(0.4))
    assert r.accuracy == approx(2 / 3)


def test_binary_pos_weight_and_smoothing() -> None:
    # pos_weight 2 doubles the positive term only: 2*0.223144 = 0.446287
    r = xc.score(P_BIN, Y_BIN, pos_weight=2.0)
    assert r.item_loss is not None
    assert r.item_loss.tolist() == [approx(-2 * ln(0.8)), approx(-ln(0.7)), approx(-ln(0.4))]
    assert r.loss_mean == approx((-2 * ln(0.8) - ln(0.7) - ln(0.4)) / 3)
    # smoothing 0.2: y' = y*0.8 + 0.1 -> 0.9 / 0.1
    # item 0: -(0.9 ln 0.8 + 0.1 ln 0.2) = 0.200829 + 0.160944 = 0.361773
    # item 1 (p 0.3, y' 0.1): -(0.1 ln 0.3 + 0.9 ln 0.7) = 0.120397 + 0.321007 = 0.441405
    s = xc.score(P_BIN, Y_BIN, label_smoothing=0.2)
    assert s.item_loss is not None
    assert s.item_loss[0] == approx(-(0.9 * ln(0.8) + 0.1 * ln(0.2)))
    assert s.item_loss[0] == pytest.approx(0.361773, abs=1e-6)
    assert s.item_loss[1] == approx(-(0.1 * ln(0.3) + 0.9 * ln(0.7)))
    # soft target 0.25 for p = 0.8: -(0.25 ln 0.8 + 0.75 ln 0.2) = 0.055786 + 1.207078
    soft = xc.score([0.8], [0.25])
    assert soft.loss_mean == approx(-(0.25 * ln(0.8) + 0.75 * ln(0.2)))
    # a soft target counts as [y >= 0.5] for accuracy: 0.25 -> 0, predicted 1 -> wrong
    assert soft.accuracy == 0.0


def test_binary_logits() -> None:
    # z = 0 -> p = 1/2; z = ln 3 -> p = 3/4; z = -ln 4 -> p = 1/5
    z = [0.0, ln(3), -ln(4)]
    r = xc.score(z, [1, 0, 0], input_type="logits")
    assert r.item_loss is not None
    # -ln(1/2) = ln 2; -ln(1 - 3/4) = ln 4; -ln(1 - 1/5) = ln 1.25
    assert r.item_loss.tolist() == [approx(ln(2)), approx(ln(4)), approx(ln(1.25))]
    assert r.confidence.tolist() == [approx(0.5), approx(0.75), approx(0.8)]
    assert np.asarray(r.predicted).tolist() == [1, 1, 0]


def test_binary_focal() -> None:
    # p = 0.8, y = 1, gamma 2: p_t = 0.8, (1 - p_t)^2 = 0.04 -> 0.04 * 0.223144 = 0.008926
    # alpha 0.25 -> alpha_t = 0.25 -> 0.002231
    r = xc.score([0.8, 0.3], [1, 0], focal_gamma=2.0, focal_alpha=0.25)
    assert r.item_loss is not None
    assert r.item_loss[0] == approx(0.25 * 0.04 * -ln(0.8))
    # p = 0.3, y = 0: p_t = 0.7, (0.3)^2 = 0.09, alpha_t = 0.75
    assert r.item_loss[1] == approx(0.75 * 0.09 * -ln(0.7))


# ---------------------------------------------------------------------------------------------
# multiclass: rows [0.7 0.2 0.1], [0.1 0.8 0.1], [0.3 0.3 0.4]; y = [0, 2, 1]

P_MC = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
Y_MC = [0, 2, 1]


def test_multiclass_loss_and_prediction() -> None:
    r = xc.score(P_MC, Y_MC)
    assert r.task == "multiclass" and r.n_classes == 3
    assert r.item_loss is not None
    # -ln 0.7 = 0.356675, -ln 0.1 = 2.302585, -ln 0.3 = 1.203973; sum 3.863233, mean 1.287744
    assert r.item_loss.tolist() == [approx(-ln(0.7)), approx(-ln(0.1)), approx(-ln(0.3))]
    assert r.loss_sum == approx(-ln(0.7) - ln(0.1) - ln(0.3))
    assert r.loss_mean == approx((-ln(0.7) - ln(0.1) - ln(0.3)) / 3)
    assert r.loss_mean == pytest.approx(1.287744, abs=1e-6)
    # argmax -> [0, 1, 2]: only item 0 right
    assert np.asarray(r.predicted).tolist() == [0, 1, 2]
    assert r.accuracy == approx(1 / 3)
    assert r.confidence.tolist() == [approx(0.7), approx(0.8), approx(0.4)]
    # default min_confidence 0.5: 0.4 is low
    assert r.reasons == [[], [], ["low_confidence"]]


def test_multiclass_confidence_methods() -> None:
    # margin: 0.7-0.2, 0.8-0.1, 0.4-0.3
    m = xc.score(P_MC, Y_MC, confidence="margin").confidence
    assert m.tolist() == [approx(0.5), approx(0.7), approx(0.1)]

    # entropy: 1 - H/ln 3; H([.7 .2 .1]) = .249672 + .321888 + .230259 = .801819 -> 0.270153
    def ent(ps: list[float]) -> float:
        return 1 - (-sum(p * ln(p) for p in ps)) / ln(3)

    e = xc.score(P_MC, Y_MC, confidence="entropy").confidence
    assert e.tolist() == [approx(ent(row)) for row in P_MC]
    assert e[0] == pytest.approx(0.270153, abs=1e-6)
    # true_class: [0.7, 0.1, 0.3]
    t = xc.score(P_MC, Y_MC, confidence="true_class")
    assert t.confidence.tolist() == [approx(0.7), approx(0.1), approx(0.3)]
    assert t.reasons == [[], ["low_confidence"], ["low_confidence"]]


def test_multiclass_ties_predict_lowest_index() -> None:
    r = xc.score([[0.4, 0.4, 0.2], [0.25, 0.25, 0.5]], confidence="margin")
    assert np.asarray(r.predicted).tolist() == [0, 2]
    assert r.confidence.tolist() == [approx(0.0), approx(0.25)]
    rz = xc.score([[1.0, 1.0, -1.0]], input_type="logits", confidence="margin")
    assert np.asarray(rz.predicted).tolist() == [0]
    assert rz.confidence[0] == approx(0.0)


def test_multiclass_class_names() -> None:
    names = ["cat", "dog", "owl"]
    r = xc.score(P_MC, ["cat", "owl", "dog"], class_names=names)
    assert list(r.predicted) == ["cat", "dog", "owl"]
    assert r.loss_sum == approx(-ln(0.7) - ln(0.1) - ln(0.3))


def test_multiclass_class_weights() -> None:
    # w = [1, 2, 3]: losses w_y * nll = [0.356675, 3*2.302585, 2*1.203973]
    # mean divides by sum of w_y = 1 + 3 + 2 = 6 (torch)
    r = xc.score(P_MC, Y_MC, class_weights=[1.0, 2.0, 3.0])
    assert r.item_loss is not None
    assert r.item_loss.tolist() == [approx(-ln(0.7)), approx(-3 * ln(0.1)), approx(-2 * ln(0.3))]
    total = -ln(0.7) - 3 * ln(0.1) - 2 * ln(0.3)
    assert r.loss_sum == approx(total)
    assert r.loss_mean == approx(total / 6)
    # with sample weights s = [2, 1, 0]: sum = 2*0.356675 + 6.907755, mean / (2*1 + 1*3 + 0)
    rs = xc.score(P_MC, Y_MC, class_weights=[1.0, 2.0, 3.0], sample_weights=[2.0, 1.0, 0.0])
    assert rs.loss_sum == approx(-2 * ln(0.7) - 3 * ln(0.1))
    assert rs.loss_mean == approx((-2 * ln(0.7) - 3 * ln(0.1)) / 5)


def test_multiclass_label_smoothing() -> None:
    # e = 0.3, K = 3: (1 - e) nll_y + (e / K) sum_k nll_k
    # item 0: 0.7*0.356675 + 0.1*(0.356675 + 1.609438 + 2.302585) = 0.249672 + 0.426870
    r = xc.score(P_MC, Y_MC, label_smoothing=0.3)
    assert r.item_loss is not None
    assert r.item_loss[0] == approx(0.7 * -ln(0.7) + 0.1 * -(ln(0.7) + ln(0.2) + ln(0.1)))
    assert r.item_loss[0] == pytest.approx(0.676542, abs=1e-6)
    # with weights [1, 2, 3]: item 1 (y = 2): 0.7*3*2.302585 + 0.1*(1*2.302585 + 2*0.223144
    # + 3*2.302585)
    rw = xc.score(P_MC, Y_MC, label_smoothing=0.3, class_weights=[1.0, 2.0, 3.0])
    assert rw.item_loss is not None
    assert rw.item_loss[1] == approx(
        0.7 * 3 * -ln(0.1) + 0.1 * -(ln(0.1) + 2 * ln(0.8) + 3 * ln(0.1))
    )
    # the same as the distribution target q' = 0.7 onehot + 0.1
    rq = xc.score(P_MC, [[0.0, 0.0, 1.0]] * 3, label_smoothing=0.3, class_weights=[1, 2, 3])
    assert rq.item_loss is not None
    assert rq.item_loss[1] == approx(float(rw.item_loss[1]))


def test_multiclass_distribution_targets() -> None:
    # q = [0.5, 0.5, 0] on row 0: -(0.5 ln 0.7 + 0.5 ln 0.2) = 0.178337 + 0.804719 = 0.983056
    r = xc.score([P_MC[0]], [[0.5, 0.5, 0.0]])
    assert r.loss_mean == approx(-(0.5 * ln(0.7) + 0.5 * ln(0.2)))
    # weights do not enter the mean's denominator for distribution targets (torch divides by N)
    rw = xc.score([P_MC[0]], [[0.5, 0.5, 0.0]], class_weights=[2.0, 4.0, 1.0])
    assert rw.loss_mean == approx(-(1.0 * ln(0.7) + 2.0 * ln(0.2)))
    # a distribution target counts as its argmax for accuracy (0 here: right)
    assert rw.accuracy == 1.0


def test_multiclass_logits() -> None:
    # z = [0, ln 2, ln 3] -> p = [1/6, 2/6, 3/6]; y = 1 -> ln 3
    z = [[0.0, ln(2), ln(3)]]
    r = xc.score(z, [1], input_type="logits", confidence="margin")
    assert r.loss_mean == approx(ln(3))
    assert r.confidence[0] == approx(1 / 6)
    assert np.asarray(r.predicted).tolist() == [2]
    assert xc.score(z, [1], input_type="logits").confidence[0] == approx(0.5)
    # entropy of [1/6, 1/3, 1/2]: ln 6 / 6 + ln 3 / 3 + ln 2 / 2
    h = ln(6) / 6 + ln(3) / 3 + ln(2) / 2
    assert xc.score(z, input_type="logits", confidence="entropy").confidence[0] == approx(
        1 - h / ln(3)
    )
    # true_class: p_1 = 1/3
    assert xc.score(z, [1], input_type="logits", confidence="true_class").confidence[0] == approx(
        1 / 3
    )


def test_entropy_confidence_of_near_uniform_logits() -> None:
    # z = [0, 1e-12]: p = 1/2 -+ 2.5e-13, H = ln 2 - 1.25e-25, so 1 - H / ln 2 ~ 1.8e-25 >= 0
    c = xc.score([[0.0, 1e-12]], input_type="logits", confidence="entropy").confidence
    assert 0.0 <= c[0] <= 1.0
    assert c[0] == pytest.approx(0.0, abs=1e-15)


def test_multiclass_focal() -> None:
    # row 0, y = 0, gamma 2, alpha 0.25: 0.25 * (1 - 0.7)^2 * 0.356675 = 0.25 * 0.09 * 0.356675
    r = xc.score([P_MC[0]], [0], focal_gamma=2.0, focal_alpha=0.25)
    assert r.loss_mean == approx(0.25 * 0.09 * -ln(0.7))


def test_ignore_index() -> None:
    # y = [0, -100, 1]: item 1 has no loss; mean over items 0 and 2
    r = xc.score(
        P_MC, [0, -100, 1], ignore_index=-100, flag={"min_confidence": 0.75, "misclassified": True}
    )
    assert r.item_loss is not None
    assert r.item_loss[0] == approx(-ln(0.7))
    assert math.isnan(r.item_loss[1])
    assert r.item_loss[2] == approx(-ln(0.3))
    assert r.n_scored == 2
    assert r.loss_sum == approx(-ln(0.7) - ln(0.3))
    assert r.loss_mean == approx((-ln(0.7) - ln(0.3)) / 2)
    # item 0 right, item 2 wrong (predicted 2, label 1); the ignored item is not counted
    assert r.accuracy == approx(0.5)
    # confidence and flags for every item, ignored ones included; misclassified only if scored
    assert r.confidence.tolist() == [approx(0.7), approx(0.8), approx(0.4)]
    assert r.reasons == [["low_confidence"], [], ["low_confidence", "misclassified"]]
    # an in-range ignore_index: class 1 ignored
    r1 = xc.score(P_MC, Y_MC, ignore_index=1)
    assert r1.n_scored == 2 and r1.loss_sum == approx(-ln(0.7) - ln(0.1))
    # true_class confidence is null (NaN) where ignored; the mean is over the rest
    rt = xc.score(P_MC, [0, -100, 1], ignore_index=-100, confidence="true_class")
    assert math.isnan(rt.confidence[1])
    assert rt.confidence_mean == approx((0.7 + 0.3) / 2)


def test_all_ignored_batch() -> None:
    r = xc.score(P_MC, [-100, -100, -100], ignore_index=-100, flag={"max_loss": 0.0})
    assert r.loss_mean is None
    assert r.loss_sum == 0.0
    assert r.n_scored == 0
    assert r.accuracy is None
    assert r.item_loss is not None and np.isnan(r.item_loss).all()
    assert not r.flagged.any()
    assert any("null" in w for w in r.warnings)
    # the same with class weights (torch would give NaN)
    rw = xc.score(P_MC, [-1, -1, -1], ignore_index=-1, class_weights=[1.0, 2.0, 3.0])
    assert rw.loss_mean is None and rw.loss_sum == 0.0
    assert xc.calibration(P_MC, [-1, -1, -1], ignore_index=-1).ece is None


def test_zero_weight_sum_gives_null_mean() -> None:
    r = xc.score(P_MC, Y_MC, sample_weights=[0.0, 0.0, 0.0])
    assert r.loss_mean is None and r.loss_sum == 0.0 and r.n_scored == 3


def test_clipping_warning() -> None:
    # p = 0 for the true class: clipped to eps, loss -ln(eps) = 36.043653
    r = xc.score([[1.0, 0.0], [0.5, 0.5]], [1, 0])
    assert r.item_loss is not None
    assert r.item_loss[0] == approx(-ln(np.finfo(np.float64).eps))
    # one warning saying how many values were clipped (at least the true-class 0)
    assert len(r.warnings) == 1
    count, rest = r.warnings[0].split(" ", 1)
    assert int(count) >= 1 and rest.startswith("probabilities clipped to [eps, 1-eps]")
    # Keras' eps 1e-7: -ln(1e-7) = 16.118096
    rk = xc.score([[1.0, 0.0]], [1], clip_eps=1e-7)
    assert rk.loss_mean == approx(-ln(1e-7))


def test_renormalize() -> None:
    # [0.2, 0.2, 0.4] sums to 0.8 -> [0.25, 0.25, 0.5]; y = 2 -> ln 2
    r = xc.score([[0.2, 0.2, 0.4]], [2], renormalize=True)
    assert r.loss_mean == approx(ln(2))
    assert r.confidence[0] == approx(0.5)
    # log-probabilities [0, 0] (logsumexp ln 2) -> [-ln 2, -ln 2]
    rl = xc.score([[0.0, 0.0]], [1], input_type="log_probabilities", renormalize=True)
    assert rl.loss_mean == approx(ln(2))


def test_thresholds_are_strict() -> None:
    # confidence < min_confidence and loss > max_loss: equality does not flag
    r = xc.score([0.5, 0.75], [1, 1], flag={"min_confidence": 0.75, "max_loss": -ln(0.75)})
    assert r.reasons == [["low_confidence", "high_loss"], []]


# ---------------------------------------------------------------------------------------------
# multilabel: p = [[0.9, 0.2], [0.4, 0.7]], y = [[1, 0], [1, 1]]

P_ML = [[0.9, 0.2], [0.4, 0.7]]
Y_ML = [[1, 0], [1, 1]]


def test_multilabel() -> None:
    r = xc.score(P_ML, Y_ML, task="multilabel", class_names=["a", "b"])
    assert r.task == "multilabel" and r.n_classes == 2
    assert r.item_loss is not None
    # row 0: mean(-ln 0.9, -ln 0.8) = (0.105361 + 0.223144)/2 = 0.164252
    # row 1: mean(-ln 0.4, -ln 0.7) = (0.916291 + 0.356675)/2 = 0.636483
    assert r.item_loss.tolist() == [
        approx((-ln(0.9) - ln(0.8)) / 2),
        approx((-ln(0.4) - ln(0.7)) / 2),
    ]
    assert r.loss_mean == approx((-ln(0.9) - ln(0.8) - ln(0.4) - ln(0.7)) / 4)
    # confidence: min over k of max(p, 1-p): min(0.9, 0.8), min(0.6, 0.7)
    assert r.confidence.tolist() == [approx(0.8), approx(0.6)]
    # predicted sets {a}, {b}; true sets {a}, {a, b} -> accuracy 1/2
    assert r.predicted == [["a"], ["b"]]
    assert r.accuracy == 0.5
    assert xc.score(P_ML, task="multilabel").predicted == [[0], [1]]
    assert xc.score(P_ML, task="multilabel", decision_threshold=0.1).predicted == [[0, 1], [0, 1]]
    assert xc.score(P_ML, task="multilabel", decision_threshold=0.95).predicted == [[], []]


def test_multilabel_confidence_and_pos_weight() -> None:
    # margin: min |2p - 1| -> min(0.8, 0.6), min(0.2, 0.4)
    m = xc.score(P_ML, Y_ML, task="multilabel", confidence="margin").confidence
    assert m.tolist() == [approx(0.6), approx(0.2)]
    # true_class: min over k of p given to the true value: min(0.9, 0.8), min(0.4, 0.7)
    t = xc.score(P_ML, Y_ML, task="multilabel", confidence="true_class").confidence
    assert t.tolist() == [approx(0.8), approx(0.4)]
    # pos_weight [2, 1]: row 0 = (2*0.105361 + 0.223144)/2
    r = xc.score(P_ML, Y_ML, task="multilabel", pos_weight=[2.0, 1.0])
    assert r.item_loss is not None
    assert r.item_loss[0] == approx((-2 * ln(0.9) - ln(0.8)) / 2)
    assert r.item_loss[1] == approx((-2 * ln(0.4) - ln(0.7)) / 2)
    # a scalar pos_weight applies to every class
    r3 = xc.score(P_ML, Y_ML, task="multilabel", pos_weight=3.0)
    assert r3.item_loss is not None
    assert r3.item_loss[1] == approx((-3 * ln(0.4) - 3 * ln(0.7)) / 2)


# ---------------------------------------------------------------------------------------------
# flags on multiclass, reasons order


def test_flag_rules_on_multiclass() -> None:
    flag = {"min_confidence": 0.75, "max_loss": 1.0, "misclassified": True}
    r = xc.score(P_MC, Y_MC, flag=flag)
    # item 0: conf 0.7 -> low; loss 0.36; right
    # item 1: conf 0.8; loss 2.30 > 1 -> high; predicted 1 != 2 -> misclassified
    # item 2: conf 0.4 -> low; loss 1.20 > 1; predicted 2 != 1
    assert r.reasons == [
        ["low_confidence"],
        ["high_loss", "misclassified"],
        ["low_confidence", "high_loss", "misclassified"],
    ]
    assert r.masks.counts() == {
        "low_confidence": 2,
        "high_loss": 2,
        "misclassified": 2,
        "risk_policy": 0,
    }
    assert r.flagged.tolist() == [True, True, True]


def test_clip_warning_only_with_a_loss() -> None:
    # no labels: nothing is logged, so nothing is reported as clipped
    assert xc.score([0.0, 1.0, 0.3]).warnings == []
    warned = xc.score([0.0, 1.0, 0.3], [0, 1, 0]).warnings
    assert warned and warned[0].startswith("2 probabilities clipped")


def test_calibration_refuses_another_threshold() -> None:
    with pytest.raises(xc.InputError) as err:
        xc.calibration([0.2, 0.8], [0, 1], decision_threshold=0.7)
    assert err.value.location == ("decision_threshold",)
