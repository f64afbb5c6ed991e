"""HTTP load on ``xent serve`` with a C load generator, against the HTTP floor. Run by hand:

    python -m bench.httpfloor                          # from the repository root; about 6 minutes
    python -m bench.httpfloor --duration 1 --rounds 1 --only 1-item     # a smoke run, ~20 s

What it measures: ``POST /v1/score`` with JSON batches (float probabilities, integer labels, no
``stream``: nothing is recorded) of 1 x 10, 32 x 10 and 1,000 x 10, driven by ``wrk`` (1 thread,
16 keep-alive connections by default), against servers that run side by side:

A. the empty app: an ASGI app that reads the request body and answers a fixed small JSON body,
   served by ``xent serve`` itself. This process runs ``service.cli.main(["serve", ...])`` with
   ``uvicorn.run``'s app argument swapped for this module's ``empty_app``; every other argument
   (uvloop, the bounded httptools protocol, workers, keep-alive, logging, the Prometheus
   multiprocess directory) is whatever ``xent serve`` passes, so the floor follows the CLI.
B. ``xent serve``: default settings (SQLite store in a temporary directory), no ``XENT_*`` from
   the calling environment (``--service-env XENT_NAME=VALUE`` sets one). At the defaults the
   service sheds what it cannot start at once: 1,000 x 10 bodies are scored in worker threads,
   and past ``XENT_MAX_CONCURRENCY`` (8) of them in flight the 16 connections get 503s.
C. the bare scoring app (``--no-bare`` leaves it out), swapped in as A is: the floor of scoring
   in Python on this stack. The body parsed by orjson, predictions and labels converted and
   scored by the very xentcore calls of the service's fast lane, the per-item columns answered
   by orjson, and nothing else (no validation of the other fields, limits, auth, request id,
   metrics). Its ratio to A bounds what any Python request path here can reach.

All get ``XENT_LOG_LEVEL=warning`` (``--log-level``), which is how ``xent serve`` turns
uvicorn's access log off. For each (batch, workers): a warm-up run of each server, then
``--rounds`` rounds A B C A B C ...; the ratios B / A and C / A of requests/s are taken per
round and their median (min-max) reported, so a stretch of load from other work on the machine
hits every arm of a round. Requests/s count 2xx responses only; p50 / p99 are wrk's per-request
latencies (of every response), the median of the rounds. Server CPU per request is the user +
system time of the server's process group (uvicorn and its workers, every thread) over a run,
per response: what a request costs the server whatever share of the CPUs wrk and other work left
it, so the steadiest figure on a shared machine.

wrk is driven by a generated Lua script: ``wrk.method``, ``wrk.body`` (read from a file) and
``wrk.headers`` make one static request; ``response()`` counts statuses outside 200-299 per
thread and ``done()`` prints one ``XENT-WRK {json}`` line (requests, duration, p50 / p90 / p99 /
max latency, non-2xx by status, socket errors) that this script parses. Any non-2xx response
or socket error makes the row FAIL (naming the statuses) and the exit status 1.

The issue-19 targets (1-item and 32 x 10, 1 worker, 16 connections: the service at >= 0.4x the
empty app's requests/s with p99 < 10 ms) are reported as PASS / FAIL, never asserted.

wrk is Debian's package ``wrk``: when missing, this script installs it with ``apt-get install
-y wrk`` if it runs as root and apt-get exists, and otherwise stops naming the command to run.
Every server and wrk runs in a process group of its own, on a free 127.0.0.1 port, and is
stopped on exit, Ctrl-C or SIGTERM included.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ would come first on sys.path: bench/service.py would shadow the
# ``service`` package and this file the standard library's ``http``. Keep the repository root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Mapping, Sequence  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from bench.machine import cpu_model  # noqa: E402

#: the app ``--serve-empty`` hands to uvicorn in place of ``service.app:app``
EMPTY_APP = "bench.httpfloor:empty_app"
SERVICE_APP = "service.app:app"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # service.cli's; its own import would be heavy here
_EMPTY_BODY = b'{"ok":true}'
_EMPTY_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_EMPTY_BODY)).encode("ascii")),
]

#: name -> (items, classes)
BATCHES = {"1-item": (1, 10), "32x10": (32, 10), "1000x10": (1000, 10)}
#: the issue-19 targets: these batches, 1 worker, 16 connections
TARGET_BATCHES = ("1-item", "32x10")
TARGET_RATIO = 0.4
TARGET_P99_MS = 10.0
TARGET_CONNECTIONS = 16

_MARK = "XENT-WRK "
_LUA = r"""-- generated by bench/httpfloor.py
local file = assert(io.open(%(body)s, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = {}  -- status -> count, in this thread's Lua state
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx[status] = (non2xx[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("non2xx")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%%d": %%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "p50_us": %%.1f, "p90_us": %%.1f, '
    .. '"p99_us": %%.1f, "max_us": %%.1f, "non2xx": {%%s}, "connect": %%d, "read": %%d, '
    .. '"write": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout))
end
"""


# --- the empty app, served by `xent serve` --------------------------------------------------


async def empty_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The HTTP floor: read the whole request body, answer 200 with a fixed small JSON body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _EMPTY_HEADERS})
    await send({"type": "http.response.body", "body": _EMPTY_BODY})


_BARE_RULES: Any = None


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The floor of scoring in Python: the body parsed by orjson, ``predictions`` and ``labels``
    converted by ``xentcore.jsonlists`` and scored by ``xentcore.fastpath`` (the calls the
    service's fast lane makes), and the per-item columns answered by orjson, with nothing else:
    no validation of the other fields, no limits, auth, request id or metrics. A body it cannot
    score this way is a 400."""
    global _BARE_RULES
    if scope["type"] != "http" or scope["method"] != "POST":  # lifespan, /healthz
        await empty_app(scope, receive, send)
        return
    import orjson

    from xentcore import fastpath
    from xentcore.jsonlists import float_array, int_vector
    from xentcore.types import FlagRules

    if _BARE_RULES is None:
        _BARE_RULES = FlagRules(min_confidence=0.5)
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    raw = orjson.loads(b"".join(chunks))
    x, y = float_array(raw.get("predictions")), int_vector(raw.get("labels"))
    r = None
    if x is not None and y is not None:
        r = fastpath.score(
            x, y, None, "probabilities", 0.0, 0.0, "max_probability", _BARE_RULES,
            0.5, 1e-4, 1e-15, 1, lazy=False,
        )  # fmt: skip
    if r is None:
        await send({"type": "http.response.start", "status": 400, "headers": _EMPTY_HEADERS})
        await send({"type": "http.response.body", "body": _EMPTY_BODY})
        return
    items = {"loss": r.item_loss, "confidence": r.confidence, "predicted": r.predicted_index}
    answer = {"loss": r.loss_mean, "confidence": r.confidence_mean, "accuracy": r.accuracy}
    answer["items"] = {**items, "flagged": r.flagged, "reasons": r.reasons}
    body = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: the apps ``--serve-empty`` can hand to uvicorn in place of ``service.app:app``
SWAPPED_APPS = {"empty": EMPTY_APP, "bare": "bench.httpfloor:bare_app"}


def serve_empty(port: int, workers: int, swapped: str = "empty") -> int:
    """``xent serve --port PORT --workers N`` with the empty app (or the bare scoring app) in
    place of the service."""
    import uvicorn

    from service import cli

    real_run = uvicorn.run

    def run(app: Any, **kwargs: Any) -> None:
        if app != SERVICE_APP:  # the CLI changed: fail loudly rather than measure another stack
            raise RuntimeError(f"xent serve runs {app!r}, expected {SERVICE_APP!r}")
        real_run(SWAPPED_APPS[swapped], **kwargs)

    # Swapping the app inside the CLI's own call, rather than calling uvicorn.run with copied
    # arguments, keeps the floor on whatever server settings `xent serve` uses now.
    uvicorn.run = run
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return cli.main(args)


# --- processes -------------------------------------------------------------------------------

#: process groups started by this run; whatever is left of them is killed at exit
_GROUPS: list[int] = []


def _spawn(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(command, start_new_session=True, **kwargs)
    _GROUPS.append(proc.pid)
    return proc


def _end_group(group: int) -> None:
    """SIGKILL whatever is left of a process group this run started, and forget it."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already empty
        pass
    if group in _GROUPS:
        _GROUPS.remove(group)


def _kill_leftovers() -> None:
    for group in list(_GROUPS):
        _end_group(group)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`, as Ctrl-C does


@dataclasses.dataclass
class Endpoint:
    """A server under load: its name in the table, its URL, its log file, and its process group
    (uvicorn's supervisor and its workers)."""

    name: str
    url: str
    log: Path
    group: int


def group_cpu_seconds(group: int) -> float:
    """User + system CPU time of the live processes of a process group, all threads."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:  # fields after the command: state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer /healthz in {timeout:.0f} s: {log.read_text()}")


@contextmanager
def empty_server(
    tmp: Path, workers: int, env: Mapping[str, str], app: str = "empty"
) -> Iterator[Endpoint]:
    """The empty app (or the bare scoring app) under ``xent serve``'s uvicorn, in its own
    process group."""
    from tests.support.server import free_port

    port = free_port()
    log = tmp / f"{app}-{workers}.log"
    command = [sys.executable, "-m", "bench.httpfloor", "--serve-empty", str(port), str(workers)]
    command += ["--app", app]
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("XENT_")},
        "XENT_DATA_DIR": str(tmp / f"{app}-{workers}"),
        **env,
    }
    full_env.pop(MULTIPROC_ENV, None)
    with log.open("wb") as out:
        proc = _spawn(command, cwd=_HERE.parent, env=full_env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log, 60)
        yield Endpoint("empty app" if app == "empty" else "bare scoring app", url, log, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _end_group(proc.pid)  # a worker that outlived its supervisor


@contextmanager
def service_server(tmp: Path, workers: int, env: Mapping[str, str]) -> Iterator[Endpoint]:
    """``xent serve --workers N`` with default settings, through tests/support/server.py."""
    from tests.support.server import xent_serve

    data = tmp / f"service-{workers}"
    data.mkdir()
    # xent_serve starts from this process's environment: drop its XENT_* (defaults only, and
    # the store in `data`) and a Prometheus directory the empty app's server would share.
    unset = [
        name
        for name in os.environ
        if (name.startswith("XENT_") and name not in {*env, "XENT_DATA_DIR"})
        or name == MULTIPROC_ENV
    ]
    group = None
    try:
        with xent_serve(
            data, "--workers", str(workers), env=env, unset=unset, timeout=60, check_exit=False
        ) as server:
            group = server.proc.pid  # xent_serve starts it in a session of its own
            _GROUPS.append(group)
            yield Endpoint("service", server.url, server.log, group)
    finally:
        if group is not None:
            _end_group(group)


# --- wrk -------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of wrk; installed from Debian when missing and possible, else SystemExit."""
    found = shutil.which("wrk")
    if found:
        return found
    hint = "install it with `sudo apt-get install -y wrk` (Debian/Ubuntu package `wrk`)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"bench.httpfloor needs wrk, the C HTTP load generator: {hint}")
    print("wrk is missing: apt-get install -y wrk", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)  # stale package lists
        subprocess.run(install, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(f"`apt-get install -y wrk` did not install wrk: {hint}")
    return found


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk (unknown version)"


@dataclasses.dataclass(frozen=True)
class Run:
    """One wrk run against one server."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: responses outside 200-299, by status
    non2xx: Mapping[int, int]
    #: wrk's socket errors (connect, read, write, timeout), those that happened
    socket_errors: Mapping[str, int]
    #: CPU time of the server's processes over the run (NaN: not measured)
    server_cpu_seconds: float = math.nan

    @property
    def rps(self) -> float:
        """2xx responses per second: a shed request (503) is no request served."""
        return (self.requests - sum(self.non2xx.values())) / self.seconds

    @property
    def failures(self) -> int:
        return sum(self.non2xx.values()) + sum(self.socket_errors.values())

    @property
    def cpu_us(self) -> float:
        """Server CPU time per response, microseconds: what a request costs the server, whether
        or not wrk or other work on the machine kept it from using a whole core."""
        return self.server_cpu_seconds / max(self.requests, 1) * 1e6


def parse_wrk(stdout: str) -> Run:
    """The ``XENT-WRK {json}`` line that the Lua ``done()`` prints."""
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            errors = {k: data[k] for k in ("connect", "read", "write", "timeout") if data[k]}
            return Run(
                requests=int(data["requests"]),
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1e3,
                p99_ms=data["p99_us"] / 1e3,
                non2xx={int(status): n for status, n in sorted(data["non2xx"].items())},
                socket_errors=errors,
            )
    raise RuntimeError(f"no {_MARK.strip()} line in wrk's output:\n{stdout}")


def lua_script(path: Path, body_file: Path) -> Path:
    body = "[==[" + str(body_file) + "]==]"  # a Lua long string: no escaping needed
    path.write_text(_LUA % {"body": body, "mark": _MARK})
    return path


def run_wrk(
    wrk: str, endpoint: Endpoint, script: Path, args: argparse.Namespace, seconds: float
) -> Run:
    """One wrk run; with the server's CPU time over it (wrk's own start and stop included)."""
    command = [
        wrk,
        f"--threads={args.threads}",
        f"--connections={args.connections}",
        f"--duration={seconds:g}s",
        "--timeout=10s",
        f"--script={script}",
        f"{endpoint.url}/v1/score",
    ]
    cpu = group_cpu_seconds(endpoint.group)
    proc = _spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        _end_group(proc.pid)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {err.decode()}{out.decode()}")
    cpu = group_cpu_seconds(endpoint.group) - cpu
    return dataclasses.replace(parse_wrk(out.decode()), server_cpu_seconds=cpu)


# --- bodies ----------------------------------------------------------------------------------


def batch_body(items: int, classes: int, seed: int = 0) -> bytes:
    """A JSON ``/v1/score`` body: float64 probabilities (rows sum to 1), integer labels."""
    import numpy as np
    import orjson

    rng = np.random.default_rng(seed)
    p = rng.random((items, classes)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, classes, items)
    return orjson.dumps({"predictions": p.tolist(), "labels": labels.tolist()})


def check_answers(endpoints: Sequence[Endpoint], body: bytes) -> None:
    """One request to each server before the load: 200, the empty app's own answer (the CLI
    really ran it), and the service records nothing."""
    import httpx

    for endpoint in endpoints:
        response = httpx.post(
            f"{endpoint.url}/v1/score",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f"{endpoint.name}: {response.status_code} {response.text[:300]}")
        if endpoint.name == "bare scoring app" and b'"items"' not in response.content:
            raise RuntimeError(f"xent serve did not run the bare app: {response.text[:300]}")
        if endpoint.name == "empty app" and response.content != _EMPTY_BODY:
            raise RuntimeError(f"xent serve did not run the empty app: {response.text[:300]}")
        if endpoint.name == "service" and response.json().get("recorded") is not None:
            raise RuntimeError(f"the service recorded the batch: {response.text[:300]}")


# --- measuring -------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """The rounds of one (batch, workers) cell."""

    batch: str
    body_bytes: int
    workers: int
    empty: list[Run]
    service: list[Run]
    bare: list[Run] = dataclasses.field(default_factory=list)

    def ratios(self) -> list[float]:
        return [s.rps / e.rps for e, s in zip(self.empty, self.service, strict=True)]

    def bare_ratios(self) -> list[float]:
        return [b.rps / e.rps for e, b in zip(self.empty, self.bare, strict=True)]

    def failures(self) -> int:
        return sum(r.failures for r in (*self.empty, *self.service, *self.bare))


def measure(
    wrk: str, args: argparse.Namespace, tmp: Path, env: Mapping[str, str], workers: int
) -> list[Row]:
    rows = []
    warm = min(2.0, args.duration)
    with ExitStack() as stack:
        empty = stack.enter_context(empty_server(tmp, workers, env))
        service_env = {**env, **dict(args.service_env)}
        service = stack.enter_context(service_server(tmp, workers, service_env))
        bare = stack.enter_context(empty_server(tmp, workers, env, "bare")) if args.bare else None
        for name in args.only:
            items, classes = BATCHES[name]
            body = batch_body(items, classes)
            body_file = tmp / f"{name}.json"
            body_file.write_bytes(body)
            script = lua_script(tmp / f"{name}.lua", body_file)
            servers = (empty, service) if bare is None else (empty, service, bare)
            check_answers(servers, body)
            for endpoint in servers:  # warm-up, not counted
                run_wrk(wrk, endpoint, script, args, warm)
            row = Row(name, len(body), workers, [], [])
            for round_ in range(1, args.rounds + 1):
                row.empty.append(run_wrk(wrk, empty, script, args, args.duration))
                row.service.append(run_wrk(wrk, service, script, args, args.duration))
                if bare is not None:
                    row.bare.append(run_wrk(wrk, bare, script, args, args.duration))
                _progress(row, round_, args.rounds)
            rows.append(row)
        for endpoint in servers:
            if "Traceback" in endpoint.log.read_text():
                print(f"a traceback in the {endpoint.name}'s log:", file=sys.stderr)
                print(endpoint.log.read_text()[-4000:], file=sys.stderr)
    return rows


def _progress(row: Row, round_: int, rounds: int) -> None:
    def run(name: str, r: Run) -> str:
        return (
            f"{name} {r.rps:8,.0f} req/s p50 {r.p50_ms:6.2f} p99 {r.p99_ms:6.2f} ms "
            f"CPU {r.cpu_us:5,.0f} us/req"
        )

    e, s = row.empty[-1], row.service[-1]
    line = f"{row.batch:>8} {row.workers}w round {round_}/{rounds}: {run('empty', e)} | "
    line += f"{run('service', s)} | {s.rps / e.rps:.3f}x"
    if row.bare:
        line += f" | bare {row.bare[-1].rps:8,.0f} req/s {row.bare[-1].rps / e.rps:.3f}x"
    for name, r in (("empty", e), ("service", s)):
        if r.failures:
            line += f" | {name}: {describe_failures([r])}"
    print(line, file=sys.stderr, flush=True)


# --- the report ------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def describe_failures(runs: Sequence[Run]) -> str:
    """``1,305 x 503, 2 read errors``: the non-2xx statuses and socket errors of ``runs``."""
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    for r in runs:
        for status, n in r.non2xx.items():
            statuses[status] = statuses.get(status, 0) + n
        for kind, n in r.socket_errors.items():
            errors[kind] = errors.get(kind, 0) + n
    parts = [f"{n:,} x {status}" for status, n in sorted(statuses.items())]
    parts += [f"{n:,} {kind} errors" for kind, n in sorted(errors.items())]
    return ", ".join(parts)


def verdict(row: Row, connections: int) -> str:
    if row.failures():
        failed = [
            f"{name} {describe_failures(runs)}"
            for name, runs in (("empty app", row.empty), ("service", row.service))
            if any(r.failures for r in runs)
        ]
        return "FAIL: " + "; ".join(failed)
    if row.batch not in TARGET_BATCHES or row.workers != 1 or connections != TARGET_CONNECTIONS:
        return "no target"
    ratio = _median(row.ratios())
    p99 = _median([r.p99_ms for r in row.service])
    misses = []
    if ratio < TARGET_RATIO:
        misses.append(f"ratio {ratio:.2f} < {TARGET_RATIO}")
    if p99 >= TARGET_P99_MS:
        misses.append(f"p99 {p99:.1f} ms >= {TARGET_P99_MS:g}")
    return "PASS" if not misses else "FAIL (" + ", ".join(misses) + ")"


def _label(row: Row) -> str:
    items, classes = BATCHES[row.batch]
    shape = "1 item (1x10)" if items == 1 else f"{items:,}x{classes}"
    size = row.body_bytes / 1024
    return f"{shape}, {size:.1f} KiB" if size < 10 else f"{shape}, {size:.0f} KiB"


def table(rows: Sequence[Row], connections: int) -> list[str]:
    lines = [
        "| batch (JSON body) | workers | empty app req/s | service req/s (2xx) "
        "| service / empty, median (min-max) | empty p50 / p99 ms | service p50 / p99 ms "
        "| server CPU us/request, empty / service "
        "| bare scoring app / empty, req/s "
        f"| target (>= {TARGET_RATIO}x, p99 < {TARGET_P99_MS:g} ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ratios = row.ratios()

        def lat(runs: list[Run]) -> str:
            p50 = _median([r.p50_ms for r in runs])
            p99 = _median([r.p99_ms for r in runs])
            return f"{p50:.2f} / {p99:.2f}"

        lines.append(
            f"| {_label(row)} | {row.workers} "
            f"| {_median([r.rps for r in row.empty]):,.0f} "
            f"| {_median([r.rps for r in row.service]):,.0f} "
            f"| {_median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f}) "
            f"| {lat(row.empty)} | {lat(row.service)} "
            f"| {_median([r.cpu_us for r in row.empty]):,.0f} / "
            f"{_median([r.cpu_us for r in row.service]):,.0f} "
            f"| {_bare(row)} "
            f"| {verdict(row, connections)} |"
        )
    return lines


def _bare(row: Row) -> str:
    if not row.bare:
        return "not run"
    ratios = row.bare_ratios()
    rps = _median([r.rps for r in row.bare])
    return f"{rps:,.0f} ({_median(ratios):.3f}x)"


def versions(wrk: str) -> str:
    names = ["uvicorn", "httptools", "uvloop", "fastapi", "starlette", "pydantic", "numpy"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    import xentcore

    return (
        f"Python {platform.python_version()}, xentcore {xentcore.__version__} "
        f"(native kernels: {xentcore.NATIVE_KERNELS}), {', '.join(found)}; {wrk_version(wrk)}"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- command line ----------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 second, got {text}")
    return value


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("XENT_"):
        raise argparse.ArgumentTypeError(f"expected XENT_NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.httpfloor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=_positive, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--connections", type=_positive, default=16, help="wrk connections, in all (16)"
    )
    parser.add_argument("--duration", type=_seconds, default=5.0, help="seconds per run (5)")
    parser.add_argument("--rounds", type=_positive, default=5, help="A B pairs per cell (5)")
    parser.add_argument(
        "--only", nargs="+", choices=list(BATCHES), default=list(BATCHES), help="batches"
    )
    parser.add_argument(
        "--workers", nargs="+", type=_positive, default=[1, 2], help="uvicorn workers (1 2)"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="XENT_LOG_LEVEL of both servers (warning: no access log)",
    )
    parser.add_argument(
        "--service-env",
        type=_assignment,
        action="append",
        default=[],
        metavar="XENT_NAME=VALUE",
        help="a setting of the service only (repeatable), e.g. XENT_MAX_CONCURRENCY=16; "
        "default: none, every setting at its default",
    )
    parser.add_argument(
        "--no-bare",
        dest="bare",
        action="store_false",
        help="leave out the bare scoring app (the floor of scoring in Python)",
    )
    parser.add_argument(
        "--serve-empty", nargs=2, type=int, metavar=("PORT", "WORKERS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--app", choices=list(SWAPPED_APPS), default="empty", help=argparse.SUPPRESS
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_empty is not None:
        return serve_empty(*args.serve_empty, swapped=args.app)
    if args.connections < args.threads:
        raise SystemExit("--connections must be at least --threads (wrk's rule)")
    wrk = ensure_wrk()
    signal.signal(signal.SIGTERM, _on_sigterm)
    command = shlex.join(["python", "-m", "bench.httpfloor", *(argv or sys.argv[1:])])
    load_before = _load()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="xent-bench-http-") as name:
            tmp = Path(name)
            env = {"XENT_LOG_LEVEL": args.log_level}  # both servers: nothing else of XENT_*
            for workers in args.workers:
                rows += measure(wrk, args, tmp, env, workers)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        _kill_leftovers()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    service_env = "".join(f", service {k}={v}" for k, v in args.service_env)
    print()
    print(f"`{command}`")
    print()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs (servers and wrk share them)")
    print(f"Versions: {versions(wrk)}")
    print(
        f"wrk: {args.threads} thread(s), {args.connections} connections, {args.duration:g} s "
        f"per run, {args.rounds} round(s) of {'A B C' if args.bare else 'A B'} per row, "
        "after a warm-up run of each; "
        f"XENT_LOG_LEVEL={args.log_level}{service_env}; load average before / after: "
        f"{load_before} / {_load()}"
    )
    print()
    print("\n".join(table(rows, args.connections)))
    return 1 if any(row.failures() for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
