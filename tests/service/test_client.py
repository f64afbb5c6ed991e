"""service.client: Client and AsyncClient, typed results, errors, binary tensors."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import numpy as np
import pytest

import xentcore as xc
from service.client import AsyncClient, Client, XentError, encode
from service.schemas import ScoreResponse

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
Y = np.array([0, 2])


@pytest.fixture
def xent(client: Any) -> Client:
    return Client("http://testserver", http=client, binary_threshold=None)


def test_score_returns_typed_result(xent: Client) -> None:
    r = xent.score(P, Y, ids=["a", "b"])
    assert isinstance(r, ScoreResponse)
    assert r.loss is not None
    assert r.loss.mean == pytest.approx(xc.score(P, Y).loss_mean, rel=1e-15)
    assert r.items is not None and r.items.ids == ["a", "b"]


def test_every_method(xent: Client) -> None:
    assert xent.loss(P, Y).loss.n_scored == 2
    assert xent.confidence(P).confidence.mean == pytest.approx(0.75)
    assert xent.flag(P, Y, flag={"misclassified": True}).flagged.indices == [1]
    cal = xent.calibration(np.array([0.9, 0.8, 0.3, 0.6]), [1, 1, 0, 0], n_bins=5)
    assert cal.ece == pytest.approx(0.3)
    seq = xent.score_sequences([np.array([-0.1, -0.2]), {"id": "x", "token_logprobs": [-1.0]}])
    assert seq.sequences[1].id == "x" and seq.nll == pytest.approx(1.3 / 3)


def test_error_carries_detail(xent: Client) -> None:
    with pytest.raises(XentError) as caught:
        xent.score([[0.5, 0.6]], [0])
    assert caught.value.status_code == 422
    assert caught.value.detail[0]["loc"] == ["body", "predictions", 0]
    assert "predictions.0: row sums to 1.1" in str(caught.value)


def test_api_key_is_sent(make_client: Any) -> None:
    locked = make_client(api_keys="k")
    with pytest.raises(XentError) as caught:
        Client("http://testserver", http=locked).score(P)
    assert caught.value.status_code == 401
    assert Client("http://testserver", api_key="k", http=locked).score(P).n_items == 2


def test_large_arrays_go_binary(client: Any) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 10)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    content, headers = encode({"predictions": z, "labels": y}, 300)
    assert "Inference-Header-Content-Length" in headers
    assert len(content) == int(headers["Inference-Header-Content-Length"]) + z.nbytes + y.nbytes
    r = Client("http://testserver", http=client, binary_threshold=1000).score(
        z, y, input_type="logits"
    )
    assert r.loss is not None
    assert r.loss.mean == pytest.approx(xc.score(z, y, input_type="logits").loss_mean, rel=1e-12)


def test_async_client(client: Any) -> None:
    async def main() -> tuple[float | None, int]:
        transport = httpx.ASGITransport(app=client.app)
        http = httpx.AsyncClient(transport=transport, base_url="http://test")
        async with AsyncClient(http=http) as xent:
            r = await xent.score(P, Y)
            with pytest.raises(XentError) as caught:
                await xent.loss(P, None)
            assert r.loss is not None
            return r.loss.mean, caught.value.status_code

    mean, status = anyio.run(main)
    assert mean == pytest.approx(xc.score(P, Y).loss_mean) and status == 422
