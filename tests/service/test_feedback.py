"""The feedback loop over HTTP (API.md section 9): kept items, late labels, audit samples, the
calibration set's figures, the review queue. On SQLite and PostgreSQL.

The expected ``labeled`` / ``reviewed`` figures are computed here from first principles (numpy
over the predictions the test sent), never through xentcore.feedback.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tests.service.conftest import MakeClient, TestClient


@pytest.fixture
def fb(store_client: TestClient) -> TestClient:
    return store_client


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ece(conf: np.ndarray, correct: np.ndarray) -> float | None:
    if conf.size == 0:
        return None
    b = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    gap = sum(abs(correct[b == k].sum() - conf[b == k].sum()) for k in range(15))
    return float(gap / conf.size)


def _expected(p: np.ndarray, y: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """The labeled block of items with probabilities ``p`` and labels ``y``."""
    pred = p.argmax(axis=1)
    correct = pred == y
    top = p.max(axis=1)
    loss = -np.log(p[np.arange(len(y)), y])
    unflagged = ~flagged
    return {
        "n": len(y),
        "accuracy": float(correct.mean()) if len(y) else None,
        "loss_mean": float(loss.mean()) if len(y) else None,
        "ece": _ece(top, correct),
        "accepted_error_rate": float((~correct[unflagged]).mean()) if unflagged.any() else None,
    }


def _close(got: dict[str, Any], want: dict[str, Any], rel: float = 1e-6) -> None:
    assert got.keys() == want.keys(), (got, want)
    for key, value in want.items():
        if value is None or isinstance(value, int):
            assert got[key] == value, (key, got, want)
        else:
            assert got[key] == pytest.approx(value, rel=rel, abs=1e-12), (key, got, want)


def _batch(rng: np.random.Generator, n: int, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(0, 2, (n, k))
    return z, rng.integers(0, k, n)


def test_the_whole_loop(fb: TestClient) -> None:
    """Score with audit -> review queue -> late labels -> realized figures, all exact."""
    rng = np.random.default_rng(1)
    z1, y1 = _batch(rng, 40)
    ids1 = [f"a{i}" for i in range(40)]
    # batch 1 comes with its labels: every item enters the calibration set
    r1 = fb.post(
        "/v1/score",
        json={
            "predictions": z1.tolist(),
            "labels": y1.tolist(),
            "input_type": "logits",
            "ids": ids1,
            "stream": "loop",
            "flag": {"min_confidence": 0.6},
        },
    ).json()
    assert r1["recorded"] is True and "audit" not in r1
    # batch 2 without labels, audited at 0.5 with a seed
    z2, y2 = _batch(rng, 60)
    ids2 = [f"b{i}" for i in range(60)]
    body2 = {
        "predictions": z2.tolist(),
        "input_type": "logits",
        "ids": ids2,
        "stream": "loop",
        "flag": {"min_confidence": 0.6},
        "audit_rate": 0.5,
        "audit_seed": 7,
    }
    r2 = fb.post("/v1/score", json=body2).json()
    audit = np.array(r2["items"]["audit"])
    assert r2["audit"]["count"] == int(audit.sum()) == len(r2["audit"]["indices"])
    assert r2["audit"]["ids"] == [ids2[i] for i in np.flatnonzero(audit)]
    assert r2["audit"]["indices"] == np.flatnonzero(audit).tolist()
    expected_draw = np.random.default_rng(7).random(60) < 0.5
    assert audit.tolist() == expected_draw.tolist()  # reproducible with the seed

    # the review queue: audited and not labelled yet, newest first
    queue = fb.get("/v1/streams/loop/items", params={"audit": "true", "labeled": "false"}).json()
    assert [it["id"] for it in queue["items"]] == [ids2[i] for i in np.flatnonzero(audit)][::-1]
    assert all(it["label"] is None and it["label_source"] is None for it in queue["items"])

    # late labels: every audited item, and three flagged items that were not audited
    p2 = _softmax(z2)
    flagged2 = p2.max(axis=1) < 0.6
    reviewed = [i for i in np.flatnonzero(flagged2 & ~audit)[:3]]
    audited = np.flatnonzero(audit).tolist()
    send = audited + reviewed
    out = fb.post(
        "/v1/streams/loop/labels",
        json={
            "ids": [ids2[i] for i in send] + ["nope"],
            "labels": [int(y2[i]) for i in send] + [0],
        },
    )
    assert out.status_code == 200, out.text
    assert out.json() == {
        "matched": len(send),
        "replaced": 0,
        "unknown": 1,
        "unknown_ids": ["nope"],
    }

    summary = fb.get("/v1/streams/loop/summary").json()
    p1 = _softmax(z1)
    flagged1 = p1.max(axis=1) < 0.6
    cal_p = np.concatenate([p1, p2[audited]])
    cal_y = np.concatenate([y1, y2[audited]])
    cal_f = np.concatenate([flagged1, flagged2[audited]])
    _close(summary["total"]["labeled"], _expected(cal_p, cal_y, cal_f))
    rev_correct = (p2[reviewed].argmax(axis=1) == y2[reviewed]).mean() if reviewed else None
    assert summary["total"]["reviewed"]["n"] == len(reviewed)
    if reviewed:
        assert summary["total"]["reviewed"]["accuracy"] == pytest.approx(rev_correct)
    # the section-5 figures do not move with late labels
    assert summary["total"]["n_scored"] == 40
    assert summary["buckets"][0]["labeled"] == summary["total"]["labeled"]

    # sending the same labels again changes nothing; every id is a replacement
    again = fb.post(
        "/v1/streams/loop/labels",
        json={"ids": [ids2[i] for i in send], "labels": [int(y2[i]) for i in send]},
    ).json()
    assert again["matched"] == again["replaced"] == len(send) and again["unknown"] == 0
    assert fb.get("/v1/streams/loop/summary").json()["total"] == summary["total"]

    # a correction of a batch label replaces it in the calibration set
    fixed = int((y1[0] + 1) % 4)
    fb.post("/v1/streams/loop/labels", json={"ids": [ids1[0]], "labels": [fixed]})
    y1_fixed = y1.copy()
    y1_fixed[0] = fixed
    cal_y = np.concatenate([y1_fixed, y2[audited]])
    summary = fb.get("/v1/streams/loop/summary").json()
    _close(summary["total"]["labeled"], _expected(cal_p, cal_y, cal_f))
    item = fb.get("/v1/streams/loop/items", params={"limit": 1000}).json()["items"][-1]
    assert item["id"] == ids1[0] and item["label"] == fixed and item["label_source"] == "late"


def test_labels_are_refused_whole_when_one_is_wrong(fb: TestClient) -> None:
    z, _ = _batch(np.random.default_rng(2), 5, k=3)
    fb.post(
        "/v1/score",
        json={
            "predictions": z.tolist(),
            "input_type": "logits",
            "ids": list(range(5)),
            "stream": "s",
        },
    )
    bad = fb.post("/v1/streams/s/labels", json={"ids": [0, 1, 2], "labels": [1, 7, 0]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "labels", 1]
    assert "out of range" in bad.json()["detail"][0]["msg"]
    listed = fb.get("/v1/streams/s/items").json()["items"]
    assert all(it["label"] is None for it in listed)  # nothing applied
    cases = [
        ({"ids": [0, 1], "labels": [1]}, ["body", "labels"]),
        ({"ids": [0, 0], "labels": [1, 2]}, ["body", "ids", 1]),
        ({"ids": [0], "labels": ["cat"]}, ["body", "labels", 0]),
        ({"ids": [0], "labels": [[0, 1, 0]]}, ["body", "labels", 0]),
        ({"ids": [0], "labels": [1], "extra": 1}, ["body", "extra"]),
    ]
    for body, loc in cases:
        r = fb.post("/v1/streams/s/labels", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"][0]["loc"] == loc, (body, r.json())
    assert fb.post("/v1/streams/never/labels", json={"ids": [1], "labels": [0]}).status_code == 404
    assert fb.get("/v1/streams/never/items").status_code == 404


def test_audit_needs_stream_and_ids(client: TestClient) -> None:
    base = {"predictions": [0.2, 0.9], "audit_rate": 0.5}
    for body in (base, {**base, "stream": "s"}, {**base, "ids": ["a", "b"]}):
        r = client.post("/v1/score", json=body)
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "audit_rate"]
    r = client.post("/v1/score", json={**base, "audit_rate": 1.5, "stream": "s", "ids": [1, 2]})
    assert r.status_code == 422


def test_audit_share_over_a_large_batch_is_near_the_rate(client: TestClient) -> None:
    n, rate = 200_000, 0.03
    body = {
        "predictions": np.full(n, 0.7).tolist(),
        "ids": list(range(n)),
        "stream": "big",
        "audit_rate": rate,
        "audit_seed": 11,
        "per_item": False,
    }
    first = client.post("/v1/score", json=body).json()["audit"]
    share = first["count"] / n
    assert abs(share - rate) < 4 * math.sqrt(rate * (1 - rate) / n)
    second = client.post("/v1/score", json=body).json()["audit"]
    assert second["indices"] == first["indices"]
    fresh = client.post("/v1/score", json={**body, "audit_seed": None}).json()["audit"]
    assert fresh["indices"] != first["indices"]


def test_keep_items_false_and_no_ids_keep_nothing(client: TestClient) -> None:
    client.post(
        "/v1/score", json={"predictions": [0.2], "ids": ["x"], "stream": "k", "keep_items": False}
    )
    client.post("/v1/score", json={"predictions": [0.2], "stream": "k"})
    assert client.get("/v1/streams/k/items").json() == {"items": [], "next_cursor": None}
    r = client.post("/v1/streams/k/labels", json={"ids": ["x"], "labels": [1]}).json()
    assert r == {"matched": 0, "replaced": 0, "unknown": 1, "unknown_ids": ["x"]}


def test_every_task_takes_its_label_forms(fb: TestClient) -> None:
    # binary with names, multilabel rows, sequences verdicts
    fb.post(
        "/v1/score",
        json={"predictions": [0.9, 0.2], "ids": ["b0", "b1"], "stream": "bin",
              "class_names": ["no", "yes"]},
    )  # fmt: skip
    r = fb.post("/v1/streams/bin/labels", json={"ids": ["b0", "b1"], "labels": ["yes", 1]}).json()
    assert r["matched"] == 2
    labeled = fb.get("/v1/streams/bin/summary").json()["total"]["reviewed"]
    assert labeled == {"n": 2, "accuracy": 0.5}
    items = fb.get("/v1/streams/bin/items").json()["items"]
    assert [it["label"] for it in items] == ["yes", "yes"]
    assert [it["predicted"] for it in items] == ["no", "yes"]

    fb.post(
        "/v1/score",
        json={"predictions": [[0.9, 0.2, 0.7]], "task": "multilabel", "ids": ["m"],
              "stream": "ml", "audit_rate": 1.0},
    )  # fmt: skip
    r = fb.post("/v1/streams/ml/labels", json={"ids": ["m"], "labels": [[1, 0, 1]]}).json()
    assert r["matched"] == 1
    total = fb.get("/v1/streams/ml/summary").json()["total"]["labeled"]
    want = -(np.log(0.9) + np.log(0.8) + np.log(0.7)) / 3
    assert total["n"] == 1 and total["accuracy"] == 1.0
    assert total["loss_mean"] == pytest.approx(want, rel=1e-6)
    bad = fb.post("/v1/streams/ml/labels", json={"ids": ["m"], "labels": [[1, 0]]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "labels", 0]

    seqs = {
        "sequences": [
            {"id": "s0", "token_logprobs": [-0.1, -0.2]},
            {"id": "s1", "token_logprobs": [-2.0]},
        ],
        "stream": "llm",
        "audit_rate": 1.0,
        "audit_seed": 1,
    }
    out = fb.post("/v1/sequences/score", json=seqs).json()
    assert out["audit"]["count"] == 2 and [s["audit"] for s in out["sequences"]] == [True, True]
    r = fb.post("/v1/streams/llm/labels", json={"ids": ["s0", "s1"], "labels": [1, 0]}).json()
    assert r["matched"] == 2
    total = fb.get("/v1/streams/llm/summary").json()["total"]["labeled"]
    assert total["n"] == 2 and total["accuracy"] == 0.5 and total["loss_mean"] is None
    bad = fb.post("/v1/streams/llm/labels", json={"ids": ["s0"], "labels": [2]})
    assert bad.status_code == 422


def test_items_pages_and_filters(fb: TestClient) -> None:
    fb.post(
        "/v1/score",
        json={"predictions": [0.9, 0.55, 0.2, 0.51, 0.99], "ids": list(range(5)), "stream": "p",
              "flag": {"min_confidence": 0.6}},
    )  # fmt: skip
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = fb.get("/v1/streams/p/items", params=params).json()
        seen += [it["id"] for it in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [4, 3, 2, 1, 0]
    flagged = fb.get("/v1/streams/p/items", params={"flagged": "true"}).json()["items"]
    assert [it["id"] for it in flagged] == [3, 1]
    assert all(it["reasons"] == ["low_confidence"] for it in flagged)
    bad = fb.get("/v1/streams/p/items", params={"cursor": "xyz"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_a_labels_request_over_the_limits_is_a_413(make_client: MakeClient) -> None:
    client = make_client(max_items=10)
    client.post("/v1/score", json={"predictions": [0.4] * 5, "ids": list(range(5)), "stream": "l"})
    r = client.post("/v1/streams/l/labels", json={"ids": list(range(11)), "labels": [1] * 11})
    assert r.status_code == 413 and "XENT_MAX_ITEMS" in r.json()["detail"]
    small = make_client(max_body_bytes=1000)
    r = small.post("/v1/streams/l/labels", json={"ids": list(range(400)), "labels": [1] * 400})
    assert r.status_code == 413
    items = client.get("/v1/streams/l/items").json()["items"]
    assert all(it["label"] is None for it in items)  # nothing applied


def test_audit_bounds_and_ignored_items(fb: TestClient) -> None:
    base = {"predictions": [0.2, 0.9], "ids": ["a", "b"], "stream": "s", "audit_rate": 0.5}
    r = fb.post("/v1/score", json={**base, "audit_seed": -1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "audit_seed"]
    r = fb.post("/v1/score", json={**base, "keep_items": False})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "audit_rate"]
    # an item whose label was ignored in its batch is not in the calibration set: its late
    # label (not audited) is a reviewer's
    z = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    fb.post(
        "/v1/score",
        json={"predictions": z, "labels": [0, -100], "ignore_index": -100, "input_type": "logits",
              "ids": ["x", "y"], "stream": "ign"},
    )  # fmt: skip
    fb.post("/v1/streams/ign/labels", json={"ids": ["y"], "labels": [1]})
    total = fb.get("/v1/streams/ign/summary").json()["total"]
    assert total["labeled"]["n"] == 1 and total["reviewed"] == {"n": 1, "accuracy": 1.0}


def test_a_late_binary_label_is_clipped_like_its_batch(fb: TestClient) -> None:
    fb.post(
        "/v1/score",
        json={"predictions": [1.0], "ids": ["p"], "stream": "clip", "clip_eps": 1e-7,
              "audit_rate": 1.0},
    )  # fmt: skip
    fb.post("/v1/streams/clip/labels", json={"ids": ["p"], "labels": [0]})
    item = fb.get("/v1/streams/clip/items").json()["items"][0]
    assert item["loss"] == pytest.approx(-math.log(1e-7), rel=1e-9)
