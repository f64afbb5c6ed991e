"""The flagged-items payload: one value per batch, decoded back exactly."""

from __future__ import annotations

import math
import struct

import numpy as np
import orjson
import pytest

import xentcore as xc
from service.recording import flagged_items, sequence_items
from service.store.payload import FlaggedItems, decode, encode, reason_bits
from xentcore.flags import truth_columns


def _same(a: FlaggedItems, b: FlaggedItems) -> None:
    assert np.array_equal(a.index, b.index)
    assert np.array_equal(a.confidence, b.confidence, equal_nan=True)
    assert (a.loss is None) == (b.loss is None)
    if a.loss is not None and b.loss is not None:
        assert np.array_equal(a.loss, b.loss, equal_nan=True)
    assert a.reason_names == b.reason_names and np.array_equal(a.reasons, b.reasons)
    rows = np.arange(len(a))
    assert a.id_list(rows) == b.id_list(rows)
    assert a.shown(a.predicted, rows) == b.shown(b.predicted, rows)
    assert a.shown(a.label, rows) == b.shown(b.label, rows)


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
    rows = np.arange(len(items))
    assert set(items.shown(items.predicted, rows)) <= {"c0", "c1", "c2", "c3"}
    multi = xc.score(
        rng.uniform(size=(20, 3)), rng.integers(0, 2, (20, 3)), task="multilabel",
        flag={"min_confidence": 0.9},
    )  # fmt: skip
    m_items = flagged_items(multi, None)
    assert m_items is not None and m_items.ids is None
    assert isinstance(m_items.predicted, list)
    assert all(isinstance(p, list) for p in m_items.predicted)
    _same(m_items, decode(encode(m_items)))
    seq = xc.score_sequences([[-0.1, -3.0], [-0.01], [-5.0, -0.2, -0.3]], min_token_probability=0.1)
    s_items = sequence_items(seq, ["a", "b", "c"])
    assert s_items is not None
    _same(s_items, decode(encode(s_items)))
    assert flagged_items(xc.score([0.9, 0.1], flag={"min_confidence": 0.01}), None) is None


@pytest.mark.parametrize("bad", [b"", b"nope", b"XFI3\x00\x00\x00\x00", b"XFI2\x00\x00\x00\x00"])
def test_other_bytes_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode(bad)


def _response_columns(r: xc.ScoreResult) -> tuple[list[object], list[object]]:
    """``predicted`` and ``label`` of the flagged items as the scoring response shows them."""
    return truth_columns(r, r.flagged_indices)


@pytest.mark.parametrize(
    "case", ["names", "indices", "binary", "binary-names", "ignored", "no-labels", "multilabel"]
)
def test_stored_classes_show_as_the_response_did(case: str) -> None:
    """What /flagged shows for an item is what the scoring response showed for it."""
    rng = np.random.default_rng(4)
    flag = {"min_confidence": 0.99}
    if case in ("names", "indices", "ignored", "no-labels"):
        names = [f"c{k}" for k in range(5)] if case == "names" else None
        labels: object = rng.integers(0, 5, 40).tolist()
        if case == "ignored":
            labels = [-100 if i % 3 == 0 else y for i, y in enumerate(labels)]  # type: ignore[attr-defined]
        kwargs: dict[str, object] = {"ignore_index": -100} if case == "ignored" else {}
        r = xc.score(
            rng.standard_normal((40, 5)),
            None if case == "no-labels" else labels,
            input_type="logits",
            class_names=names,
            flag=flag,
            **kwargs,
        )
    elif case.startswith("binary"):
        names = ["no", "yes"] if case == "binary-names" else None
        r = xc.score(rng.uniform(size=40), rng.integers(0, 2, 40), class_names=names, flag=flag)
    else:
        r = xc.score(
            rng.uniform(size=(40, 3)), rng.integers(0, 2, (40, 3)), task="multilabel",
            class_names=["a", "b", "c"], flag=flag,
        )  # fmt: skip
    items = flagged_items(r, None)
    assert items is not None
    back = decode(encode(items))
    rows = np.arange(len(back))
    predicted, label = _response_columns(r)
    assert back.shown(back.predicted, rows) == predicted
    want_label = [None] * len(rows) if r.true_class is None else label
    assert back.shown(back.label, rows) == want_label


def test_positions_are_a_bitmap_when_dense_and_indices_when_sparse() -> None:
    def items(index: list[int], n: int) -> FlaggedItems:
        k = len(index)
        return FlaggedItems(
            index=np.array(index, dtype=np.int64),
            confidence=np.zeros(k),
            loss=None,
            reason_names=("low_confidence",),
            reasons=np.ones(k, dtype=np.uint8),
            batch_items=n,
        )

    dense = items(list(range(0, 100_000, 2)), 100_000)
    sparse = items([3, 99_999], 100_000)
    assert len(encode(dense)) < 100_000 // 8 + 50_000 * 10 + 400  # bits, not 4 bytes each
    for case in (dense, sparse, items([7], 8), items([2**40], 2**40 + 1)):
        back = decode(encode(case))
        assert np.array_equal(back.index, case.index) and back.index.dtype == np.int64


def test_version_1_payloads_are_still_read() -> None:
    """Stores written before version 2 (rows migrated by revision 0002) keep their items."""
    header = orjson.dumps(
        {
            "n": 2,
            "reasons": ["low_confidence", "high_loss"],
            "arrays": [["index", "<i8", 2], ["confidence", "<f8", 2], ["reasons", "|u1", 2]],
            "id": ["a", 7],
            "predicted": ["cat", 1],
            "label": [None, "dog"],
        }
    )
    arrays = [np.array([4, 9], "<i8"), np.array([0.25, 0.5], "<f8"), np.array([1, 3], "|u1")]
    v1 = b"XFI1" + struct.pack("<I", len(header)) + header + b"".join(a.tobytes() for a in arrays)
    back = decode(v1)
    rows = np.arange(2)
    assert back.index.tolist() == [4, 9] and back.ids == ["a", 7]
    assert back.shown(back.predicted, rows) == ["cat", 1]
    assert back.shown(back.label, rows) == [None, "dog"]
    assert back.reason_lists(rows) == [["low_confidence"], ["low_confidence", "high_loss"]]


def test_ids_are_kept_whole_when_most_items_are_flagged() -> None:
    rng = np.random.default_rng(9)
    z = rng.standard_normal((200, 3))
    ids = [f"i{k}" for k in range(200)]
    for threshold, whole in ((0.999, True), (0.5, False)):
        r = xc.score(z, input_type="logits", flag={"min_confidence": threshold})
        items = flagged_items(r, ids)
        assert items is not None and items.ids_of_batch is whole
        back = decode(encode(items))
        assert back.ids_of_batch is whole
        want = [ids[i] for i in r.flagged_indices.tolist()]
        assert back.id_list(np.arange(len(back))) == want
        assert back.id_list(np.array([len(back) - 1])) == want[-1:]
