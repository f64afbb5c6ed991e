"""Prometheus metrics with several uvicorn workers (prometheus_client multiprocess mode).

In-process: the array histogram on file-backed values, the sum over workers' files, the
gauge files of dead workers, and the CLI's multiprocess directory. Then ``xent serve --workers 2``
as a real process: /metrics shows the exact totals of both workers, whichever one answers.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

import xentcore as xc
from service.cli import MULTIPROC_ENV, prometheus_multiprocess
from service.metrics import ArrayHistogram, Metrics, StreamMetrics, fold_histograms
from tests.support.server import xent_serve

#: Above Linux's PID_MAX_LIMIT (2**22): no process ever has this id.
DEAD_PID = 2**22 + 1


@pytest.fixture
def multiprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """File-backed metric values in a temporary directory, as in a worker of ``xent serve``."""
    directory = tmp_path / "prom"
    directory.mkdir()
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    monkeypatch.setattr(values, "ValueClass", _file_values())
    yield directory
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]


def _file_values(pid: int | None = None) -> Any:
    """prometheus_client's file-backed value class: of this process, or as if of ``pid``."""
    if pid is None:
        return values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return values.MultiProcessValue(lambda: pid)  # type: ignore[no-untyped-call]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by (name, sorted labels); each family must appear once."""
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), f"a metric is exposed twice: {sorted(names)}"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_array_histogram_equals_observe_on_file_values(multiprocess: Path) -> None:
    rng = np.random.default_rng(1)
    data = np.concatenate([rng.random(400) * 3, [0.0, 0.1, 0.5, 1.0, 2.0, np.nan]])
    buckets = (0.1, 0.2, 0.5, 1.0, 2.0)
    one = Histogram("one", "h", ["stream"], buckets=buckets, registry=None).labels("s")
    bulk = ArrayHistogram("bulk", "h", ["stream"], buckets=buckets, registry=None)
    assert type(one._sum).__name__ == "MmapedValue"  # the file-backed cells are under test
    for v in data[~np.isnan(data)]:
        one.observe(float(v))
    for part in np.array_split(data, 3):  # three batches, as from three requests
        bulk.observe(part, "s")
    bulk.observe(data[:0], "s")  # nothing to add: no change
    collector = MultiProcessCollector(None, path=str(multiprocess))  # type: ignore[no-untyped-call]
    folded = list(fold_histograms(collector.collect(), [bulk]))  # type: ignore[no-untyped-call]
    assert not [f.name for f in folded if f.name.startswith("xent_internal")]
    families = {
        f.name: {(s.name.removeprefix(f.name), s.labels.get("le", "")): s.value for s in f.samples}
        for f in folded
    }
    assert families["one"].keys() == families["bulk"].keys()
    assert families["one"][("_count", "")] == data.size - 1  # the NaN is not observed
    for key, expected in families["one"].items():
        got = families["bulk"][key]
        if key[0] == "_sum":  # one addition per batch instead of many: equal up to rounding
            assert got == expected or np.isclose(got, expected, rtol=1e-12), key
        else:  # bucket and total counts are exact
            assert got == expected, key


def test_metrics_sum_over_processes_and_forget_dead_gauges(
    multiprocess: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = xc.score([0.2, 0.9, 0.6], [0, 1, 0], flag={"min_confidence": 0.7})
    # A worker that counted, then was killed mid-request:
    monkeypatch.setattr(values, "ValueClass", _file_values(DEAD_PID))
    dead = Metrics()
    dead.observe("/v1/score", "POST", 200, 0.01)
    dead.in_flight.inc(3)
    assert isinstance(dead.streams, StreamMetrics)
    dead.streams.observe("s", "binary", result)
    monkeypatch.setattr(values, "ValueClass", _file_values())  # this process
    live = Metrics()
    assert live.multiprocess_dir == str(multiprocess)
    for _ in range(2):
        live.observe("/v1/score", "POST", 200, 0.01)
    live.in_flight.inc()
    assert isinstance(live.streams, StreamMetrics)
    live.streams.observe("s", "binary", result)
    assert (multiprocess / f"gauge_livesum_{DEAD_PID}.db").exists()

    samples = _samples(live.render().decode())
    route = (("method", "POST"), ("route", "/v1/score"), ("status", "200"))
    assert samples["xent_http_requests_total", route] == 3  # the dead worker's count stays
    assert samples["xent_scoring_in_flight", ()] == 1  # its requests in flight do not
    assert samples["xent_stream_items_scored_total", (("stream", "s"), ("task", "binary"))] == 6
    assert samples["xent_stream_item_loss_count", (("stream", "s"), ("task", "binary"))] == 6
    stream = (("stream", "s"), ("task", "binary"))
    assert samples["xent_stream_item_confidence_bucket", (("le", "+Inf"), *stream)] == 6
    assert samples["xent_stream_item_confidence_sum", stream] == pytest.approx(
        2 * float(result.confidence.sum()), rel=1e-12
    )
    assert not any(name.startswith("xent_internal") for name, _ in samples)  # never exposed
    assert samples["xent_store_errors_total", ()] == 0
    assert not (multiprocess / f"gauge_livesum_{DEAD_PID}.db").exists()
    assert (multiprocess / f"counter_{DEAD_PID}.db").exists()
    assert not any(name.endswith("_created") for name, _ in samples)


def test_single_process_metrics_stay_per_app() -> None:
    a, b = Metrics(), Metrics()
    assert a.multiprocess_dir is None
    a.observe("/v1/score", "POST", 200, 0.01)
    route = (("method", "POST"), ("route", "/v1/score"), ("status", "200"))
    assert _samples(a.render().decode())["xent_http_requests_total", route] == 1
    assert ("xent_http_requests_total", route) not in _samples(b.render().decode())


def test_multiprocess_dir_private_given_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with prometheus_multiprocess(1) as none:
        assert none is None and MULTIPROC_ENV not in os.environ
    with prometheus_multiprocess(2) as private:
        assert private is not None and os.environ[MULTIPROC_ENV] == private
        assert Path(private).parent == tmp_path and not any(Path(private).iterdir())
        (Path(private) / "counter_1.db").write_bytes(b"x")
    assert not Path(private).exists() and MULTIPROC_ENV not in os.environ

    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_99.db").write_bytes(b"stale")  # a previous run's values
    (given / "notes.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    for workers in (1, 4):
        with prometheus_multiprocess(workers) as path:
            assert path == str(given) and os.environ[MULTIPROC_ENV] == str(given)
            assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]
    assert given.is_dir()
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "new" / "dir"))
    with prometheus_multiprocess(2) as path:
        assert path is not None and Path(path).is_dir()


# ---- a real ``xent serve --workers 2`` --------------------------------------------------------

STREAM = "workers"
BODY = {"predictions": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], "labels": [0, 2], "stream": STREAM}
ROUTE = (("method", "POST"), ("route", "/v1/score"), ("status", "200"))
ITEMS_KEY = ("xent_stream_items_scored_total", (("stream", STREAM), ("task", "multiclass")))


def _score(url: str) -> dict[str, Any]:
    """One scoring request on a connection of its own (so the kernel spreads them)."""
    response = httpx.post(f"{url}/v1/score", json=BODY, timeout=httpx.Timeout(10, connect=3))
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


def _scored_per_worker(directory: Path) -> dict[str, float]:
    """Successful /v1/score requests counted in each worker's own file, by file name."""
    out = {}
    for path in directory.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        for family in merged:
            for s in family.samples:
                if (
                    s.name == "xent_http_requests_total"
                    and tuple(sorted(s.labels.items())) == ROUTE
                ):
                    out[path.name] = s.value
    return out


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    return _samples(response.text)


def _wait_for_count(url: str, expected: float) -> dict[tuple[str, tuple[Any, ...]], float]:
    """A scrape once the request counter reached ``expected`` (a request is counted just after
    its response is sent, so the last one may still be on its way)."""
    deadline = time.monotonic() + 10
    while True:
        samples = _scrape(url)
        if samples.get(("xent_http_requests_total", ROUTE), 0) >= expected:
            return samples
        if time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_metrics_sum_over_two_real_workers(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # where the CLI makes its private multiprocess directory
    scratch.mkdir()
    env = {"TMPDIR": str(scratch), MULTIPROC_ENV: ""}
    with xent_serve(tmp_path, "--log-level", "warning", "--workers", "2", env=env) as server:
        url = server.url
        (private,) = scratch.glob("xent-metrics-*")
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(5):  # until both workers have served (almost always the first round)
                answers = list(pool.map(lambda _: _score(url), range(40)))
                sent += len(answers)
                assert all(a["recorded"] is True for a in answers)
                per_worker = _scored_per_worker(private)
                if sum(1 for n in per_worker.values() if n > 0) >= 2:
                    break
        assert sum(1 for n in per_worker.values() if n > 0) >= 2, per_worker

        for _ in range(6):  # each scrape on a new connection: either worker answers the same
            samples = _wait_for_count(url, sent)
            assert samples["xent_http_requests_total", ROUTE] == sent
            assert samples[ITEMS_KEY] == 2 * sent
            assert samples["xent_scoring_in_flight", ()] == 0
        summary = httpx.get(f"{url}/v1/streams/{STREAM}/summary", timeout=5).json()
        assert summary["total"]["n_items"] == 2 * sent
        assert summary["total"]["n_scored"] == 2 * sent
    assert not private.exists(), "the private multiprocess directory outlived the server"


def test_given_multiprocess_dir_with_one_worker(tmp_path: Path) -> None:
    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"stale")
    with xent_serve(tmp_path, "--log-level", "warning", env={MULTIPROC_ENV: str(given)}) as server:
        url = server.url
        assert not (given / "counter_1.db").exists()
        for _ in range(3):
            assert _score(url)["recorded"] is True
        samples = _wait_for_count(url, 3)
        assert samples["xent_http_requests_total", ROUTE] == 3
        assert samples[ITEMS_KEY] == 6
        assert any(given.glob("counter_*.db"))
    assert given.is_dir()
