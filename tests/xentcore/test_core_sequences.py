"""score_sequences on hand-computed token log-prob sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xentcore as xc
from xentcore.sequences import openai_logprobs


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def test_two_sequences_by_hand() -> None:
    s = xc.score_sequences([[-0.1, -0.2, -2.0], [-0.05]], min_token_probability=0.2)
    assert s.n_tokens.tolist() == [3, 1]
    # seq 0: sum -2.3, mean -0.766667, nll 0.766667, perplexity e^0.766667 = 2.152579,
    # confidence e^-0.766667 = 0.464558; min -2.0 at index 2
    assert s.mean_logprob.tolist() == [approx(-2.3 / 3), approx(-0.05)]
    assert s.nll.tolist() == [approx(2.3 / 3), approx(0.05)]
    assert s.perplexity.tolist() == [approx(math.exp(2.3 / 3)), approx(math.exp(0.05))]
    assert s.perplexity[0] == pytest.approx(2.152579, abs=1e-6)
    assert s.confidence.tolist() == [approx(math.exp(-2.3 / 3)), approx(math.exp(-0.05))]
    assert s.min_token_logprob.tolist() == [-2.0, -0.05]
    assert s.min_token_index.tolist() == [2, 0]
    # batch: token-weighted, -(-2.3 - 0.05) / 4 = 0.5875
    assert s.batch_nll == approx(0.5875)
    assert s.batch_perplexity == approx(math.exp(0.5875))
    # flags: 0.4646 < 0.5 (default min_confidence); e^-2 = 0.1353 < 0.2
    assert s.reasons == [["low_confidence", "low_token_probability"], []]
    assert s.flagged.tolist() == [True, False]
    assert s.warnings == []


def test_rules_off_and_thresholds() -> None:
    seqs = [[-0.1, -0.2, -2.0], [-0.05]]
    off = xc.score_sequences(seqs, min_confidence=None)
    assert not off.flagged.any() and off.reasons == [[], []]
    # min_confidence 0.95: e^-0.05 = 0.951 is not below it; 0.4646 is
    assert xc.score_sequences(seqs, min_confidence=0.95).reasons == [["low_confidence"], []]
    # token rule alone, threshold 0.9: e^-0.1 = 0.905 passes, e^-2 fails; e^-0.05 passes
    tok = xc.score_sequences(seqs, min_confidence=None, min_token_probability=0.9)
    assert tok.reasons == [["low_token_probability"], []]


def test_min_token_index_first_on_ties_and_zero_logprobs() -> None:
    s = xc.score_sequences([np.array([-1.0, -3.0, -3.0, -0.5]), np.zeros(3)])
    assert s.min_token_index.tolist() == [1, 0]
    # all-zero log-probs: certain tokens, nll 0 (not -0.0), perplexity 1, confidence 1
    assert s.nll[1] == 0.0 and math.copysign(1.0, s.nll[1]) == 1.0
    assert s.perplexity[1] == 1.0 and s.confidence[1] == 1.0
    assert s.reasons[1] == []


def test_perplexity_beyond_float64_is_capped_with_a_warning() -> None:
    s = xc.score_sequences([[-800.0, -800.0], [-1.0]])
    big = float(np.finfo(np.float64).max)
    assert s.perplexity[0] == big
    assert s.perplexity[1] == approx(math.e)
    assert s.nll[0] == 800.0
    assert s.confidence[0] == 0.0
    assert np.isfinite(s.batch_perplexity)
    assert any("perplexity" in w for w in s.warnings)


def test_float32_and_array_inputs() -> None:
    a = np.array([-0.5, -1.5], dtype=np.float32)
    s = xc.score_sequences([a, [-0.25]])
    assert s.nll.tolist() == [approx(1.0), approx(0.25)]
    # a 2-D array is a batch of equal-length sequences (the signature says Sequence)
    s2 = xc.score_sequences(np.array([[-0.5, -1.5], [-1.0, -1.0]]))  # type: ignore[arg-type]
    assert s2.n_tokens.tolist() == [2, 2]
    assert s2.batch_nll == approx(1.0)


def test_openai_censored_logprobs() -> None:
    content = [
        {"token": "a", "logprob": -0.1},
        {
            "token": "b",
            "logprob": -9999.0,
            "top_logprobs": [{"token": "x", "logprob": -1.0}, {"token": "y", "logprob": -3.0}],
        },
        {"token": "c", "logprob": -9999.0},
    ]
    values, positions, warnings = openai_logprobs(content, 4)
    # censored with top_logprobs: the bound min(-1, -3) = -3; censored without: left out
    assert values.tolist() == [-0.1, -3.0]
    assert positions is not None and positions.tolist() == [0, 1]
    assert len(warnings) == 2 and all(w.startswith("sequences[4]") for w in warnings)
    clean, kept, none = openai_logprobs([{"token": "a", "logprob": -0.5}], 0)
    assert clean.tolist() == [-0.5] and kept is None and none == []


def test_min_token_index_counts_left_out_tokens() -> None:
    content = [{"logprob": -9999.0}, {"logprob": -0.1}, {"logprob": -2.0}]
    values, positions, _ = openai_logprobs(content, 0)
    s = xc.score_sequences([values, [-0.5, -0.7]], positions=[positions, None])
    # the weakest kept token is content[2], not index 1 of the shortened list
    assert s.min_token_index.tolist() == [2, 1]
    assert s.n_tokens.tolist() == [2, 2]
