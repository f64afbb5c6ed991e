"""The monitoring store at scale: seeding, windowed reads, memory and the cost of recording.

Reproduce the README figures from the repository root (about 15 minutes; PostgreSQL at
``tests/support/postgres.py``'s PG_URL, skipped with a message when none answers)::

    git worktree add /tmp/base dd98582
    python bench/store.py --baseline-tree /tmp/base

    python bench/store.py --quick --backend sqlite   # a smoke run of a minute
    python bench/store.py --flag-only                # item 5 alone, on fresh stores

Per backend (SQLite in a temporary file; PostgreSQL in a private schema, dropped at the end):

1. Seed a fresh store through its own bulk write path (``SqlStore.record_many``, transactions of
   20,000 batches): stream ``big`` with ``--batches`` batches and stream ``ref`` with
   ``--ref-batches`` batches, both spread evenly (with jitter) over the 30 days up to now, and
   ``--small-streams`` streams of 10 batches. The summaries are 16 real ones (32 x 10 random
   logits scored by ``xentcore.score``), cycled. Seeding time, batches/s and disk use (SQLite
   file + WAL after a checkpoint; PostgreSQL ``pg_total_relation_size`` of the three tables
   after ``VACUUM ANALYZE``, what autovacuum does on its own after a bulk load) per million
   batches.
2. ``xent serve`` (1 worker) on that store. Over one keep-alive httpx client, ``ref`` and
   ``big`` calls interleaved (A B A B), ``--calls`` each: the summary over 30 days with
   ``bucket=1h``, the summary of the last 5 minutes of the seeded history
   (``since=T-5m&until=T``, T = the end of the seeding: later "last 5 minutes" hold no batch),
   the summary without parameters; and ``GET /v1/streams``. p50 / p99 per read and stream, and
   big / ref as the median of the per-pair ratios. Every answer must be a 200, and ``n_items``
   of ``big``'s windows must equal what was seeded in the window the answer reports.
3. Server RSS (``VmRSS`` of its process tree, sampled every 20 ms) while 4 threads each ask for
   ``big``'s 30-day hourly summary 10 times.
4. ``POST /v1/score`` of a 32 x 10 logits batch with labels and ``stream``: 300 requests after
   30 warm-up ones; with ``--baseline-tree``, interleaved with the same request to a server run
   from that tree (the previous release) on a fresh store of its own, and the median per-pair
   ratio new / baseline. (The new server records into the seeded store.)
5. A 100,000 x 10 logits batch with string ids and ``flag.min_confidence`` 0.9 (most items
   flagged): in process, interleaved, ``xentcore.score`` (A) against ``flagged_items`` +
   ``summarize`` + ``store.record`` (B), and over HTTP the same batch as JSON without
   ``stream``, with ``stream`` and ``keep_items: false`` (the flagged items), and with
   ``stream`` keeping all 100,000 items (API.md section 9).

Prints the machine, one Markdown table per backend and the targets (pass / fail).
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
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402

import xentcore as xc  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from service.recording import flagged_items  # noqa: E402
from service.store.sql import SqlStore  # noqa: E402
from tests.support.postgres import pg_unavailable, private_schema  # noqa: E402
from tests.support.server import free_port  # noqa: E402
from xentcore.summary import BatchSummary, summarize  # noqa: E402

DAY = 86400.0
WINDOW = 30 * DAY
CHUNK = 20_000
SMALL_EACH = 10
ITEMS_PER_BATCH = 32
N_SUMMARIES = 16
RSS_THREADS, RSS_CALLS, RSS_PERIOD = 4, 10, 0.02
RECORD_CALLS, RECORD_WARMUP = 300, 30
FLAG_N, FLAG_K, FLAG_REPEATS, FLAG_HTTP_REPEATS = 100_000, 10, 7, 5
MiB = 1 << 20
F64 = npt.NDArray[np.float64]
REPO = _HERE.parent

# Targets of the issue.
P50_MS, P99_MS, SCALE_RATIO, RSS_MIB, RECORD_RATIO, FLAG_RATIO = 50, 200, 1.5, 300, 1.2, 2.0


@dataclass(frozen=True)
class Sizes:
    batches: int
    ref_batches: int
    small_streams: int
    calls: int


@dataclass
class Report:
    """Everything measured on one backend: Markdown rows and the figures the targets check."""

    backend: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    reads: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (p50, p99)
    scale: dict[str, float] = field(default_factory=dict)  # read -> big/ref
    peak_rss_mib: float | None = None
    record_ratio: float | None = None
    flag_ratio: float | None = None
    http_flag_ratio: float | None = None
    problems: list[str] = field(default_factory=list)

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))


# --- small helpers ---------------------------------------------------------------------------


def p50(ms: Sequence[float]) -> float:
    return float(np.percentile(ms, 50))


def p99(ms: Sequence[float]) -> float:
    return float(np.percentile(ms, 99))


def pair_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of the per-pair ratios a[i] / b[i] (pairs measured back to back)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- seeding ---------------------------------------------------------------------------------


def sample_summaries(n: int = N_SUMMARIES) -> list[BatchSummary]:
    """Summaries of real scored batches: 32 x 10 random logits with labels."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        x = rng.normal(0.0, 2.0, (ITEMS_PER_BATCH, 10))
        y = rng.integers(0, 10, ITEMS_PER_BATCH)
        out.append(summarize(xc.score(x, y, input_type="logits")))
    return out


def spread(n: int, end: float, rng: np.random.Generator) -> F64:
    """``n`` times spread evenly, with jitter, over the 30 days before ``end`` (sorted)."""
    step = WINDOW / n
    times = end - WINDOW + (np.arange(n) + rng.random(n)) * step
    return np.minimum(times, end - 1e-3)


def write_stream(store: SqlStore, stream: str, times: F64, summaries: list[BatchSummary]) -> None:
    """Write a stream's batches through ``record_many``, ``CHUNK`` per transaction."""
    for lo in range(0, len(times), CHUNK):
        chunk = times[lo : lo + CHUNK].tolist()
        batch = [(t, summaries[(lo + i) % len(summaries)]) for i, t in enumerate(chunk)]
        store.record_many(stream=stream, task="multiclass", batches_at=batch)


@dataclass(frozen=True)
class Seeded:
    end: float
    big: F64
    seconds: float
    n_batches: int


def seed(store: SqlStore, sizes: Sizes) -> Seeded:
    rng = np.random.default_rng(11)
    summaries = sample_summaries()
    end = time.time()
    big = spread(sizes.batches, end, rng)
    start = time.perf_counter()
    write_stream(store, "big", big, summaries)
    write_stream(store, "ref", spread(sizes.ref_batches, end, rng), summaries)
    for i in range(sizes.small_streams):
        times = np.sort(end - rng.random(SMALL_EACH) * WINDOW)
        write_stream(store, f"small-{i:04d}", times, summaries)
    seconds = time.perf_counter() - start
    total = sizes.batches + sizes.ref_batches + sizes.small_streams * SMALL_EACH
    return Seeded(end, big, seconds, total)


def disk_bytes(store: SqlStore, sqlite_path: Path | None) -> dict[str, int]:
    """Bytes on disk: the SQLite file and its WAL, or PostgreSQL's three tables with indexes."""
    if sqlite_path is not None:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{sqlite_path}-wal")
        return {
            "file": sqlite_path.stat().st_size,
            "wal": wal.stat().st_size if wal.exists() else 0,
        }
    out = {}
    with store.engine.connect() as conn:
        for table in ("xent_batches", "xent_rollups", "xent_flagged"):
            size = conn.execute(sa.text(f"SELECT pg_total_relation_size('{table}')")).scalar()
            out[table] = int(size or 0)
    return out


def vacuum_analyze(store: SqlStore) -> None:
    """What autovacuum does after a bulk load (visibility map and planner statistics)."""
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("SET statement_timeout = 0")  # not a request: no store deadline
        for table in ("xent_batches", "xent_rollups", "xent_flagged"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def seed_report(report: Report, seeded: Seeded, disk: dict[str, int]) -> None:
    rate = seeded.n_batches / seeded.seconds
    report.add(
        "seeding (record_many, 20,000 a transaction)",
        f"{seeded.n_batches:,} batches in {seeded.seconds:,.1f} s ({rate:,.0f} batches/s)",
    )
    per_million = sum(disk.values()) / MiB / (seeded.n_batches / 1e6)
    parts = ", ".join(f"{name} {size / MiB:,.1f}" for name, size in disk.items())
    report.add("disk use, MiB", f"{parts}; {per_million:,.0f} MiB per million batches")


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited early: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout} s: {server.log.read_text()[-3000:]}")


@contextmanager
def serve(
    database_url: str, data_dir: Path, log: Path, tree: Path | None = None
) -> Iterator[Server]:
    """``xent serve`` (1 worker) on ``database_url``; from ``tree`` (a checkout) when given."""
    port = free_port()
    env = {
        **os.environ,
        "XENT_DATABASE_URL": database_url,
        "XENT_DATA_DIR": str(data_dir),
        "XENT_HOST": "127.0.0.1",
        "XENT_PORT": str(port),
        "XENT_WORKERS": "1",
        "XENT_LOG_LEVEL": "warning",
    }
    # the code of the tree being measured, never whatever is installed (an editable install
    # of another checkout would be measured instead)
    cwd = REPO if tree is None else tree
    command = [sys.executable, "-m", "service.cli", "serve"]
    env["PYTHONPATH"] = str(cwd)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_ready(server, 120)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                text = Path(f"/proc/{p}/task/{task}/children").read_text()
                todo.extend(int(c) for c in text.split())
        except OSError:
            pass
    return out


def rss_mib(pid: int) -> float:
    """``VmRSS`` of the process tree, MiB."""
    kib = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        except OSError:
            pass
    return kib / 1024


# --- reads -----------------------------------------------------------------------------------


def timed(client: httpx.Client, method: str, path: str, **kw: Any) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = client.request(method, path, **kw)
    ms = (time.perf_counter() - start) * 1e3
    if response.status_code != 200:
        raise RuntimeError(f"{method} {path} {kw}: {response.status_code} {response.text[:300]}")
    return ms, response


@dataclass(frozen=True)
class Read:
    name: str
    params: Callable[[], dict[str, str]]


def reads(seed_end: float) -> list[Read]:
    return [
        Read(
            "summary 30 d, bucket=1h", lambda: {"since": iso(time.time() - WINDOW), "bucket": "1h"}
        ),
        Read("summary last 5 min", lambda: {"since": iso(seed_end - 300), "until": iso(seed_end)}),
        Read("summary, no parameters", dict),
    ]


def expected_items(big: F64, answer: dict[str, Any]) -> int:
    """Items seeded into ``big`` within the window the answer says it read."""
    lo = -np.inf if answer["since"] is None else parse_iso(answer["since"])
    hi = parse_iso(answer["until"])
    return int(np.count_nonzero((big >= lo) & (big < hi))) * ITEMS_PER_BATCH


def measure_read(client: httpx.Client, read: Read, calls: int, big: F64, report: Report) -> None:
    """``ref`` and ``big`` in turns; checks ``big``'s n_items against the seeding."""
    times: dict[str, list[float]] = {"ref": [], "big": []}
    for i in range(calls + 1):  # the first pair warms up
        for stream in ("ref", "big"):
            ms, response = timed(
                client, "GET", f"/v1/streams/{stream}/summary", params=read.params()
            )
            if i:
                times[stream].append(ms)
            if stream == "big":
                answer = response.json()
                got, want = answer["total"]["n_items"], expected_items(big, answer)
                if got != want:
                    report.problems.append(f"{read.name}: big n_items {got:,} != seeded {want:,}")
    for stream, series in times.items():
        report.reads[f"{read.name} ({stream})"] = (p50(series), p99(series))
    report.scale[read.name] = ratio = pair_ratio(times["big"], times["ref"])
    report.add(
        f"{read.name}: p50 / p99 ms, ref | big; big/ref",
        f"{p50(times['ref']):.1f} / {p99(times['ref']):.1f} | "
        f"{p50(times['big']):.1f} / {p99(times['big']):.1f}; {ratio:.2f}x",
    )


def measure_streams(client: httpx.Client, calls: int, n_streams: int, report: Report) -> None:
    timed(client, "GET", "/v1/streams")
    ms = []
    for _ in range(calls):
        t, response = timed(client, "GET", "/v1/streams")
        ms.append(t)
    listed = len(response.json()["streams"])
    if listed != n_streams:
        report.problems.append(f"/v1/streams lists {listed} streams, {n_streams} seeded")
    report.reads["GET /v1/streams"] = (p50(ms), p99(ms))
    report.add(
        f"GET /v1/streams ({listed:,} streams): p50 / p99 ms", f"{p50(ms):.1f} / {p99(ms):.1f}"
    )


def measure_rss(server: Server, report: Report) -> None:
    """Peak RSS of the server while ``RSS_THREADS`` threads read big's 30-day hourly summary."""
    path = "/v1/streams/big/summary"
    baseline = rss_mib(server.proc.pid)
    peak, done = baseline, threading.Event()
    errors: list[str] = []

    def reader() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(RSS_CALLS):
                params = {"since": iso(time.time() - WINDOW), "bucket": "1h"}
                response = client.get(path, params=params)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=reader) for _ in range(RSS_THREADS)]
    for t in threads:
        t.start()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(server.proc.pid))
            time.sleep(RSS_PERIOD)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    if errors:
        report.problems.append(f"parallel reads: {len(errors)} errors, first {errors[0]}")
    report.peak_rss_mib = peak
    report.add(
        f"server RSS, {RSS_THREADS} threads x {RSS_CALLS} 30-day hourly reads of big",
        f"{baseline:,.0f} MiB before, {peak:,.0f} MiB peak ({seconds:.1f} s)",
    )


# --- recording -------------------------------------------------------------------------------


def small_body(stream: str) -> bytes:
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 2.0, (ITEMS_PER_BATCH, 10))
    y = rng.integers(0, 10, ITEMS_PER_BATCH)
    body = {"predictions": x, "labels": y, "input_type": "logits", "stream": stream}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def post_ms(client: httpx.Client, body: bytes) -> float:
    ms, response = timed(
        client, "POST", "/v1/score", content=body, headers={"Content-Type": "application/json"}
    )
    if b'"stream"' in body and response.json().get("recorded") is not True:
        raise RuntimeError(f"batch not recorded: {response.text[:300]}")
    return ms


def measure_recording(server: Server, baseline: Server | None, report: Report) -> None:
    body = small_body("rec")
    clients = [httpx.Client(base_url=s.url, timeout=60) for s in (server, baseline) if s]
    try:
        for _ in range(RECORD_WARMUP):
            for client in clients:
                post_ms(client, body)
        times: list[list[float]] = [[] for _ in clients]
        for _ in range(RECORD_CALLS):
            for client, ms in zip(clients, times, strict=True):
                ms.append(post_ms(client, body))
    finally:
        for client in clients:
            client.close()
    new = times[0]
    label = f"POST /v1/score 32 x 10 with stream, {RECORD_CALLS} calls: p50 / p99 ms"
    if baseline is None:
        report.add(label, f"{p50(new):.2f} / {p99(new):.2f} (no --baseline-tree)")
        return
    old = times[1]
    report.record_ratio = ratio = pair_ratio(new, old)
    report.add(
        label + ", new | baseline; new/baseline",
        f"{p50(new):.2f} / {p99(new):.2f} | {p50(old):.2f} / {p99(old):.2f}; {ratio:.2f}x",
    )


# --- 100,000 flagged items -------------------------------------------------------------------


@dataclass(frozen=True)
class FlagBatch:
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]
    ids: list[str]


def flag_batch() -> FlagBatch:
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 1.0, (FLAG_N, FLAG_K))
    y = rng.integers(0, FLAG_K, FLAG_N)
    return FlagBatch(x, y, [f"item-{i:06d}" for i in range(FLAG_N)])


def flag_in_process(store: SqlStore, batch: FlagBatch, report: Report) -> None:
    """``xentcore.score`` (A) against flagged_items + summarize + store.record (B), in turns."""
    rule = {"min_confidence": 0.9}

    def score() -> xc.ScoreResult:
        return xc.score(batch.x, batch.y, input_type="logits", flag=rule)

    def record(result: xc.ScoreResult) -> None:
        items = flagged_items(result, batch.ids)
        store.record(stream="flag100k", task=result.task, summary=summarize(result), flagged=items)

    record(score())  # warm up
    a, b = [], []
    for _ in range(FLAG_REPEATS):
        start = time.perf_counter()
        result = score()
        a.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        record(result)
        b.append((time.perf_counter() - start) * 1e3)
    n_flagged = int(result.flagged.sum())
    report.flag_ratio = ratio = pair_ratio(b, a)
    report.add(
        f"100,000 x 10, {n_flagged:,} flagged, in process: score | flagged_items + summarize + "
        "record (median ms); B/A",
        f"{statistics.median(a):,.0f} | {statistics.median(b):,.0f}; {ratio:.2f}x",
    )


def flag_http(server: Server, batch: FlagBatch, report: Report) -> None:
    """POST /v1/score of the batch as JSON: without ``stream`` (A), with ``stream`` and
    ``keep_items: false`` (B: the batch, its flagged items and rollups: what this target is
    about) and with ``stream`` keeping every item too (C: API.md section 9), in turns."""
    body: dict[str, Any] = {
        "predictions": batch.x,
        "labels": batch.y,
        "ids": batch.ids,
        "input_type": "logits",
        "flag": {"min_confidence": 0.9},
    }
    dump = orjson.OPT_SERIALIZE_NUMPY
    plain = orjson.dumps(body, option=dump)
    flagged = orjson.dumps({**body, "stream": "flag100k-http", "keep_items": False}, option=dump)
    kept = orjson.dumps({**body, "stream": "flag100k-kept"}, option=dump)
    without, with_, with_kept = [], [], []
    with httpx.Client(base_url=server.url, timeout=300) as client:
        for warm in (plain, flagged, kept):
            post_ms(client, warm)
        for _ in range(FLAG_HTTP_REPEATS):
            without.append(post_ms(client, plain))
            with_.append(post_ms(client, flagged))
            with_kept.append(post_ms(client, kept))
    report.http_flag_ratio = ratio = pair_ratio(with_, without)
    kept_ratio = pair_ratio(with_kept, without)
    report.add(
        f"100,000 x 10 JSON ({len(plain) / 1e6:.0f} MB) POST /v1/score: without stream | with "
        "stream, keep_items false | with stream, items kept (median ms); B/A, C/A",
        f"{statistics.median(without):,.0f} | {statistics.median(with_):,.0f} | "
        f"{statistics.median(with_kept):,.0f}; {ratio:.2f}x, {kept_ratio:.2f}x",
    )


def flag_only(name: str) -> Report:
    """The 100,000-flagged-items measures alone, on a fresh store (``--flag-only``)."""
    report = Report(name)
    with tempfile.TemporaryDirectory(prefix="xent-bench-flag-") as tmp_name:
        tmp = Path(tmp_name)
        with backend(name, tmp) as be:
            batch = flag_batch()
            with serve(be.url, tmp / "data", tmp / "serve.log") as server:
                flag_http(server, batch, report)
            store = SqlStore.from_url(be.url)
            try:
                flag_in_process(store, batch, report)
            finally:
                store.close()
    return report


# --- one backend -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    base_url: str
    sqlite_path: Path | None


@contextmanager
def backend(name: str, tmp: Path) -> Iterator[Backend]:
    """Two fresh stores of the backend: the one seeded, and the baseline server's."""
    if name == "sqlite":
        path = tmp / "store.db"
        yield Backend(name, f"sqlite:///{path}", f"sqlite:///{tmp / 'baseline.db'}", path)
        return
    with private_schema() as url, private_schema() as base_url:
        yield Backend(name, url, base_url, None)


def baseline_native(tree: Path) -> str:
    """Make the baseline tree score with the same compiled row kernels as this one: copy the
    built extension when the tree has none and its C source is the same. Returns a note."""
    if list((tree / "xentcore").glob("_rowops*.so")):
        return "baseline tree has its compiled row kernels"
    built = list((REPO / "xentcore").glob("_rowops*.so"))
    ours, theirs = REPO / "xentcore" / "_rowops.c", tree / "xentcore" / "_rowops.c"
    if built and theirs.exists() and ours.read_bytes() == theirs.read_bytes():
        shutil.copy2(built[0], tree / "xentcore" / built[0].name)
        return "copied the compiled row kernels (same _rowops.c) into the baseline tree"
    return "WARNING: baseline tree scores without compiled row kernels"


def run_backend(name: str, sizes: Sizes, tree: Path | None) -> Report:
    report = Report(name)
    with tempfile.TemporaryDirectory(prefix="xent-bench-store-") as tmp_name:
        tmp = Path(tmp_name)
        with backend(name, tmp) as be:
            store = SqlStore.from_url(be.url)
            try:
                seeded = seed(store, sizes)
                if be.sqlite_path is None:
                    vacuum_analyze(store)
                seed_report(report, seeded, disk_bytes(store, be.sqlite_path))
            finally:
                store.close()
            print(f"[{name}] seeded in {seeded.seconds:.0f} s", file=sys.stderr, flush=True)
            n_streams = 2 + sizes.small_streams
            with ExitStack() as stack:
                server = stack.enter_context(serve(be.url, tmp / "data", tmp / "serve.log"))
                base = None
                if tree is not None:
                    base = stack.enter_context(
                        serve(be.base_url, tmp / "base-data", tmp / "base.log", tree)
                    )
                with httpx.Client(base_url=server.url, timeout=60) as client:
                    for read in reads(seeded.end):
                        measure_read(client, read, sizes.calls, seeded.big, report)
                    measure_streams(client, sizes.calls, n_streams, report)
                measure_rss(server, report)
                measure_recording(server, base, report)
                batch = flag_batch()
                flag_http(server, batch, report)
                if "Traceback" in server.log.read_text():
                    report.problems.append(f"traceback in the server log: {server.log}")
            store = SqlStore.from_url(be.url)
            try:
                flag_in_process(store, batch, report)
            finally:
                store.close()
    return report


# --- output ----------------------------------------------------------------------------------


def header(sizes: Sizes, tree: Path | None) -> None:
    print("# Monitoring store benchmark (bench/store.py)\n")
    print(f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} cores")
    print(f"- Python {platform.python_version()}, numpy {np.__version__}")
    print(f"- SQLite {sqlite3.sqlite_version}, PostgreSQL {pg_version()}")
    print(
        f"- seeded: big {sizes.batches:,} batches, ref {sizes.ref_batches:,}, "
        f"{sizes.small_streams:,} streams x {SMALL_EACH}; {sizes.calls} calls per read"
    )
    print(f"- baseline: {tree if tree is not None else 'none'}\n", flush=True)


def pg_version() -> str:
    if pg_unavailable() is not None:
        return "unavailable"
    with private_schema() as url:
        store_engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with store_engine.connect() as conn:
                return str(conn.execute(sa.text("SHOW server_version")).scalar())
        finally:
            store_engine.dispose()


def table(report: Report) -> None:
    print(f"\n## {report.backend}\n")
    print("| measure | figure |")
    print("|---|---|")
    for label, value in report.rows:
        print(f"| {label} | {value} |")
    for problem in report.problems:
        print(f"\nPROBLEM: {problem}")
    sys.stdout.flush()


def over(reads: dict[str, tuple[float, float]], which: int, limit: float) -> str:
    """The worst read's figure, and every read at or above ``limit`` ms."""
    worst = max(reads.items(), key=lambda kv: kv[1][which])
    text = f"max {worst[1][which]:.1f} ms ({worst[0]})"
    missed = [f"{name} {ms[which]:.1f}" for name, ms in reads.items() if ms[which] >= limit]
    return text + (f"; over: {', '.join(missed)}" if missed else "")


def read_targets(r: Report) -> list[tuple[str, str, bool]]:
    """The targets of the reads: p50, p99 and big / ref."""
    worst50 = max(r.reads.items(), key=lambda kv: kv[1][0])
    worst99 = max(r.reads.items(), key=lambda kv: kv[1][1])
    worst_scale = max(r.scale.items(), key=lambda kv: kv[1])
    return [
        (f"every read p50 < {P50_MS} ms", over(r.reads, 0, P50_MS), worst50[1][0] < P50_MS),
        (f"every read p99 < {P99_MS} ms", over(r.reads, 1, P99_MS), worst99[1][1] < P99_MS),
        (
            f"big / ref <= {SCALE_RATIO}x",
            f"max {worst_scale[1]:.2f}x ({worst_scale[0]})",
            worst_scale[1] <= SCALE_RATIO,
        ),
    ]


def targets(reports: list[Report]) -> None:
    print("\n## targets\n")
    print("| target | backend | figure | verdict |")
    print("|---|---|---|---|")
    for r in reports:
        lines: list[tuple[str, str, bool]] = []
        if r.reads:
            lines += read_targets(r)
        if r.peak_rss_mib is not None:
            lines.append(
                (
                    f"server RSS < {RSS_MIB} MiB",
                    f"peak {r.peak_rss_mib:,.0f} MiB",
                    r.peak_rss_mib < RSS_MIB,
                )
            )
        if r.record_ratio is not None:
            lines.append(
                (
                    f"recording new/baseline <= {RECORD_RATIO}x",
                    f"{r.record_ratio:.2f}x",
                    r.record_ratio <= RECORD_RATIO,
                )
            )
        elif r.reads:
            lines.append((f"recording new/baseline <= {RECORD_RATIO}x", "no --baseline-tree", True))
        if r.flag_ratio is not None:
            lines.append(
                (
                    f"100k flagged: record <= {FLAG_RATIO}x score",
                    f"{r.flag_ratio:.2f}x",
                    r.flag_ratio <= FLAG_RATIO,
                )
            )
        if r.http_flag_ratio is not None:
            lines.append(
                (
                    f"100k flagged over HTTP: with stream (keep_items false) <= {FLAG_RATIO}x "
                    "without",
                    f"{r.http_flag_ratio:.2f}x",
                    r.http_flag_ratio <= FLAG_RATIO,
                )
            )
        lines.append(
            ("sanity (200s, n_items, stream count)", f"{len(r.problems)} problems", not r.problems)
        )
        for name, figure, ok in lines:
            shown = "n/a" if figure == "no --baseline-tree" else verdict(ok)
            print(f"| {name} | {r.backend} | {figure} | {shown} |")


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[list[str], Sizes, Path | None, bool]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--batches", type=int, default=1_000_000, help="batches of stream big")
    parser.add_argument("--ref-batches", type=int, default=10_000, help="batches of stream ref")
    parser.add_argument("--small-streams", type=int, default=1_000, help="streams of 10 batches")
    parser.add_argument("--calls", type=int, default=15, help="timed calls per read and stream")
    parser.add_argument("--baseline-tree", type=Path, help="a checkout of the previous release")
    parser.add_argument("--quick", action="store_true", help="20,000 / 2,000 / 50 streams")
    parser.add_argument(
        "--flag-only", action="store_true", help="only the 100,000-flagged-items measures"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.ref_batches, args.small_streams = 20_000, 2_000, 50
    names = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    sizes = Sizes(args.batches, args.ref_batches, args.small_streams, args.calls)
    tree = args.baseline_tree.resolve() if args.baseline_tree is not None else None
    return names, sizes, tree, args.flag_only


def main(argv: Sequence[str] | None = None) -> None:
    names, sizes, tree, only_flag = parse_args(argv)
    header(sizes, tree)
    if tree is not None:
        print(f"- {baseline_native(tree)}\n")
    reports = []
    for name in names:
        if name == "postgresql" and (why := pg_unavailable()) is not None:
            print(f"\npostgresql skipped: {why}")
            continue
        report = flag_only(name) if only_flag else run_backend(name, sizes, tree)
        table(report)
        reports.append(report)
    targets(reports)


if __name__ == "__main__":
    main()
