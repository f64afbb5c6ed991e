"""Fault test: a PostgreSQL that hangs (SIGSTOP) costs a recorded batch its store deadline, never
the service its scoring, and /readyz answers within a second (issue 14, item 1).

The cluster is a private one the test starts, freezes, thaws and stops (tests/support/pgcluster).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.pgcluster import cluster_unavailable, private_cluster
from tests.support.server import xent_serve

BATCH = {"predictions": [0.9, 0.2, 0.7], "labels": [1, 0, 0], "stream": "hung"}
PLAIN = {"predictions": [0.4, 0.6]}


def test_a_frozen_database_costs_its_deadline_not_the_service(tmp_path: Path) -> None:
    reason = cluster_unavailable()
    if reason:
        pytest.skip(reason)
    with private_cluster() as pg:
        env = {
            "XENT_DATABASE_URL": pg.url,
            "XENT_STORE_TIMEOUT": "1",
            "XENT_MAX_CONCURRENCY": "2",
            "XENT_STORE_RETRY_SECONDS": "0.5",
        }
        with (
            xent_serve(tmp_path, env=env, check_exit=False) as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            assert http.post("/v1/score", json=BATCH).json()["recorded"] is True
            assert http.get("/readyz").status_code == 200
            pg.freeze()
            try:
                t0 = time.perf_counter()
                assert http.get("/readyz").status_code == 503
                assert time.perf_counter() - t0 < 1.5  # within a second (plus the round trip)

                def record(_: int) -> tuple[int, bool | None, float]:
                    start = time.perf_counter()
                    out = httpx.post(f"{server.url}/v1/score", json=BATCH, timeout=30)
                    return out.status_code, out.json().get("recorded"), time.perf_counter() - start

                with ThreadPoolExecutor(8) as pool:
                    stuck = [pool.submit(record, i) for i in range(8)]
                    time.sleep(0.2)
                    # 8 writes wait on the frozen database; scoring still has its 2 slots
                    plain = [http.post("/v1/score", json=PLAIN).status_code for _ in range(5)]
                    results = [f.result() for f in stuck]
                assert plain == [200] * 5
                assert all(status == 200 and rec is False for status, rec, _ in results), results
                assert max(took for *_, took in results) < 1 + 2.0, results
            finally:
                pg.thaw()
            deadline = time.monotonic() + 20  # the store comes back without a restart
            while time.monotonic() < deadline:
                if http.post("/v1/score", json=BATCH).json()["recorded"] is True:
                    break
                time.sleep(0.5)
            else:
                raise AssertionError(f"recording did not resume: {server.log.read_text()}")
            assert http.get("/readyz").status_code == 200
