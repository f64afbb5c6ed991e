"""xentcore.feedback: audit draws, kept rows, late-label outcomes and the label sums, against
references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xentcore as xc
from xentcore.feedback import (
    LABEL_SUMS,
    audit_mask,
    label_contributions,
    label_figures_rows,
    labeled_figures,
    late_outcomes,
    reviewed_figures,
)
from xentcore.keep import keep_batch, keep_sequences
from xentcore.types import ScoreOptions
from xentcore.validate import check_batch


def test_audit_draws_are_reproducible_and_bounded() -> None:
    a = audit_mask(10_000, 0.1, seed=5)
    assert a.tolist() == (np.random.default_rng(5).random(10_000) < 0.1).tolist()
    assert abs(a.mean() - 0.1) < 0.02
    assert not audit_mask(100, 0.0, seed=1).any() and audit_mask(100, 1.0, seed=1).all()
    assert audit_mask(0, 0.5).shape == (0,)


@pytest.mark.parametrize("input_type", ["logits", "probabilities", "log_probabilities"])
def test_kept_multiclass_rows_score_a_late_label_like_cross_entropy(input_type: str) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (200, 7))
    log_p = (
        z
        - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        - z.max(1, keepdims=True)
    )
    x = {"logits": z, "probabilities": np.exp(log_p), "log_probabilities": log_p}[input_type]
    y = rng.integers(0, 7, 200)
    batch = check_batch(x, y, ScoreOptions(input_type=input_type))
    result = xc.score(x, y, input_type=input_type)
    kept = keep_batch(batch, result, np.zeros(200, bool), max_classes=1024)
    assert kept.row is not None and kept.row.dtype == np.float32
    np.testing.assert_allclose(kept.row, log_p, rtol=1e-6, atol=1e-6)
    # the batch's own labels: plain cross-entropy at full precision
    np.testing.assert_allclose(kept.loss, -log_p[np.arange(200), y], rtol=1e-9)
    assert kept.labeled.all() and (kept.correct == (log_p.argmax(1) == y)).all()
    # a late label scored on the float32 row
    late = (y + 3) % 7
    loss, correct = late_outcomes("multiclass", kept.predicted, late, rows=kept.row)
    np.testing.assert_allclose(loss, -log_p[np.arange(200), late], rtol=1e-6)
    assert (correct == (log_p.argmax(1) == late)).all()
    # above the cap: no row, correctness only
    capped = keep_batch(batch, result, np.zeros(200, bool), max_classes=6)
    assert capped.row is None
    loss, correct = late_outcomes("multiclass", capped.predicted, late, rows=None)
    assert np.isnan(loss).all() and (correct == (log_p.argmax(1) == late)).all()


def test_binary_multilabel_and_sequences() -> None:
    p = np.array([0.9, 0.2, 1.0])
    batch = check_batch(p, None, ScoreOptions())
    result = xc.score(p)
    kept = keep_batch(batch, result, np.array([True, False, True]), max_classes=1024)
    assert not kept.labeled.any() and kept.row is not None
    np.testing.assert_allclose(kept.top_prob, [0.9, 0.8, 1.0])
    loss, correct = late_outcomes("binary", kept.predicted, np.array([1, 1, 0]), rows=kept.row)
    eps = np.finfo(float).eps
    want = [-math.log(0.9), -math.log(0.2), -math.log(eps)]  # p = 1 clipped to 1 - eps
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    assert correct.tolist() == [True, False, False]

    q = np.array([[0.9, 0.2, 0.7], [0.1, 0.6, 0.4]])
    ml = xc.score(q, task="multilabel")
    kept = keep_batch(check_batch(q, None, ScoreOptions(task="multilabel")), ml,
                      np.zeros(2, bool), max_classes=1024)  # fmt: skip
    truth = np.array([[1, 0, 1], [0, 0, 0]])
    loss, correct = late_outcomes(
        "multilabel", kept.predicted, truth, rows=kept.row, predicted_set=kept.predicted_set
    )
    want0 = -(math.log(0.9) + math.log(0.8) + math.log(0.7)) / 3
    assert loss[0] == pytest.approx(want0, rel=1e-6) and correct.tolist() == [True, False]

    seq = xc.score_sequences([[-0.1, -0.2], [-3.0]])
    kept = keep_sequences(seq, np.array([True, True]))
    loss, correct = late_outcomes("sequences", kept.predicted, np.array([1, 0]))
    assert np.isnan(loss).all() and correct.tolist() == [True, False]


def test_label_sums_and_figures_agree_with_a_direct_computation() -> None:
    rng = np.random.default_rng(3)
    n = 500
    correct = rng.random(n) < 0.7
    loss = np.where(rng.random(n) < 0.9, rng.exponential(1.0, n), np.nan)
    top = rng.uniform(0.3, 1.0, n)
    flagged = top < 0.5
    cal = rng.random(n) < 0.6
    sums = label_contributions(
        correct=correct, loss=loss, top_prob=top, flagged=flagged, in_calibration=cal
    ).sum(axis=0)
    named = dict(zip(LABEL_SUMS, sums.tolist(), strict=True))
    got = labeled_figures(named)
    c = cal
    has = c & ~np.isnan(loss)
    bins = np.clip(np.ceil(top[c] * 15).astype(int) - 1, 0, 14)
    gap = sum(abs(correct[c][bins == b].sum() - top[c][bins == b].sum()) for b in range(15))
    assert got["n"] == int(c.sum())
    assert got["accuracy"] == pytest.approx(correct[c].mean())
    assert got["loss_mean"] == pytest.approx(loss[has].mean())
    assert got["ece"] == pytest.approx(gap / c.sum())
    assert got["accepted_error_rate"] == pytest.approx((~correct[c & ~flagged]).mean())
    assert reviewed_figures(named) == {
        "n": int((~c).sum()),
        "accuracy": pytest.approx(correct[~c].mean()),
    }
    rows = label_figures_rows(np.stack([sums, np.zeros_like(sums)]))
    assert rows[0]["labeled"] == pytest.approx(got)
    assert rows[1]["labeled"] == {
        "n": 0, "accuracy": None, "loss_mean": None, "ece": None, "accepted_error_rate": None,
    }  # fmt: skip


def test_soft_targets_keep_their_plain_cross_entropy() -> None:
    p = np.array([0.6, 0.2])
    y = np.array([0.7, 0.0])
    kept = keep_batch(check_batch(p, y, ScoreOptions()), xc.score(p, y), np.zeros(2, bool), 1024)
    want = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    np.testing.assert_allclose(kept.loss, want, rtol=1e-12)
    assert kept.label.tolist() == [1, 0]  # the true class decides correctness
    q = np.array([[0.5, 0.3, 0.2]])
    t = np.array([[0.4, 0.35, 0.25]])
    kept = keep_batch(check_batch(q, t, ScoreOptions()), xc.score(q, t), np.zeros(1, bool), 1024)
    np.testing.assert_allclose(kept.loss, [-(t * np.log(q)).sum()], rtol=1e-9)
