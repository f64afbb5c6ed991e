"""/v1/sequences/score: plain token log-probs and OpenAI log-prob objects."""

from __future__ import annotations

import math
from typing import Any

import pytest

from service.schemas import SequencesResponse


def score(client: Any, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post("/v1/sequences/score", json=body)
    assert response.status_code == status, response.text
    if status == 200:
        SequencesResponse.model_validate(response.json())
    return dict(response.json())


def test_plain_sequences_hand_computed(client: Any) -> None:
    out = score(
        client,
        {
            "sequences": [
                {"id": "a", "token_logprobs": [-0.1, -0.2, -2.0]},
                {"id": 7, "token_logprobs": [-0.05]},
            ]
        },
    )
    mean = -2.3 / 3
    assert out["sequences"][0] == {
        "id": "a",
        "n_tokens": 3,
        "mean_logprob": pytest.approx(mean, rel=1e-15),
        "nll": pytest.approx(-mean, rel=1e-15),
        "perplexity": pytest.approx(math.exp(-mean), rel=1e-15),
        "confidence": pytest.approx(math.exp(mean), rel=1e-15),
        "min_token_logprob": -2.0,
        "min_token_index": 2,
        "flagged": True,
        "reasons": ["low_confidence"],
    }
    assert out["sequences"][1]["id"] == 7
    assert out["sequences"][1]["flagged"] is False and out["sequences"][1]["reasons"] == []
    assert out["nll"] == pytest.approx(2.35 / 4, rel=1e-15)
    assert out["perplexity"] == pytest.approx(math.exp(2.35 / 4), rel=1e-15)
    assert out["warnings"] == [] and out["recorded"] is None


def test_flag_rules(make_client: Any) -> None:
    client = make_client(min_confidence=0.99)
    seqs = [{"token_logprobs": [-0.1, -0.2, -2.0]}, {"token_logprobs": [-0.05]}]
    out = score(client, {"sequences": seqs})
    assert [s["reasons"] for s in out["sequences"]] == [["low_confidence"], ["low_confidence"]]
    out = score(client, {"sequences": seqs, "flag": {"min_token_probability": 0.2}})
    assert [s["reasons"] for s in out["sequences"]] == [["low_token_probability"], []]
    out = score(client, {"sequences": seqs, "flag": {}})
    assert [s["flagged"] for s in out["sequences"]] == [False, False]


def test_openai_logprobs_with_censored_tokens(client: Any) -> None:
    content = [
        {
            "token": "Hi",
            "logprob": -9999.0,
            "bytes": [72, 105],
            "top_logprobs": [
                {"token": "Hello", "logprob": -0.2, "bytes": None},
                {"token": "Hey", "logprob": -3.0, "bytes": None},
            ],
        },
        {"token": "!", "logprob": -0.5, "bytes": [33], "top_logprobs": []},
        {"token": "?", "logprob": -9999.0, "bytes": [63], "top_logprobs": []},
    ]
    out = score(
        client, {"sequences": [{"id": "c", "logprobs": {"content": content, "refusal": None}}]}
    )
    seq = out["sequences"][0]
    assert seq["n_tokens"] == 2
    assert seq["mean_logprob"] == pytest.approx(-1.75, rel=1e-15)
    assert seq["min_token_logprob"] == -3.0 and seq["min_token_index"] == 0
    assert len(out["warnings"]) == 2
    assert all(w.startswith("sequences[0]: 1 censored") for w in out["warnings"])


def test_openai_matches_plain(client: Any) -> None:
    values = [-0.3, -0.01, -1.2]
    plain = score(client, {"sequences": [{"token_logprobs": values}]})
    openai = score(
        client,
        {
            "sequences": [
                {
                    "logprobs": {
                        "content": [{"token": str(i), "logprob": v} for i, v in enumerate(values)]
                    }
                }
            ]
        },
    )
    assert plain["sequences"] == openai["sequences"]


@pytest.mark.parametrize(
    ("sequence", "loc"),
    [
        ({"token_logprobs": []}, ["sequences", 0, "token_logprobs"]),
        ({"token_logprobs": [-0.1, 0.5]}, ["sequences", 0, "token_logprobs", 1]),
        ({"token_logprobs": [-0.1, True]}, ["sequences", 0, "token_logprobs", 1]),
        ({"token_logprobs": [-0.1, "x"]}, ["sequences", 0, "token_logprobs", 1]),
        ({}, ["sequences", 0]),
        ({"token_logprobs": [-0.1], "logprobs": {"content": []}}, ["sequences", 0]),
        ({"token_logprobs": [-0.1], "tokens": ["a", "b"]}, ["sequences", 0]),
        ({"token_logprobs": [-0.1], "extra": 1}, ["sequences", 0, "extra"]),
        ({"logprobs": {"content": []}}, ["sequences", 0, "logprobs", "content"]),
        (
            {"logprobs": {"content": [{"token": "a", "logprob": -9999.0}]}},
            ["sequences", 0, "logprobs", "content"],
        ),
        (
            {"logprobs": {"content": [{"token": "a", "logprob": 0.1}]}},
            ["sequences", 0, "logprobs", "content", 0, "logprob"],
        ),
        ({"logprobs": {"content": None}}, ["sequences", 0, "logprobs", "content"]),
        ({"id": True, "token_logprobs": [-0.1]}, ["sequences", 0, "id"]),
    ],
)
def test_invalid_sequences(client: Any, sequence: dict[str, Any], loc: list[Any]) -> None:
    out = score(client, {"sequences": [sequence]}, status=422)
    assert out["detail"][0]["loc"] == ["body", *loc]


def test_nan_token_logprob(client: Any) -> None:
    response = client.post(
        "/v1/sequences/score",
        content=b'{"sequences": [{"token_logprobs": [-0.1, NaN]}]}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sequences", 0, "token_logprobs", 1]


def test_empty_batch_and_bad_flag(client: Any) -> None:
    out = score(client, {"sequences": []}, status=422)
    assert out["detail"][0]["loc"] == ["body", "sequences"]
    out = score(
        client,
        {"sequences": [{"token_logprobs": [-0.1]}], "flag": {"min_confidence": 2}},
        status=422,
    )
    assert out["detail"][0]["loc"] == ["body", "flag", "min_confidence"]


def test_stream_records_sequence_batches(client: Any) -> None:
    body = {
        "sequences": [
            {"id": "s0", "token_logprobs": [-0.1, -0.2, -2.0]},
            {"id": "s1", "token_logprobs": [-0.05]},
        ],
        "stream": "llm",
    }
    out = score(client, body)
    assert out["recorded"] is True and out["warnings"] == []
    again = client.post("/v1/sequences/score", json=body, headers={"Idempotency-Key": "k"})
    assert again.json()["recorded"] is True
    summary = client.get("/v1/streams/llm/summary").json()["total"]
    # two batches of 2 sequences; loss_mean is the token-weighted NLL: 2 x 2.35 / 2 x 4 tokens
    assert summary["n_items"] == 4 and summary["n_scored"] == 4
    assert summary["loss_mean"] == pytest.approx(2.35 / 4, rel=1e-12)
    assert summary["accuracy"] is None and summary["ece"] is None
    assert summary["flagged"] == 2 and summary["low_confidence"] == 2
    flagged = client.get("/v1/streams/llm/flagged").json()["items"]
    assert [(f["id"], f["index"], f["reasons"]) for f in flagged] == [
        ("s0", 0, ["low_confidence"]),
        ("s0", 0, ["low_confidence"]),
    ]
    assert flagged[0]["loss"] == pytest.approx(2.3 / 3, rel=1e-12)
    assert flagged[0]["predicted"] is None and flagged[0]["label"] is None
    metrics = client.get("/metrics").text
    assert 'xent_stream_items_scored_total{stream="llm",task="sequences"} 4.0' in metrics


def test_openai_left_out_token_keeps_original_index(client: Any) -> None:
    content = [
        {"token": "a", "logprob": -9999.0},
        {"token": "b", "logprob": -0.1},
        {"token": "c", "logprob": -2.0},
    ]
    out = score(client, {"sequences": [{"logprobs": {"content": content}}]})
    assert out["sequences"][0]["n_tokens"] == 2
    assert out["sequences"][0]["min_token_index"] == 2  # content[2], not the shortened list's 1
    assert "left out" in out["warnings"][0]
