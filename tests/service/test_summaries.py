"""``POST /v1/streams/{stream}/summaries``: a Summary scored elsewhere, recorded as one batch.

In process, on SQLite (the route writes through ``Store.record`` like every batch, which the
store tests cover on PostgreSQL too). The stream's figures after a recorded summary are those
of ``Summary.figures()``; a summary merged from parts gives the figures of the whole; a bad
body is a 422 naming the field; keys are checked like every ``/v1`` route; an Idempotency-Key
records once.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from service.client import Client, XentError
from service.middleware.auth import session_token
from service.schemas import SummaryRecorded, SummaryState
from service.schemas.summaries import _EXAMPLE
from tests.service.conftest import MakeClient, TestClient

PATH = "/v1/streams/nightly/summaries"


def scored(seed: int = 0, n: int = 3000, k: int = 5) -> xc.Summary:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, k))
    labels = rng.integers(0, k, n)
    result = xc.score(logits, labels, input_type="logits", flag={"min_confidence": 0.4})
    return xc.Summary.from_result(result)


def post(client: TestClient, body: Any, **headers: str) -> Any:
    return client.post(PATH, json=body, headers=headers)


def test_a_recorded_summary_counts_in_the_stream(client: TestClient) -> None:
    summary = scored()
    r = post(client, summary.to_dict())
    assert r.status_code == 200, r.text
    assert r.json() == {
        "stream": "nightly",
        "task": "multiclass",
        "n_items": 3000,
        "duplicate": False,
    }
    SummaryRecorded.model_validate(r.json())
    total = client.get("/v1/streams/nightly/summary").json()["total"]
    want = summary.figures()
    for key in ("n_items", "n_scored", "flagged", "low_confidence"):
        assert total[key] == want[key]
    for key in ("loss_mean", "confidence_mean", "flag_rate", "accuracy", "ece"):
        assert total[key] == pytest.approx(want[key], rel=1e-12)
    assert total["reliability"] == want["reliability"]
    (stream,) = client.get("/v1/streams").json()["streams"]
    assert (stream["stream"], stream["n_batches"], stream["tasks"]) == (
        "nightly",
        1,
        ["multiclass"],
    )
    metrics = client.get("/metrics").text
    assert 'xent_stream_items_scored_total{stream="nightly",task="multiclass"} 3000.0' in metrics
    flagged = "xent_stream_items_flagged_total"
    labels = '{reason="low_confidence",stream="nightly",task="multiclass"}'
    assert f"{flagged}{labels} {want['low_confidence']}.0" in metrics


def test_parts_add_up_to_the_whole(client: TestClient) -> None:
    """Three summaries of parts (one of them sequences' in its own stream): the stream's total
    is the merged Summary's figures."""
    parts = [scored(seed) for seed in (1, 2, 3)]
    for part in parts:
        assert post(client, part.to_dict()).status_code == 200
    whole = sum(parts, xc.Summary()).figures()
    total = client.get("/v1/streams/nightly/summary").json()["total"]
    for key in ("loss_mean", "confidence_mean", "accuracy", "ece"):
        assert total[key] == pytest.approx(whole[key], rel=1e-12)
    assert total["n_items"] == 9000
    llm = xc.Summary.from_result(xc.score_sequences([[-0.1, -2.0], [-0.5]], min_confidence=0.5))
    r = client.post("/v1/streams/llm/summaries", json=llm.to_dict())
    assert r.status_code == 200 and r.json()["task"] == "sequences"
    got = client.get("/v1/streams/llm/summary").json()["total"]
    assert got["loss_mean"] == pytest.approx(llm.figures()["loss_mean"], rel=1e-12)


def test_an_idempotency_key_records_once(client: TestClient) -> None:
    body = scored().to_dict()
    first = post(client, body, **{"Idempotency-Key": "nightly-2026-12-03"})
    again = post(client, body, **{"Idempotency-Key": "nightly-2026-12-03"})
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert client.get("/v1/streams").json()["streams"][0]["n_batches"] == 1
    metrics = client.get("/metrics").text
    assert 'xent_stream_items_scored_total{stream="nightly",task="multiclass"} 3000.0' in metrics
    bad = post(client, body, **{"Idempotency-Key": "x" * 201})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(_EXAMPLE)
    body.update(changes)
    return body


def _bins(**at: list[float]) -> list[list[float]]:
    """The example's bin_count with some bins replaced."""
    out: list[list[float]] = copy.deepcopy(_EXAMPLE["bin_count"])
    for b, pair in at.items():
        out[int(b.removeprefix("b"))] = pair
    return out


BAD = [
    # the shape (pydantic)
    ({"format": 2}, ["format"]),
    ({"format": "1"}, ["format"]),
    ({"task": None}, ["task"]),
    ({"task": "regression"}, ["task"]),
    ({"n_classes": 0}, ["n_classes"]),
    ({"n_items": -1}, ["n_items"]),
    ({"n_items": 1.5}, ["n_items"]),
    ({"n_items": True}, ["n_items"]),
    ({"flagged": 2**53 + 1}, ["flagged"]),
    ({"loss_sum": [1.0]}, ["loss_sum", 1]),
    ({"loss_sum": ["inf", 0.0]}, ["loss_sum", 0]),
    ({"weight_sum": "4"}, ["weight_sum"]),
    ({"bin_count": [[0.0, 0.0]] * 14}, ["bin_count"]),
    ({"bin_correct_sum": [[0.0, 0.0]] * 14 + [[0.0, "x"]]}, ["bin_correct_sum", 14, 1]),
    ({"surprise": 1}, ["surprise"]),
    # the values (Summary.from_dict)
    ({"loss_sum": [1.0, 0.5]}, ["loss_sum"]),
    (
        {"bin_confidence_sum": [[0.0, 0.0]] * 3 + [[1.0, 1.0]] + [[0.0, 0.0]] * 11},
        ["bin_confidence_sum", 3],
    ),
    # the relations between the counts
    ({"flagged": 5}, ["flagged"]),
    ({"n_scored": 9}, ["n_scored"]),
    ({"correct": 5}, ["correct"]),
    ({"flagged": 1, "low_confidence": 2}, ["low_confidence"]),
    ({"loss_sum": [-1.0, 0.0]}, ["loss_sum"]),
    ({"bin_count": _bins(b2=[0.5, 0.0])}, ["bin_count", 2]),
    ({"bin_count": _bins(b0=[3.0, 0.0])}, ["bin_count"]),
    ({"bin_correct_sum": _bins(b7=[2.0, 0.0])}, ["bin_correct_sum", 7]),
]


@pytest.mark.parametrize(("changes", "loc"), BAD)
def test_a_bad_summary_is_a_422_naming_the_field(
    client: TestClient, changes: dict[str, Any], loc: list[Any]
) -> None:
    r = post(client, _with(**changes))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == ["body", *loc], detail
    assert client.get("/v1/streams").json()["streams"] == []  # nothing recorded


def test_missing_keys_and_bodies_that_are_not_summaries(client: TestClient) -> None:
    body = _with()
    del body["flagged"]
    r = post(client, body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "flagged"]
    for raw in (b"[]", b"{", b"null", b'{"format": 1}'):
        r = client.post(PATH, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, raw
    r = client.post(PATH, content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert client.post("/v1/streams/bad name!/summaries", json=_EXAMPLE).status_code == 422


def test_the_example_is_a_real_summary(client: TestClient) -> None:
    """The documented example is what ``Summary.to_dict`` gives, and is accepted."""
    example = xc.Summary.from_result(xc.score([0.9, 0.2, 0.6, 0.5], [1, 0, 0, 1]))
    assert xc.Summary.from_dict(_EXAMPLE) == example
    assert SummaryState.model_json_schema()["examples"] == [_EXAMPLE]
    assert post(client, _EXAMPLE).status_code == 200


def test_keys_are_checked_as_on_every_v1_route(make_client: MakeClient) -> None:
    client = make_client(api_keys=["k-123"])
    body = scored().to_dict()
    assert post(client, body).status_code == 401
    assert post(client, body, **{"X-API-Key": "wrong"}).status_code == 401
    client.cookies.set("xent_session", session_token("k-123"))  # the dashboard's cookie
    assert post(client, body).status_code == 401  # reads only, never writes
    client.cookies.clear()
    assert post(client, body, Authorization="Bearer k-123").status_code == 200


def test_a_store_that_is_down_is_a_503(client: TestClient) -> None:
    client.app.state.store = None  # type: ignore[attr-defined]
    r = post(client, scored().to_dict())
    assert r.status_code == 503
    assert "xent_store_errors_total 1.0" in client.get("/metrics").text


def test_the_python_client(client: TestClient) -> None:
    """``Client.record_summary`` takes a Summary or its dict; errors are XentError."""
    xent = Client(http=client)
    summary = scored()
    got = xent.record_summary("nightly", summary, idempotency_key="run-1")
    assert got == SummaryRecorded(
        stream="nightly", task="multiclass", n_items=3000, duplicate=False
    )
    assert xent.record_summary("nightly", summary.to_dict(), idempotency_key="run-1").duplicate
    with pytest.raises(XentError) as err:
        xent.record_summary("nightly", _with(flagged=99))
    assert err.value.status_code == 422 and "flagged" in str(err.value)
