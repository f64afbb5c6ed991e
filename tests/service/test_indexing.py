"""The service's indexer (``service.indexing``): it writes the lookup keys of kept batches
soon after they are recorded, counts them, and survives a failing store."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.indexing import index_loop, index_once
from service.metrics import StreamMetrics
from tests.service.conftest import MakeClient


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_the_app_indexes_kept_batches_in_the_background(make_client: MakeClient) -> None:
    client = make_client()
    body = {
        "predictions": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
        "ids": ["a", "b", "c"],
        "stream": "bg",
    }
    assert client.post("/v1/score", json=body).json()["recorded"] is True
    store = client.app.state.store  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _metric(client.get("/metrics").text, "xent_store_indexed_items_total") >= 3:
            break
        time.sleep(0.1)
    assert _metric(client.get("/metrics").text, "xent_store_indexed_items_total") == 3
    assert store.index_items() == 0  # nothing left in the queue
    labels = client.post("/v1/streams/bg/labels", json={"ids": ["b", "z"], "labels": [1, 0]})
    assert labels.json()["matched"] == 1


class _Failing:
    calls = 0

    def index_items(self, **_: Any) -> int:
        self.calls += 1
        raise OSError("store down")


def test_a_failing_pass_is_counted_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    metrics = StreamMetrics(CollectorRegistry())
    assert index_once(_Failing(), metrics) is None  # type: ignore[arg-type]
    assert metrics.index_errors._value.get() == 1
    assert "indexing kept items failed" in caplog.text


def test_the_loop_backs_off_after_a_failure_and_goes_on_while_there_is_work() -> None:
    failing = _Failing()

    class Busy:
        def __init__(self) -> None:
            self.queue = [5, 5, 5]

        def index_items(self, **_: Any) -> int:
            return self.queue.pop() if self.queue else 0

    async def run(store: Any, seconds: float) -> None:
        task = asyncio.create_task(index_loop(lambda: store, idle=0.05, backoff=10.0))
        await asyncio.sleep(seconds)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run(failing, 0.3))
    assert failing.calls == 1  # waiting out its backoff, not hammering a down store
    busy = Busy()
    asyncio.run(run(busy, 0.3))
    assert busy.queue == []
