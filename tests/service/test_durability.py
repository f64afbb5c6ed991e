"""Nothing acknowledged as recorded is lost: a worker is killed in the middle of a load.

``xent serve --workers 2`` (the default SQLite store) takes batches from a few client threads,
each batch with an ``Idempotency-Key`` of its own. Midway, one uvicorn worker gets SIGKILL; the
clients retry what failed at the connection level with the same key, and uvicorn's supervisor
starts a new worker. Afterwards every batch answered ``"recorded": true`` is in the store, each
key counts once (summary and rows), and SQLite's integrity check passes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.store.sql import SqlStore
from tests.support.server import xent_serve

STREAM = "durable"
LABELS = [0, 2, 2]
BODY = {
    "predictions": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]],
    "labels": LABELS,
    "stream": STREAM,
}
ITEMS = len(LABELS)
THREADS, PER_THREAD = 4, 50
KILL_AFTER = 60  # answers before one worker is killed (of THREADS * PER_THREAD)
TIMEOUT = httpx.Timeout(10, connect=3)

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finding uvicorn's worker processes needs /proc"
)


@dataclass
class Outcome:
    """What a client saw for one key: the final answer, and connection-level failures first."""

    status: int | None = None
    recorded: bool | None = None
    failures: int = 0


def _workers(parent: int) -> set[int]:
    """The uvicorn workers of ``parent``: its children started by multiprocessing's spawn (not
    multiprocessing's resource tracker, also a child)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state, ppid = (proc / "stat").read_text().rpartition(")")[2].split()[:2]
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if int(ppid) == parent and state != "Z" and b"spawn_main" in cmdline:
            found.add(int(proc.name))
    return found


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _client(url: str, thread: int, outcomes: dict[str, Outcome], deadline: float) -> None:
    """Send PER_THREAD batches, each on a new connection; retry a connection-level failure
    (or a 503) with the same Idempotency-Key until it is answered or time runs out."""
    with httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for i in range(PER_THREAD):
            key = f"t{thread}-{i}"
            outcome = outcomes[key] = Outcome()
            while time.monotonic() < deadline:
                try:
                    response = http.post(
                        f"{url}/v1/score", json=BODY, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    outcome.failures += 1
                    time.sleep(0.05)
                    continue
                if response.status_code == 503:  # overloaded for a moment: retry later
                    time.sleep(0.05)
                    continue
                outcome.status = response.status_code
                if response.status_code == 200:
                    outcome.recorded = response.json()["recorded"]
                break


def _items_in_metrics(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "xent_stream_items_scored_total" and s.labels["stream"] == STREAM:
                return float(s.value)
    return 0.0


def test_killed_worker_loses_nothing_acknowledged(tmp_path: Path) -> None:
    started = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    # The default SQLite store and a private multiprocess directory (under tmp_path), whatever
    # this environment sets. Exit status and log are not checked (a worker is killed here);
    # xent_serve still fails the test if SIGTERM does not stop the server.
    with xent_serve(
        tmp_path,
        "--workers",
        "2",
        "--log-level",
        "warning",
        env={"TMPDIR": str(tmp_path)},
        unset=("PROMETHEUS_MULTIPROC_DIR", "XENT_DATABASE_URL"),
        check_exit=False,
    ) as server:
        url, proc, log = server.url, server.proc, server.log
        assert _wait_for(lambda: len(_workers(proc.pid)) == 2, 20), log.read_text()
        before = _workers(proc.pid)
        deadline = time.monotonic() + 30
        threads = [
            threading.Thread(target=_client, args=(url, t, outcomes, deadline), daemon=True)
            for t in range(THREADS)
        ]
        for thread in threads:
            thread.start()

        def answered() -> int:
            return sum(o.status is not None for o in list(outcomes.values()))

        assert _wait_for(lambda: answered() >= KILL_AFTER, 20), "the load did not get going"
        victim = min(before)
        os.kill(victim, signal.SIGKILL)  # a worker of the server this test started
        load_left = THREADS * PER_THREAD - answered()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic() + 5))
        assert not any(t.is_alive() for t in threads), "client threads did not finish in time"

        # uvicorn 0.54's supervisor replaces a dead worker (it checks every 0.5 s).
        replaced = _wait_for(lambda: len(now := _workers(proc.pid)) == 2 and victim not in now, 20)
        assert replaced, f"no replacement worker: {_workers(proc.pid)}; {log.read_text()}"
        summary = httpx.get(f"{url}/v1/streams/{STREAM}/summary", timeout=5).json()
        in_metrics = _items_in_metrics(url)

    db = tmp_path / "data" / "xent.db"
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        keys = [k for (k,) in conn.execute("SELECT idempotency_key FROM xent_batches")]
    store = SqlStore.from_url(f"sqlite:///{db}")
    try:
        stored = store.batches_in(STREAM)
    finally:
        store.close()

    sent = {f"t{t}-{i}" for t in range(THREADS) for i in range(PER_THREAD)}
    acknowledged = {k for k, o in outcomes.items() if o.recorded is True}
    retried = {k for k, o in outcomes.items() if o.failures}
    unanswered = sorted(k for k, o in outcomes.items() if o.status is None)
    assert outcomes.keys() == sent and not unanswered, f"never answered: {unanswered}"
    assert all(o.status == 200 for o in outcomes.values())
    assert len(keys) == len(set(keys)), "a key was recorded twice"
    assert set(keys) <= sent
    assert acknowledged <= set(keys), f"acknowledged but lost: {sorted(acknowledged - set(keys))}"
    # WAL with a busy timeout: a killed writer's lock dies with it, so every batch is recorded.
    assert acknowledged == sent, f"not recorded: {sorted(sent - acknowledged)}"
    assert len(stored) == len(keys) == len(sent)
    assert sum(b.summary.n_items for b in stored) == ITEMS * len(sent)
    assert summary["total"]["n_items"] == ITEMS * len(sent)
    # The killed worker's counts stay in /metrics; it may have died between a commit and its
    # counter (the retry then finds the key and does not count again): at most once per retry.
    assert ITEMS * (len(sent) - len(retried)) <= in_metrics <= ITEMS * len(sent)
    assert load_left > 0, "the worker was killed after the load, not in its middle"
    assert time.monotonic() - started < 60
    print(f"killed {victim} with {load_left} batches to go; {len(retried)} retried")
