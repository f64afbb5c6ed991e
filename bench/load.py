"""Load and fault scenarios against real ``xent serve`` processes on 127.0.0.1. Run by hand:

    python -m bench.load                          # every scenario; the soak lasts 600 s
    python -m bench.load --soak-seconds 60        # a shorter soak
    python -m bench.load --only baseline overload

Every scenario starts its own server (a process group on a free loopback port), drives it from
client threads in this process, stops by itself, and stops the server. The figures are printed
as one Markdown table; nothing is asserted except where a scenario's promise is the figure
itself (``lost`` must be 0), which is printed as ``OK`` or ``FAIL``.

1. baseline: 2 workers, 16 client threads, 256 x 10 JSON batches for ``--seconds``:
   throughput, p50 / p99 latency, peak RSS of all server processes.
2. overload: 1 worker with ``XENT_MAX_CONCURRENCY=4`` and 16 client threads (4x) that retry a 503
   at once: p99 of the accepted requests, share of 503s, and the recovery time (from the end of
   the load to the first request as fast as twice the unloaded median).
3. oversized: 8 threads send 8 MiB bodies (half with ``Content-Length``, half chunked) to a server
   with ``XENT_MAX_BODY_BYTES`` = 1 MiB: share of 413s, RSS before / peak / after.
4. contention: 4 workers, 16 threads, each batch with its own ``Idempotency-Key``, all to one
   SQLite stream: batches acknowledged (200 and ``recorded: true``) against rows in the store.
5. kill: 2 workers under recording load; a worker is sent SIGKILL three times: every
   acknowledged batch must be in the store, and SQLite's integrity and foreign-key checks pass.
6. store-down: PostgreSQL behind a loopback TCP relay that is cut and restored: time for
   ``/readyz`` to turn 503, batches still scored with ``recorded: false``, time to recover.
   Skipped when no PostgreSQL answers (tests/support/postgres.py: PG_URL).
7. hung-store: PostgreSQL frozen (SIGSTOP) for ``--seconds`` under recording and plain load, in
   a private cluster the scenario starts and stops (tests/support/pgcluster.py): how fast
   ``/readyz`` answers and with what, latency of recorded and of plain batches while frozen,
   time to record again after the thaw, and acknowledged batches missing from the store.
8. soak: 2 workers, 8 threads recording for ``--soak-seconds``: RSS and open file descriptors
   of the server processes after a warm-up and at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ would come first on sys.path and bench/service.py would shadow the
# ``service`` package: keep the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from tests.support.server import Server, free_port, xent_serve  # noqa: E402

N, K = 256, 10
MiB = 1 << 20
Row = tuple[str, str, str]


# --- measuring the server --------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(c) for c in text.split())
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def rss_mib(pid: int) -> float:
    """Resident memory of the whole process tree, MiB."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def open_fds(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


class PeakRss:
    """Samples the tree's RSS every 0.1 s in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- load ------------------------------------------------------------------------------------


def batch_body(seed: int, *, stream: str | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    p = rng.random((N, K)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    body: dict[str, Any] = {
        "predictions": p.tolist(),
        "labels": rng.integers(0, K, N).tolist(),
        "per_item": False,
    }
    if stream:
        body["stream"] = stream
    return orjson.dumps(body)


@dataclass
class Result:
    status: int  # 0: transport error (connection reset, refused, timeout)
    seconds: float
    recorded: bool | None = None
    key: str | None = None


@dataclass
class Load:
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, result: Result) -> None:
        with self.lock:
            self.results.append(result)

    def of(self, status: int) -> list[Result]:
        return [r for r in self.results if r.status == status]


def drive(
    url: str,
    *,
    threads: int,
    seconds: float | None = None,
    per_thread: int | None = None,
    body: bytes,
    keyed: bool = False,
) -> Load:
    """``threads`` clients, each posting ``body`` back to back for ``seconds`` or ``per_thread``
    requests. With ``keyed``, every request has its own ``Idempotency-Key``."""
    load = Load()
    deadline = time.monotonic() + (seconds if seconds is not None else 1e9)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            sent = 0
            while time.monotonic() < deadline and (per_thread is None or sent < per_thread):
                sent += 1
                key = uuid.uuid4().hex if keyed else None
                headers = {"Content-Type": "application/json"}
                if key:
                    headers["Idempotency-Key"] = key
                begin = time.perf_counter()
                try:
                    response = http.post("/v1/score", content=body, headers=headers)
                except httpx.TransportError:
                    load.add(Result(0, time.perf_counter() - begin, key=key))
                    continue
                took = time.perf_counter() - begin
                recorded = response.json().get("recorded") if response.status_code == 200 else None
                load.add(Result(response.status_code, took, recorded, key))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return load


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@contextmanager
def serve(env: dict[str, str], *args: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="xent-load-") as tmp:
        full = {"XENT_LOG_LEVEL": "warning", **env}
        with xent_serve(Path(tmp), *args, env=full, check_exit=False) as server:
            yield server


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` holds, or None after ``timeout``."""
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        if predicate():
            return time.monotonic() - begin
        time.sleep(step)
    return None


# --- scenarios -------------------------------------------------------------------------------


def baseline(seconds: float) -> list[Row]:
    body = batch_body(0)
    with serve({"XENT_MAX_CONCURRENCY": "16"}, "--workers", "2") as server:
        drive(server.url, threads=16, seconds=1, body=body)  # warm-up
        with PeakRss(server.proc.pid) as rss:
            begin = time.monotonic()
            load = drive(server.url, threads=16, seconds=seconds, body=body)
            took = time.monotonic() - begin
        ok = [r.seconds for r in load.of(200)]
    name = "baseline (2 workers, 16 clients, 256x10)"
    return [
        (name, "requests (non-200)", f"{len(load.results)} ({len(load.results) - len(ok)})"),
        (name, "throughput", f"{len(ok) / took:.0f} batches/s = {len(ok) * N / took:,.0f} items/s"),
        (name, "latency p50 / p99", f"{ms(pct(ok, 50))} / {ms(pct(ok, 99))}"),
        (name, "peak RSS, all server processes", f"{rss.peak:.0f} MiB"),
    ]


def overload(seconds: float) -> list[Row]:
    body = batch_body(1)
    with serve({"XENT_MAX_CONCURRENCY": "4"}) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:

            def one() -> float:
                begin = time.perf_counter()
                assert http.post("/v1/score", content=body).status_code == 200
                return time.perf_counter() - begin

            unloaded = statistics.median([one() for _ in range(30)])
            load = drive(server.url, threads=16, seconds=seconds, body=body)
            stop = time.monotonic()
            recovered = wait_for(lambda: one() <= 2 * unloaded, timeout=30, step=0)
            recovery = None if recovered is None else time.monotonic() - stop
    ok = [r.seconds for r in load.of(200)]
    busy = len(load.of(503))
    name = "overload (1 worker, limit 4, 16 clients)"
    return [
        (name, "unloaded p50", ms(unloaded)),
        (name, "accepted: count, p50 / p99", f"{len(ok)}, {ms(pct(ok, 50))} / {ms(pct(ok, 99))}"),
        (name, "503 share", f"{busy / max(len(load.results), 1):.1%} of {len(load.results)}"),
        (name, "other statuses", str(len(load.results) - len(ok) - busy)),
        (name, "recovery time", "none in 30 s" if recovery is None else ms(recovery)),
    ]


def _oversized(port: int, chunked: bool) -> int | None:
    head = "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += (
        "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {8 * MiB}\r\n\r\n"
    )
    piece = b" " * 65536
    chunk = b"10000\r\n" + piece + b"\r\n" if chunked else piece
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head.encode())
            for _ in range(8 * MiB // 65536):
                sock.sendall(chunk)
        except OSError:
            pass
        try:
            data = sock.recv(4096)
        except OSError:
            return None
    return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else None


def oversized(seconds: float) -> list[Row]:
    with serve({"XENT_MAX_BODY_BYTES": str(MiB)}) as server:
        port = int(server.url.rsplit(":", 1)[1])
        pid = server.proc.pid
        httpx.post(f"{server.url}/v1/score", content=batch_body(2))  # warm the app up
        before = rss_mib(pid)
        statuses: list[int | None] = []
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def flood(i: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                status = _oversized(port, chunked=(i + n) % 2 == 1)
                n += 1
                with lock:
                    statuses.append(status)

        with PeakRss(pid) as rss:
            threads = [threading.Thread(target=flood, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        time.sleep(1)
        after = rss_mib(pid)
        healthy = httpx.get(f"{server.url}/healthz").status_code == 200
    refused = sum(s == 413 for s in statuses)
    name = "oversized flood (8 MiB bodies, limit 1 MiB)"
    return [
        (name, "requests, 413 share", f"{len(statuses)}, {refused / max(len(statuses), 1):.1%}"),
        (name, "RSS before / peak / after", f"{before:.0f} / {rss.peak:.0f} / {after:.0f} MiB"),
        (name, "healthy afterwards", "OK" if healthy else "FAIL"),
    ]


def _db_keys(path: Path, stream: str) -> tuple[set[str], int, str, int]:
    """(idempotency keys, rows, integrity_check, foreign-key violations) of a SQLite store."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT idempotency_key FROM xent_batches WHERE stream = ?", (stream,)
        ).fetchall()
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        orphans = len(db.execute("PRAGMA foreign_key_check").fetchall())
    return {r[0] for r in rows}, len(rows), str(integrity), orphans


def _acknowledged(load: Load) -> set[str]:
    return {r.key for r in load.of(200) if r.recorded and r.key}


def contention(per_thread: int) -> list[Row]:
    body = batch_body(3, stream="contention")
    with serve({}, "--workers", "4") as server:
        db = Path(server.log.parent) / "data" / "xent.db"
        load = drive(server.url, threads=16, per_thread=per_thread, body=body, keyed=True)
        acked = _acknowledged(load)
        keys, rows, integrity, orphans = _db_keys(db, "contention")
    lost = len(acked - keys)
    name = "store contention (4 workers, 16 clients)"
    return [
        (name, "acknowledged / recorded batches", f"{len(acked)} / {rows}"),
        (
            name,
            "non-200 / recorded: false",
            f"{len(load.results) - len(load.of(200))} / "
            f"{sum(r.recorded is False for r in load.results)}",
        ),
        (
            name,
            "lost acknowledged",
            f"{lost} {'OK' if lost == 0 and rows == len(acked) else 'FAIL'}",
        ),
        (name, "integrity_check / FK violations", f"{integrity} / {orphans}"),
    ]


def kill(seconds: float) -> list[Row]:
    body = batch_body(4, stream="kill")
    killed: list[int] = []
    with serve({}, "--workers", "2") as server:
        db = Path(server.log.parent) / "data" / "xent.db"
        stop = threading.Event()

        def killer() -> None:
            for _ in range(3):
                if stop.wait(seconds / 4):
                    return
                workers = _children(server.proc.pid)
                procs = [p for p in workers if "spawn_main" in _cmdline(p)]
                if procs:
                    os.kill(procs[-1], signal.SIGKILL)
                    killed.append(procs[-1])

        assassin = threading.Thread(target=killer)
        assassin.start()
        load = drive(server.url, threads=8, seconds=seconds, body=body, keyed=True)
        stop.set()
        assassin.join()
        back = wait_for(lambda: httpx.get(f"{server.url}/healthz").status_code == 200, 30)
        keys, rows, integrity, orphans = _db_keys(db, "kill")
    acked = _acknowledged(load)
    lost = len(acked - keys)
    errors = len(load.of(0))
    name = "worker killed mid-write (2 workers, 8 clients)"
    return [
        (name, "SIGKILLs / transport errors", f"{len(killed)} / {errors}"),
        (name, "acknowledged / recorded", f"{len(acked)} / {rows} (+{len(keys - acked)} unacked)"),
        (name, "lost acknowledged", f"{lost} {'OK' if lost == 0 else 'FAIL'}"),
        (name, "integrity_check / FK violations", f"{integrity} / {orphans}"),
        (name, "serving again", "OK" if back is not None else "FAIL"),
    ]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Relay:
    """A loopback TCP relay to ``target`` that can be cut (listener and live connections
    closed) and restored on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def store_down(seconds: float) -> list[Row]:
    import sqlalchemy as sa

    from tests.support.postgres import PG_URL, pg_unavailable

    name = "store unavailable (PostgreSQL relay cut)"
    reason = pg_unavailable()
    if reason is not None:
        return [(name, "skipped", reason)]
    schema = f"xent_load_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    pg = sa.engine.make_url(PG_URL)
    relay = Relay((pg.host or "127.0.0.1", pg.port or 5432))
    relay.up()
    url = pg.set(host="127.0.0.1", port=relay.port, query={"options": f"-csearch_path={schema}"})
    env = {
        "XENT_DATABASE_URL": url.render_as_string(hide_password=False),
        "XENT_STORE_RETRY_SECONDS": "1",
    }
    body = batch_body(5, stream="store-down")
    try:
        with serve(env) as server, httpx.Client(base_url=server.url, timeout=30) as http:

            def ready() -> bool:
                return http.get("/readyz").status_code == 200

            def recorded() -> Any:
                return http.post("/v1/score", content=body).json().get("recorded")

            assert wait_for(ready, 30) is not None and recorded() is True
            relay.down()
            flip = wait_for(lambda: not ready(), 30)
            load = drive(server.url, threads=4, seconds=seconds / 2, body=body)
            relay.up()
            recover = wait_for(ready, 60)
            after = recorded()
    finally:
        relay.down()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    ok = load.of(200)
    unrecorded = sum(r.recorded is False for r in ok)
    return [
        (name, "/readyz 503 after the cut", "never" if flip is None else ms(flip)),
        (
            name,
            "batches while down: 200, recorded false",
            f"{len(ok)}/{len(load.results)}, {unrecorded}/{len(ok)}",
        ),
        (
            name,
            "/readyz 200 after restoring (retry 1 s)",
            "never" if recover is None else ms(recover),
        ),
        (name, "recorded: true again", "OK" if after is True else "FAIL"),
    ]


def _pg_keys(url: str, stream: str) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT idempotency_key FROM xent_batches WHERE stream = :s"), {"s": stream}
            )
            return {r[0] for r in rows if r[0]}
    finally:
        engine.dispose()


def hung_store(seconds: float) -> list[Row]:
    from tests.support.pgcluster import cluster_unavailable, private_cluster

    name = "hung store (PostgreSQL frozen, deadline 2 s)"
    reason = cluster_unavailable()
    if reason is not None:
        return [(name, "skipped", reason)]
    recorded_body = batch_body(7, stream="hung")
    plain_body = batch_body(8)
    with private_cluster() as pg:
        env = {"XENT_DATABASE_URL": pg.url, "XENT_STORE_RETRY_SECONDS": "1"}
        with serve(env) as server, httpx.Client(base_url=server.url, timeout=30) as http:

            def recorded() -> bool:
                response = http.post("/v1/score", content=recorded_body)
                return bool(response.json().get("recorded"))

            assert wait_for(lambda: http.get("/readyz").status_code == 200, 30) is not None
            unloaded = drive(server.url, threads=1, per_thread=20, body=plain_body)
            loads: dict[str, Load] = {}

            def run(label: str, body: bytes) -> None:
                loads[label] = drive(
                    server.url, threads=4, seconds=seconds, body=body, keyed=label == "recorded"
                )

            pg.freeze()
            try:
                begin = time.perf_counter()
                ready = http.get("/readyz").status_code
                ready_took = time.perf_counter() - begin
                both = [
                    threading.Thread(target=run, args=("recorded", recorded_body)),
                    threading.Thread(target=run, args=("plain", plain_body)),
                ]
                for t in both:
                    t.start()
                for t in both:
                    t.join()
            finally:
                pg.thaw()
            back = wait_for(recorded, 60, step=0.1)
            acked = _acknowledged(loads["recorded"])
            lost = len(acked - _pg_keys(pg.url, "hung"))
    rec, plain = loads["recorded"], loads["plain"]
    rec_ok = [r.seconds for r in rec.of(200)]
    plain_ok = [r.seconds for r in plain.of(200)]
    base = [r.seconds for r in unloaded.of(200)]
    return [
        (name, "/readyz while frozen: status, answered in", f"{ready}, {ms(ready_took)}"),
        (
            name,
            "recorded batches: 200 / sent, recorded false",
            f"{len(rec_ok)}/{len(rec.results)}, {sum(r.recorded is False for r in rec.of(200))}",
        ),
        (
            name,
            "recorded batches: latency p50 / p99",
            f"{ms(pct(rec_ok, 50))} / {ms(pct(rec_ok, 99))}",
        ),
        (
            name,
            "plain batches: 200 / sent, p50 / p99 (unloaded p50)",
            f"{len(plain_ok)}/{len(plain.results)}, {ms(pct(plain_ok, 50))} / "
            f"{ms(pct(plain_ok, 99))} ({ms(pct(base, 50))})",
        ),
        (name, "recording again after the thaw", "never" if back is None else ms(back)),
        (name, "lost acknowledged", f"{lost} {'OK' if lost == 0 else 'FAIL'}"),
    ]


def soak(seconds: float) -> list[Row]:
    body = batch_body(6, stream="soak")
    warm = min(30.0, seconds / 5)
    with serve({}, "--workers", "2") as server:
        pid = server.proc.pid
        drive(server.url, threads=8, seconds=warm, body=body)
        rss0, fds0 = rss_mib(pid), open_fds(pid)
        load = drive(server.url, threads=8, seconds=seconds, body=body)
        rss1, fds1 = rss_mib(pid), open_fds(pid)
    name = f"soak ({seconds:.0f} s, 2 workers, 8 clients)"
    return [
        (
            name,
            "requests (non-200)",
            f"{len(load.results)} ({len(load.results) - len(load.of(200))})",
        ),
        (name, f"RSS after {warm:.0f} s warm-up / at the end", f"{rss0:.0f} / {rss1:.0f} MiB"),
        (name, "open FDs after warm-up / at the end", f"{fds0} / {fds1}"),
    ]


SCENARIOS = [
    "baseline",
    "overload",
    "oversized",
    "contention",
    "kill",
    "store-down",
    "hung-store",
    "soak",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10, help="load per scenario (10)")
    parser.add_argument("--soak-seconds", type=float, default=600, help="the soak (600)")
    parser.add_argument("--batches", type=int, default=40, help="per client, contention (40)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=SCENARIOS)
    args = parser.parse_args()
    runs: dict[str, Callable[[], list[Row]]] = {
        "baseline": lambda: baseline(args.seconds),
        "overload": lambda: overload(args.seconds),
        "oversized": lambda: oversized(args.seconds),
        "contention": lambda: contention(args.batches),
        "kill": lambda: kill(args.seconds),
        "store-down": lambda: store_down(args.seconds),
        "hung-store": lambda: hung_store(args.seconds),
        "soak": lambda: soak(args.soak_seconds),
    }
    rows: list[Row] = []
    for name in args.only:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows += runs[name]()
        except Exception as exc:  # report and go on with the next scenario
            rows.append((name, "FAILED", f"{type(exc).__name__}: {exc}"))
    print(f"\n{os.cpu_count()} CPUs; server and clients share them.\n")
    print("| scenario | figure | value |\n|---|---|---|")
    for scenario, figure, value in rows:
        print(f"| {scenario} | {figure} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
