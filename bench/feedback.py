"""The cost of keeping items (API.md section 9): a 10,000-item batch with ids, recorded with its
kept items, against scoring it without a stream. Run from the repository root::

    python bench/feedback.py                      # SQLite and PostgreSQL (when one answers)
    python bench/feedback.py --backend sqlite --repeats 9

Per backend, over HTTP against one ``xent serve`` (1 worker) on a fresh store, interleaved
(A B A B), the medians of per-pair ratios:

1. ``POST /v1/score`` of a 10,000 x 10 logits batch with labels and ids as JSON: without
   ``stream`` (A) against with ``stream`` (B: the batch, its flagged items, its 10,000 kept
   items and their label sums written in one transaction). Target: B / A <= 2.
2. The same in process: ``xentcore.score`` (A) against building the kept rows and flagged
   items and ``SqlStore.record`` (B), to show where the time goes.
3. The indexer (``service.indexing``), which writes the items' lookup keys off the request
   path: how long after the last recorded batch the server's queue is empty, and in process the
   milliseconds of ``SqlStore.index_items`` per 10,000-item batch.
4. ``POST /v1/streams/{s}/labels`` of 10,000 late labels: median milliseconds, over HTTP on
   indexed batches and in process on a batch still queued (its ids read) against an indexed one.

Prints the CPU model and a Markdown table per backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

import xentcore as xc  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from bench.store import pair_ratio  # noqa: E402
from service.recording import flagged_items, kept_batch  # noqa: E402
from service.store.sql import SqlStore  # noqa: E402
from tests.support.postgres import pg_unavailable, private_schema  # noqa: E402
from tests.support.server import xent_serve  # noqa: E402
from xentcore.summary import summarize  # noqa: E402
from xentcore.types import ScoreOptions  # noqa: E402
from xentcore.validate import check_batch  # noqa: E402

N, K = 10_000, 10
TARGET = 2.0


def batch() -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    return rng.normal(0, 2, (N, K)), rng.integers(0, K, N), [f"item-{i:05d}" for i in range(N)]


def post(client: httpx.Client, body: bytes, path: str = "/v1/score") -> float:
    start = time.perf_counter()
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    took = (time.perf_counter() - start) * 1e3
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
    if b'"stream"' in body and path == "/v1/score" and response.json()["recorded"] is not True:
        raise RuntimeError("batch not recorded")
    return took


def over_http(url: str, repeats: int) -> list[tuple[str, str]]:
    x, y, ids = batch()
    fields = {"predictions": x, "labels": y, "ids": ids, "input_type": "logits"}
    plain = orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)
    kept = orjson.dumps({**fields, "stream": "kept"}, option=orjson.OPT_SERIALIZE_NUMPY)
    without, with_ = [], []
    with httpx.Client(base_url=url, timeout=120) as client:
        post(client, plain)
        post(client, kept)
        for _ in range(repeats):
            without.append(post(client, plain))
            with_.append(post(client, kept))
        drained = wait_indexed(client, (repeats + 1) * N)
        labels = orjson.dumps({"ids": ids, "labels": ((y + 1) % K).tolist()})
        late = [
            post(client, labels, "/v1/streams/kept/labels") for _ in range(max(3, repeats // 2))
        ]
    ratio = pair_ratio(with_, without)
    return [
        (
            f"POST /v1/score {N:,} x {K} JSON with ids and labels: without | with stream "
            "(median ms); with / without",
            f"{statistics.median(without):.1f} | {statistics.median(with_):.1f}; {ratio:.2f}x "
            f"{'PASS' if ratio <= TARGET else 'FAIL'} (target <= {TARGET}x)",
        ),
        (
            f"indexer: queue empty after the last of {repeats + 1} batches (ms)",
            f"{drained:.0f}",
        ),
        (
            f"POST /v1/streams/kept/labels, {N:,} late labels (median ms)",
            f"{statistics.median(late):.1f}",
        ),
    ]


def indexed_total(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("xent_store_indexed_items_total "):
            return float(line.split()[1])
    return 0.0


def wait_indexed(client: httpx.Client, items: int, timeout: float = 120.0) -> float:
    """Milliseconds until the server's indexer has written ``items`` lookup keys."""
    start = time.perf_counter()
    while indexed_total(client) < items:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"the indexer did not write {items} keys in {timeout} s")
        time.sleep(0.005)
    return (time.perf_counter() - start) * 1e3


def in_process(url: str, repeats: int) -> list[tuple[str, str]]:
    x, y, ids = batch()
    store = SqlStore.from_url(url, timeout=60)
    options = ScoreOptions(input_type="logits")

    def score() -> tuple[object, xc.ScoreResult]:
        checked = check_batch(x, y, options)
        return checked, xc.score(x, y, input_type="logits")

    def record(checked: object, result: xc.ScoreResult) -> None:
        kept = kept_batch(
            checked,  # type: ignore[arg-type]
            result,
            ids,
            audit=None,
            audit_rate=None,
            max_classes=1024,
        )
        store.record(
            stream="kept-inproc",
            task=result.task,
            summary=summarize(result),
            flagged=flagged_items(result, ids),
            kept=kept,
        )

    record(*score())
    store.index_items()
    a, b, index, queued, indexed = [], [], [], [], []
    labels = ((y + 1) % K).tolist()
    for _ in range(repeats):
        start = time.perf_counter()
        checked, result = score()
        a.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        record(checked, result)
        b.append((time.perf_counter() - start) * 1e3)
        queued.append(timed(lambda: store.label("kept-inproc", ids, labels)))
        index.append(timed(lambda: store.index_items()))
        indexed.append(timed(lambda: store.label("kept-inproc", ids, labels)))
    store.close()
    return [
        (
            f"in process: check + score | keep + record {N:,} items (median ms); B / A",
            f"{statistics.median(a):.1f} | {statistics.median(b):.1f}; {pair_ratio(b, a):.2f}x",
        ),
        (
            f"in process: indexer, SqlStore.index_items of one {N:,}-item batch (median ms)",
            f"{statistics.median(index):.1f}",
        ),
        (
            f"in process: {N:,} late labels on a queued | an indexed batch (median ms)",
            f"{statistics.median(queued):.1f} | {statistics.median(indexed):.1f}",
        ),
    ]


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1e3


@contextmanager
def backend_url(name: str, tmp: Path) -> Iterator[str | None]:
    if name == "sqlite":
        yield f"sqlite:///{tmp}/xent.db"
        return
    if pg_unavailable() is not None:
        yield None
        return
    with private_schema() as url:
        yield url


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    names = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"# Kept items benchmark (bench/feedback.py)\n\n- CPU: {cpu_model()}\n")
    for name in names:
        with tempfile.TemporaryDirectory() as tmp, backend_url(name, Path(tmp)) as url:
            if url is None:
                print(f"{name}: skipped ({pg_unavailable()})\n")
                continue
            rows: list[tuple[str, str]] = []
            env = {"XENT_DATABASE_URL": url, "XENT_LOG_LEVEL": "warning"}
            with xent_serve(Path(tmp), env=env) as server:
                rows += over_http(server.url, args.repeats)
            rows += in_process(url, args.repeats)
            print(f"## {name}\n\n| figure | value |\n|---|---|")
            for label, value in rows:
                print(f"| {label} | {value} |")
            print()


if __name__ == "__main__":
    main()
