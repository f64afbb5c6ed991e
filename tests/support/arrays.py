"""Reproducible test arrays for the file-scoring tests (library and CLI): N x K batches."""

from __future__ import annotations

from typing import Any

import numpy as np

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
