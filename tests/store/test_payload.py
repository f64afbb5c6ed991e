"""The flagged-items payload: one value per batch, decoded back exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xentcore as xc
from service.recording import flagged_items, sequence_items
from service.store.payload import FlaggedItems, decode, encode, reason_bits


def _same(a: FlaggedItems, b: FlaggedItems) -> None:
    assert np.array_equal(a.index, b.index)
    assert np.array_equal(a.confidence, b.confidence, equal_nan=True)
    assert (a.loss is None) == (b.loss is None)
    if a.loss is not None and b.loss is not None:
        assert np.array_equal(a.loss, b.loss, equal_nan=True)
    assert a.reason_names == b.reason_names and np.array_equal(a.reasons, b.reasons)
    assert (a.ids, a.predicted, a.label) == (b.ids, b.predicted, b.label)


def test_round_trip_keeps_every_value() -> None:
    items = FlaggedItems(
        index=np.array([0, 5, 2**40], dtype=np.int64),
        confidence=np.array([0.1, math.nan, 1 / 3]),
        loss=np.array([math.nan, 2.5, 1e-300]),
        reason_names=("low_confidence", "high_loss", "misclassified"),
        reasons=reason_bits([np.array([1, 0, 1], bool), np.array([0, 1, 1], bool)]),
        ids=["a;'--", 7, None],
        predicted=["cat", 1, [0, 2]],
        label=[None, "dog", [1]],
    )
    back = decode(encode(items))
    _same(items, back)
    assert back.reason_lists(np.arange(3)) == [
        ["low_confidence"],
        ["high_loss"],
        ["low_confidence", "high_loss"],
    ]


def test_results_round_trip_including_names_multilabel_and_sequences() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((50, 4))
    r = xc.score(
        z,
        [f"c{k}" for k in rng.integers(0, 4, 50)],
        input_type="logits",
        class_names=["c0", "c1", "c2", "c3"],
        flag={"min_confidence": 0.6, "misclassified": True},
    )
    items = flagged_items(r, [f"id{i}" for i in range(50)])
    assert items is not None and len(items) == int(r.flagged.sum())
    _same(items, decode(encode(items)))
    assert set(items.predicted or []) <= {"c0", "c1", "c2", "c3"}
    multi = xc.score(
        rng.uniform(size=(20, 3)), rng.integers(0, 2, (20, 3)), task="multilabel",
        flag={"min_confidence": 0.9},
    )  # fmt: skip
    m_items = flagged_items(multi, None)
    assert m_items is not None and m_items.ids is None
    assert all(isinstance(p, list) for p in m_items.predicted or [])
    _same(m_items, decode(encode(m_items)))
    seq = xc.score_sequences([[-0.1, -3.0], [-0.01], [-5.0, -0.2, -0.3]], min_token_probability=0.1)
    s_items = sequence_items(seq, ["a", "b", "c"])
    assert s_items is not None
    _same(s_items, decode(encode(s_items)))
    assert flagged_items(xc.score([0.9, 0.1], flag={"min_confidence": 0.01}), None) is None


@pytest.mark.parametrize("bad", [b"", b"nope", b"XFI2\x00\x00\x00\x00"])
def test_other_bytes_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode(bad)
