"""Two streams scored over HTTP by a real ``xent serve``: exact summaries that survive a
restart, per-stream /metrics series, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import xentcore as xc
from tests.support.postgres import pg_unavailable, private_schema
from tests.support.server import xent_serve


@pytest.fixture(params=["sqlite", "postgresql"])
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}  # the embedded default: a SQLite file under XENT_DATA_DIR
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with private_schema() as url:
        yield {"XENT_DATABASE_URL": url}


def _batches() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(11)
    return {
        "fraud": [(rng.random(40), rng.integers(0, 2, 40)) for _ in range(3)],
        "intent": [(rng.dirichlet(np.ones(5), 25), rng.integers(0, 5, 25)) for _ in range(2)],
    }


def test_two_streams_exact_across_restart(tmp_path: Path, store_env: dict[str, str]) -> None:
    batches = _batches()
    flag = {"min_confidence": 0.6, "misclassified": True}
    with xent_serve(tmp_path, env=store_env) as server:
        for stream, items in batches.items():
            for p, y in items:
                body = {"predictions": p.tolist(), "labels": y.tolist(), "flag": flag}
                out = httpx.post(f"{server.url}/v1/score", json={**body, "stream": stream})
                assert out.status_code == 200 and out.json()["recorded"] is True
        metrics = httpx.get(f"{server.url}/metrics").text
    assert 'xent_stream_items_scored_total{stream="fraud",task="binary"} 120.0' in metrics
    assert 'xent_stream_items_scored_total{stream="intent",task="multiclass"} 50.0' in metrics
    with xent_serve(tmp_path, env=store_env) as server:  # a new process on the same store
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        for stream, items in batches.items():
            p = np.concatenate([b[0] for b in items])
            y = np.concatenate([b[1] for b in items])
            want = xc.score(p, y, flag=flag)
            ece = xc.calibration(p, y).ece
            total = httpx.get(f"{server.url}/v1/streams/{stream}/summary").json()["total"]
            assert total["n_items"] == len(y) and total["n_scored"] == len(y)
            assert total["loss_mean"] == pytest.approx(want.loss_mean, rel=1e-12)
            assert total["accuracy"] == pytest.approx(want.accuracy, rel=1e-12)
            assert total["confidence_mean"] == pytest.approx(want.confidence_mean, rel=1e-12)
            assert total["flag_rate"] == pytest.approx(want.flagged.mean(), rel=1e-12)
            assert total["ece"] == pytest.approx(ece, rel=1e-9)
            flagged = httpx.get(
                f"{server.url}/v1/streams/{stream}/flagged", params={"limit": 1000}
            ).json()
            assert len(flagged["items"]) == int(want.flagged.sum())
        names = [s["stream"] for s in httpx.get(f"{server.url}/v1/streams").json()["streams"]]
        assert names == ["fraud", "intent"]
        page = httpx.get(f"{server.url}/dashboard/")
        assert page.status_code == 200
    assert server.exit_code in (0, -15)
