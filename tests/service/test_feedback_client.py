"""The feedback loop through ``service.client`` (API.md section 9): audited scoring, the review
queue (``items``), late labels (``label``), their errors and paging, with both clients against
the app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import numpy as np
import pytest

from service.client import AsyncClient, Client, XentError
from service.client import endpoints as ep
from service.schemas import (
    FlaggedItemsResponse,
    ItemsResponse,
    KeptItem,
    LabelsResponse,
    ScoreResponse,
    SequencesResponse,
    StreamsResponse,
    SummaryResponse,
)

IDS = [f"q{i}" for i in range(30)]


def _probabilities(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(3), n)


@pytest.fixture
def xent(client: Any) -> Client:
    return Client("http://testserver", http=client, binary_threshold=None)


def _audited(xent: Client, stream: str = "model:v3") -> tuple[ScoreResponse, list[str]]:
    """A batch of 30 scored under ``stream`` with an audit draw; returns it and the audited ids
    in the order they were scored."""
    r = xent.score(_probabilities(30), ids=IDS, stream=stream, audit_rate=0.4, audit_seed=5)
    assert r.audit is not None and r.items is not None and r.items.audit is not None
    audited = [IDS[i] for i in r.audit.indices]
    assert 0 < len(audited) < 30
    return r, audited


def test_score_with_audit_and_the_review_queue(xent: Client) -> None:
    r, audited = _audited(xent)
    assert r.recorded is True
    assert r.audit is not None and r.items is not None and r.items.audit is not None
    draw = np.random.default_rng(5).random(30) < 0.4  # the seed draws the same items
    assert r.items.audit == draw.tolist()
    assert r.audit.count == len(audited) and r.audit.ids == audited
    # the same request without audit_rate: no audit block and no audit column
    plain = xent.score(_probabilities(2), ids=["x", "y"], stream="model:v3")
    assert plain.audit is None and plain.items is not None and plain.items.audit is None

    queue = xent.items("model:v3", audit=True, labeled=False)
    assert isinstance(queue, ItemsResponse) and queue.next_cursor is None
    assert [it.id for it in queue.items] == audited[::-1]  # newest first
    first = queue.items[0]
    assert isinstance(first, KeptItem)
    assert first.audit is True and first.label is None and first.label_source is None
    assert first.index == IDS.index(str(first.id)) and first.predicted in (0, 1, 2)
    assert first.nll is None and first.n_tokens is None  # classifier items
    assert datetime.fromisoformat(first.time.replace("Z", "+00:00")) <= datetime.now(UTC)


def test_label_counts_and_the_queue_empties(xent: Client) -> None:
    r, audited = _audited(xent)
    assert r.items is not None
    predicted = dict(zip(IDS, r.items.predicted, strict=True))
    labels = [predicted[i] for i in audited]  # every audited item right
    out = xent.label("model:v3", [*audited, "never-scored"], [*labels, 0])
    assert isinstance(out, LabelsResponse)
    assert (out.matched, out.replaced, out.unknown) == (len(audited), 0, 1)
    assert out.unknown_ids == ["never-scored"]
    assert xent.items("model:v3", audit=True, labeled=False).items == []
    done = xent.items("model:v3", labeled=True).items
    assert [it.id for it in done] == audited[::-1]
    assert all(it.label_source == "late" and it.correct is True for it in done)
    assert all(it.loss is not None and it.loss > 0 for it in done)
    again = xent.label("model:v3", audited, np.array(labels))  # numpy labels are fine
    assert again.matched == again.replaced == len(audited)


def test_bad_label_and_unknown_stream(xent: Client) -> None:
    _audited(xent)
    with pytest.raises(XentError) as caught:
        xent.label("model:v3", ["q0", "q1"], [1, 7])
    assert caught.value.status_code == 422
    assert caught.value.detail[0]["loc"] == ["body", "labels", 1]
    assert str(caught.value).startswith("HTTP 422: labels.1: ")
    assert all(it.label is None for it in xent.items("model:v3", limit=1000).items)
    with pytest.raises(XentError) as missing:
        xent.label("never", ["a"], [0])
    assert missing.value.status_code == 404
    with pytest.raises(XentError) as missing:
        xent.items("never")
    assert missing.value.status_code == 404
    with pytest.raises(XentError) as bad_cursor:
        xent.items("model:v3", cursor="xyz")
    assert bad_cursor.value.status_code == 422
    assert bad_cursor.value.detail[0]["loc"] == ["query", "cursor"]


def test_paging_and_filters(xent: Client) -> None:
    p = np.array([0.9, 0.55, 0.2, 0.51, 0.99])
    xent.score(p, ids=list(range(5)), stream="pages", flag={"min_confidence": 0.6})
    seen: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = xent.items("pages", limit=2, cursor=cursor)
        seen += [it.id for it in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [4, 3, 2, 1, 0] and pages == 3
    flagged = xent.items("pages", flagged=True).items
    assert [it.id for it in flagged] == [3, 1]
    assert all(it.reasons == ["low_confidence"] for it in flagged)
    assert [it.id for it in xent.items("pages", flagged=False).items] == [4, 2, 0]
    # time bounds: strings or datetimes, a naive one taken as UTC
    later = datetime.now(UTC) + timedelta(hours=1)
    assert xent.items("pages", since=later).items == []
    assert len(xent.items("pages", until=later.replace(tzinfo=None)).items) == 5
    assert len(xent.items("pages", since="2000-01-01T00:00:00Z").items) == 5


def test_sequences_audit_and_verdicts(xent: Client) -> None:
    seqs = [{"id": "s0", "token_logprobs": [-0.1, -0.2]}, {"id": "s1", "token_logprobs": [-2.0]}]
    out = xent.score_sequences(seqs, stream="llm", audit_rate=1.0, audit_seed=1)
    assert isinstance(out, SequencesResponse)
    assert out.audit is not None and out.audit.count == 2 and out.audit.ids == ["s0", "s1"]
    assert [s.audit for s in out.sequences] == [True, True]
    kept = xent.items("llm").items
    assert [it.id for it in kept] == ["s1", "s0"]
    assert kept[0].predicted is None and kept[0].n_tokens == 1 and kept[0].nll == 2.0
    assert xent.label("llm", ["s0", "s1"], [1, 0]).matched == 2
    assert [it.label for it in xent.items("llm").items] == [0, 1]
    # keep_items=False keeps nothing, and without audit_rate there is no audit
    quiet = xent.score_sequences([{"id": "s2", "token_logprobs": [-0.3]}], stream="llm",
                                 keep_items=False)  # fmt: skip
    assert quiet.audit is None and quiet.sequences[0].audit is None
    assert len(xent.items("llm").items) == 2


def test_what_the_builders_make(xent: Client) -> None:
    get = ep.items(
        xent,
        "a:b/c",
        since=datetime(2026, 1, 2, 3, 4, 5),
        audit=True,
        labeled=False,
        limit=20,
        cursor="abc",
    )
    assert (get.method, get.path, get.parts) == ("GET", "/v1/streams/a%3Ab%2Fc/items", [])
    assert get.params == {
        "limit": "20",
        "since": "2026-01-02T03:04:05+00:00",
        "audit": "true",
        "labeled": "false",
        "cursor": "abc",
    }
    post = ep.label(xent, "s", ["a"], [1])
    assert (post.method, post.path, post.params) == ("POST", "/v1/streams/s/labels", None)
    assert b"".join(bytes(p) for p in post.parts) == b'{"ids":["a"],"labels":[1]}'
    # the existing builders are unchanged: POST without a query string
    score = ep.score(xent, [0.2, 0.9])
    assert (score.method, score.params) == ("POST", None)
    seq = ep.score_sequences(xent, [[-0.1]])
    assert b"keep_items" not in bytes(seq.parts[0])  # the default is the server's


def test_async_client_runs_the_loop(client: Any) -> None:
    async def main() -> tuple[int, list[str], int, int]:
        transport = httpx.ASGITransport(app=client.app)
        http = httpx.AsyncClient(transport=transport, base_url="http://test")
        async with AsyncClient(http=http, binary_threshold=None) as xent:
            r = await xent.score(_probabilities(30), ids=IDS, stream="a", audit_rate=0.4,
                                 audit_seed=5)  # fmt: skip
            assert r.audit is not None and r.audit.ids is not None
            queue = await xent.items("a", audit=True, labeled=False, limit=1000)
            out = await xent.label("a", r.audit.ids, [0] * r.audit.count)
            left = await xent.items("a", audit=True, labeled=False)
            with pytest.raises(XentError) as caught:
                await xent.label("a", ["q0"], ["not-a-class"])
            assert caught.value.detail[0]["loc"] == ["body", "labels", 0]
            return (
                r.audit.count,
                [str(it.id) for it in queue.items],
                out.matched,
                len(left.items) + caught.value.status_code,
            )

    count, queued, matched, rest = anyio.run(main)
    draw = np.flatnonzero(np.random.default_rng(5).random(30) < 0.4)
    assert count == matched == len(draw)
    assert queued == [IDS[i] for i in draw][::-1]
    assert rest == 422  # no item left in the queue, and the bad label's status


def test_multilabel_items_and_row_labels(xent: Client) -> None:
    xent.score([[0.9, 0.2, 0.7], [0.1, 0.2, 0.3]], task="multilabel", ids=["m0", "m1"],
               stream="tags", class_names=["a", "b", "c"])  # fmt: skip
    out = xent.label("tags", ["m0"], [[1, 0, 1]])
    assert (out.matched, out.replaced, out.unknown) == (1, 0, 0)
    newest, oldest = xent.items("tags").items
    assert newest.predicted == [] and newest.label is None
    assert oldest.predicted == ["a", "c"] and oldest.label == ["a", "c"]
    assert oldest.label_source == "late" and oldest.correct is True


def test_summary_flagged_and_streams_read_the_realized_figures(xent: Client) -> None:
    r, audited = _audited(xent)
    assert r.items is not None
    predicted = dict(zip(IDS, r.items.predicted, strict=True))
    wrong = audited[0]
    labels = [(predicted[i] + 1) % 3 if i == wrong else predicted[i] for i in audited]
    xent.label("model:v3", audited, labels)
    s = xent.summary("model:v3", bucket="1h")
    assert isinstance(s, SummaryResponse) and s.stream == "model:v3"
    labeled = s.total["labeled"]
    assert labeled["n"] == len(audited)
    assert labeled["accuracy"] == pytest.approx(1 - 1 / len(audited))
    assert s.total["reviewed"]["n"] == 0
    assert len(s.buckets) == 1 and s.buckets[0]["labeled"]["n"] == len(audited)
    window = xent.summary(
        "model:v3", since=datetime.now(UTC) - timedelta(hours=1), until=datetime.now(UTC)
    )
    assert window.since is not None and window.total["n_items"] == 30
    page = xent.flagged("model:v3", limit=1)
    assert r.flagged is not None and r.flagged.count > 0
    assert isinstance(page, FlaggedItemsResponse) and len(page.items) == 1
    assert page.items[0]["id"] == IDS[r.flagged.indices[-1]]  # newest first: the last one
    listed = xent.streams()
    assert isinstance(listed, StreamsResponse)
    assert [s["stream"] for s in listed.streams] == ["model:v3"]
    with pytest.raises(XentError) as caught:
        xent.summary("never")
    assert caught.value.status_code == 404
    with pytest.raises(XentError) as caught:
        xent.summary("model:v3", bucket="7 parsecs")
    assert caught.value.status_code == 422
