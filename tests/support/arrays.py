"""Reproducible test arrays for the file-scoring tests (library and CLI), N x K batches, and
the comparison of a chunked answer with the in-memory one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xentcore as xc
from xentcore.files import MAX_JSON_INDICES

N, K = 2_345, 7


def logits(seed: int = 0) -> np.ndarray[Any, Any]:
    """N x K float32 logits, standard deviation 2."""
    return np.random.default_rng(seed).normal(scale=2.0, size=(N, K)).astype(np.float32)


def probabilities(seed: int = 1) -> np.ndarray[Any, Any]:
    """N x K float64 probability rows (every entry above 0)."""
    p: np.ndarray[Any, Any] = np.random.default_rng(seed).random((N, K)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    return p


def labels(seed: int = 2) -> np.ndarray[Any, Any]:
    """N class indices in [0, K)."""
    return np.random.default_rng(seed).integers(0, K, N)


def assert_json_matches(out: dict[str, Any], ref: xc.ScoreResult) -> None:
    """The ``xent score --json`` answer ``out`` equals the in-memory ``ref`` (sums to float
    rounding, the rest exactly; the flagged indices as the JSON lists them)."""
    assert out["task"] == ref.task and out["n_items"] == ref.n_items
    assert out["n_classes"] == ref.n_classes
    if ref.loss_sum is None:
        assert out["loss"] is None and out["accuracy"] is None
    else:
        assert out["loss"]["sum"] == pytest.approx(ref.loss_sum, rel=1e-12)
        assert out["loss"]["mean"] == pytest.approx(ref.loss_mean, rel=1e-12)
        assert out["loss"]["n_scored"] == ref.n_scored
        assert out["accuracy"] == ref.accuracy
    assert out["confidence"]["mean"] == pytest.approx(ref.confidence_mean, rel=1e-12)
    assert out["flagged"]["indices"] == ref.flagged_indices[:MAX_JSON_INDICES].tolist()
    assert out["flagged"]["count"] == ref.flagged_indices.size
    assert out["flagged"]["indices_truncated"] == (ref.flagged_indices.size > MAX_JSON_INDICES)
