"""A labels request is all or nothing, even when the server is killed in the middle of it
(API.md section 9: "One request is applied atomically").

A real ``xent serve`` on SQLite records a batch of kept items, then a request labels all of
them; the server gets SIGKILL at several moments of that request (measured beforehand). After
each kill a fresh server opens the same store: either every item carries the new label and the
label sums count every item, or none does and the sums are untouched. Never a part.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.store.sql import SqlStore
from tests.support.server import xent_serve

N = 30_000


def _store_state(db: Path, stream: str, label: int) -> tuple[int, int]:
    """(items of ``stream`` labelled ``label``, the calibration set's n in the lifetime sums)."""
    store = SqlStore.from_url(f"sqlite:///{db}")
    try:
        with store.engine.connect() as conn:
            labelled = conn.exec_driver_sql(
                "SELECT count(*) FROM xent_item_labels AS l JOIN xent_kept AS k "
                "ON k.batch_id = l.batch_id WHERE k.stream = ? AND l.label = ?",
                (stream, label),
            ).scalar()
            n = conn.exec_driver_sql(
                "SELECT coalesce(sum(lab_n), 0) FROM xent_label_rollups "
                "WHERE stream = ? AND level = 0",
                (stream,),
            ).scalar()
        return int(labelled or 0), int(n or 0)
    finally:
        store.close()


def _record(url: str, stream: str) -> list[str]:
    ids = [f"{stream}-{i}" for i in range(N)]
    body = {
        "predictions": np.full(N, 0.8).tolist(),
        "ids": ids,
        "stream": stream,
        "audit_rate": 1.0,  # every item in the calibration set once labelled
        "per_item": False,
    }
    out = httpx.post(f"{url}/v1/score", json=body, timeout=60).json()
    assert out["recorded"] is True
    return ids


def _labels_body(ids: list[str], label: int) -> dict[str, object]:
    return {"ids": ids, "labels": [label] * len(ids)}


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_a_labels_request_killed_midway_is_all_or_nothing(tmp_path: Path) -> None:
    db = tmp_path / "data" / "xent.db"
    with xent_serve(tmp_path) as server:
        ids = _record(server.url, "timing")
        start = time.perf_counter()
        r = httpx.post(
            f"{server.url}/v1/streams/timing/labels", json=_labels_body(ids, 1), timeout=60
        )
        took = time.perf_counter() - start
        assert r.json()["matched"] == N
    outcomes = []
    for trial, share in enumerate((0.3, 0.6, 0.9)):
        stream = f"kill{trial}"
        with xent_serve(tmp_path, check_exit=False) as server:
            ids = _record(server.url, stream)
            body = _labels_body(ids, 1)

            def send(
                url: str = f"{server.url}/v1/streams/{stream}/labels",
                body: dict[str, object] = body,
            ) -> None:
                try:
                    httpx.post(url, json=body, timeout=60)
                except httpx.TransportError:
                    pass  # the server died under it

            sender = threading.Thread(target=send)
            sender.start()
            time.sleep(took * share)
            os.killpg(server.proc.pid, signal.SIGKILL)
            sender.join(timeout=30)
        labelled, lab_n = _store_state(db, stream, 1)
        assert (labelled, lab_n) in ((0, 0), (N, N)), (share, labelled, lab_n)
        outcomes.append(labelled)
        # the store is sound afterwards: a fresh server applies the same request whole
        with xent_serve(tmp_path) as server:
            again = httpx.post(
                f"{server.url}/v1/streams/{stream}/labels", json=_labels_body(ids, 1), timeout=60
            ).json()
            assert again["matched"] == N and again["replaced"] == labelled
        assert _store_state(db, stream, 1) == (N, N)
