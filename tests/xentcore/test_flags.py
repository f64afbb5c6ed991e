"""The one reason builder and the one flagged-rows builder."""

from __future__ import annotations

import math

import numpy as np

import xentcore as xc
from xentcore.flags import flagged_rows, reason_lists

P3 = [[0.4, 0.3, 0.3], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.34, 0.33, 0.33]]


def test_reasons_at_indices_are_the_reasons_of_those_items() -> None:
    rng = np.random.default_rng(9)
    z = rng.normal(size=(300, 5)) * 2
    y = rng.integers(0, 5, 300)
    flag = {"min_confidence": 0.5, "max_loss": 1.5, "misclassified": True}
    r = xc.score(z, y, input_type="logits", flag=flag)
    every = reason_lists(r.masks)
    assert every == r.reasons
    picked = np.array([0, 7, 7, 299, 150], dtype=np.intp)
    assert reason_lists(r.masks, picked) == [every[i] for i in picked.tolist()]
    assert reason_lists(r.masks, r.flagged_indices) == [
        every[i] for i in r.flagged_indices.tolist()
    ]
    assert all(every[i] for i in r.flagged_indices.tolist())


def test_flagged_rows_with_ids_and_labels() -> None:
    flag = {"min_confidence": 0.5, "misclassified": True}
    r = xc.score(P3, [0, 1, 1, -1], ignore_index=-1, flag=flag)
    rows = flagged_rows(r, ["a", "b", "c", "d"])
    assert [row["index"] for row in rows] == [0, 2, 3]
    assert list(rows[0]) == ["index", "id", "confidence", "loss", "reasons"]
    assert rows[0]["id"] == "a" and rows[0]["reasons"] == ["low_confidence"]
    assert rows[0]["confidence"] == 0.4 and rows[0]["loss"] == -math.log(0.4)
    assert rows[1]["reasons"] == ["misclassified"]
    assert rows[2]["id"] == "d" and math.isnan(rows[2]["loss"])  # ignored: no loss
    assert rows[2]["reasons"] == ["low_confidence"]


def test_flagged_rows_without_ids_or_labels() -> None:
    r = xc.score(P3)
    rows = flagged_rows(r, None)
    assert rows == [
        {"index": 0, "confidence": 0.4, "loss": None, "reasons": ["low_confidence"]},
        {"index": 3, "confidence": 0.34, "loss": None, "reasons": ["low_confidence"]},
    ]
    assert flagged_rows(xc.score(P3, flag={"min_confidence": None}), None) == []
