"""Offline scoring at scale: ``xent score`` on a 10,000,000 x 10 float32 Parquet file, on one
process and with ``--dask local:2``, against the I/O floor and the core's compute time.

What it measures (wall clock; every contender in a fresh process of its own, so that each
pays its own imports, page cache aside, and its memory is its own):

* ``pyarrow read``: the I/O floor. ``pq.ParquetFile.iter_batches`` over the logits and label
  columns, each batch turned into numpy arrays (``N x 10`` float32, int64 labels): what any
  reader of this file must do, and no scoring.
* ``xentcore.score``: the core's compute time. The whole array is read into memory first
  (not timed), then one ``xentcore.score(x, y, input_type="logits")`` call is timed.
* ``xent score``: the command (``--json``), single process: startup, reading, scoring every
  chunk, merging. Target: within 2x of (I/O floor + core compute).
* ``xent score --dask local:2``: the same on a local cluster of 2 worker processes (1 thread
  each), started and stopped by the command (its start-up, about 3 s, is in the time).
* ``xent score --dask ADDRESS``: the same on a cluster that is already running, as a team's
  cluster is (2 worker processes of 1 thread, started by this script before the turns, their
  imports warmed): connecting, reading and scoring the row groups on the workers, merging.
* Both commands again on a file of 1,000 rows: their fixed cost (interpreter start-up and
  imports; the local cluster's start and stop).
* ``sklearn log_loss``: scikit-learn's ``log_loss`` on the whole array in one piece (float64
  softmax probabilities computed first, not timed; ``--no-sklearn`` leaves it out: it needs
  about 4 GB).

Peak RSS: the largest total resident memory of the contender's process tree (the process and
its descendants: the Dask scheduler, nannies and workers), sampled every 20 ms from /proc, and
the contender process's own high-water mark (``VmHWM``).

The contenders run interleaved, one turn after another (A B C D E, A B C D E, ...; each turn
in a rotated order), and each time is the median over the turns, so a load that drifts over
minutes on a shared machine affects them alike. The ratio of ``xent score`` to (I/O floor +
core) is the median over the turns of each turn's own ratio, [min, max] beside it.

The file (about 440 MB) is generated once into a temporary directory (``--dir``), in row
groups of 1,048,576 rows (pyarrow's default), and removed at the end (``--keep`` keeps it and
prints its path; ``--file`` reuses one).

Run from the repository root::

    python bench/offline.py                  # 3 turns (about 10 minutes on 2 cores)
    python bench/offline.py --rows 1000000   # a smaller file, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as `python bench/offline.py`, bench/ itself is first on sys.path (bench/http.py would
# shadow the standard library's http): this script imports nothing from its own folder.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

# the repository root last, so `bench.machine` is found and xentcore resolves as it would anyway
sys.path.append(str(Path(__file__).resolve().parents[1]))
import numpy as np

from bench.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
K = 10
ROW_GROUP = 1 << 20
#: ``--dask ADDRESS``: a cluster that is already running (as a team's cluster is), started
#: by this script before the turns (2 worker processes, 1 thread each) and stopped at the end
RUNNING = "xent score --dask ADDRESS (running, 2 workers)"
CONTENDERS = ("pyarrow read", "xentcore.score", "xent score", "xent score --dask local:2", RUNNING)
SKLEARN = "sklearn log_loss"
#: The commands' fixed cost: the same on a file of SMALL rows (start-up, imports, a cluster).
SMALL = 1000
FIXED = tuple(f"{name}, {SMALL:,} rows" for name in CONTENDERS[2:])
#: The environment variable handing the running cluster's address to the command.
_ADDRESS = "XENT_BENCH_DASK_ADDRESS"


def start_cluster() -> Any:
    """A local Dask cluster of 2 worker processes (1 thread each), its workers warmed with the
    imports a scoring task needs (as a long-running cluster's are)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with Client(cluster) as client:
        client.run(lambda: __import__("xentcore.files") and __import__("pyarrow.parquet"))
    return cluster


# -- the file --------------------------------------------------------------------------------


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """N x 10 float32 logits (a fixed-size-list column ``logits``) and int64 labels, written
    one row group at a time (memory: one row group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([("logits", pa.list_(pa.float32(), K)), ("label", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            x = rng.normal(scale=2.0, size=(n, K)).astype(np.float32)
            y = rng.integers(0, K, n)
            logits = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), K)
            writer.write_table(pa.table({"logits": logits, "label": y}, schema=schema))


# -- the contenders, each run in a process of its own (``--measure NAME``) -------------------


def _read(path: Path, batch_rows: int) -> tuple[int, float]:
    import pyarrow.parquet as pq  # imported before the clock starts (measure)

    n, checksum = 0, 0.0
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["logits", "label"]):
        x = batch.column(0).values.to_numpy().reshape(-1, K)
        y = batch.column(1).to_numpy()
        n += len(y)
        checksum += float(x[0, 0])  # touch the arrays
    return n, checksum


def _load(path: Path) -> tuple[Any, Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["logits", "label"])
    x = table.column("logits").combine_chunks().values.to_numpy().reshape(-1, K)
    y = table.column("label").to_numpy()
    del table
    return np.ascontiguousarray(x), y


def measure(name: str, path: Path) -> dict[str, Any]:
    """Run one contender here; its seconds (what it times) and rows."""
    if name == "pyarrow read":
        import pyarrow.parquet  # noqa: F401  (not timed: the others import before timing too)

        t0 = time.perf_counter()
        rows, _ = _read(path, 1 << 16)
        return {"seconds": time.perf_counter() - t0, "rows": rows}
    if name == "xentcore.score":
        import xentcore

        x, y = _load(path)
        t0 = time.perf_counter()
        r = xentcore.score(x, y, input_type="logits")
        return {"seconds": time.perf_counter() - t0, "rows": r.n_items, "loss": r.loss_mean}
    if name == SKLEARN:
        from sklearn.metrics import log_loss

        x, y = _load(path)
        x = x.astype(np.float64)  # the probabilities in float64, as log_loss computes
        x -= x.max(axis=1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(axis=1, keepdims=True)
        t0 = time.perf_counter()
        loss = log_loss(y, x, labels=list(range(K)))
        return {"seconds": time.perf_counter() - t0, "rows": len(y), "loss": float(loss)}
    raise SystemExit(f"unknown contender {name!r}")


def _command(name: str, path: Path) -> list[str]:
    """The process a contender runs in."""
    if name.startswith("xent score"):
        if name in FIXED:
            path = path.with_name("small.parquet")
        argv = [sys.executable, "-m", "service.cli", "score", str(path)]
        argv += ["--predictions-col", "logits", "--labels-col", "label", "--input-type", "logits"]
        argv += ["--json", "--max-flagged", "0"]
        if "--dask" in name:
            argv += ["--dask", os.environ[_ADDRESS] if name.startswith(RUNNING) else "local:2"]
        return argv
    return [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--file", str(path)]


# -- memory of a process tree -----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def _rss(pid: int) -> int:
    """Resident bytes of a process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMemory:
    """The peak total RSS of a process and its descendants, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.own = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids, seen = [self.pid], []
            while pids:
                pid = pids.pop()
                seen.append(pid)
                pids += _children(pid)
            self.peak = max(self.peak, sum(_rss(p) for p in seen))
            self.own = max(self.own, _hwm(self.pid))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_contender(name: str, path: Path) -> dict[str, Any]:
    """Run a contender in its own process: its time, rows, and peak memory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        _command(name, path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    memory = TreeMemory(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {err.decode()[-2000:]}")
    answer = json.loads(out.decode().strip().splitlines()[-1])
    if name.startswith("xent score"):
        result = {"seconds": wall, "rows": answer["n_items"], "loss": answer["loss"]["mean"]}
    else:
        result = answer
    return {**result, "peak": memory.peak, "own": memory.own}


# -- the report -----------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, align, *rows])


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def report(runs: dict[str, list[dict[str, Any]]], rows: int) -> str:
    """The table: median seconds, rows/s, peak memory; the target's ratio per turn."""
    med = {name: statistics.median(r["seconds"] for r in got) for name, got in runs.items()}
    floor = med["pyarrow read"] + med["xentcore.score"]
    table = []
    for name, got in runs.items():
        seconds = [r["seconds"] for r in got]
        per_turn = ""
        if name in FIXED:
            table.append([name, f"{med[name]:.2f} [{min(seconds):.2f}, {max(seconds):.2f}]"])
            table[-1] += ["", "", "", _mb(max(r["peak"] for r in got)), ""]
            continue
        after = ""
        if name.startswith("xent score"):
            ratios = [
                r["seconds"] / (a["seconds"] + b["seconds"])
                for r, a, b in zip(got, runs["pyarrow read"], runs["xentcore.score"], strict=True)
            ]
            per_turn = f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]"
            work = med[name] - med[f"{name}, {SMALL:,} rows"]  # its start-up taken out
            after = f"{rows / work / 1e6:.2f} M ({work / floor:.2f}x)"
        table.append(
            [
                name,
                f"{med[name]:.2f} [{min(seconds):.2f}, {max(seconds):.2f}]",
                f"{rows / med[name] / 1e6:.2f} M",
                per_turn,
                after,
                _mb(max(r["peak"] for r in got)),
                _mb(max(r["own"] for r in got)),
            ]
        )
    table.append(["I/O floor + core compute", f"{floor:.2f}", f"{rows / floor / 1e6:.2f} M"])
    table[-1] += ["1.00x", "", "", ""]
    header = [
        "contender",
        "seconds, median [min, max]",
        "rows/s",
        "/ (I/O floor + core), per turn",
        "rows/s after start-up (/ floor + core)",
        "peak RSS (process tree)",
        "peak RSS (the process)",
    ]
    return markdown_table(header, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the file")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved turns (default 3)")
    parser.add_argument("--dir", type=Path, help="where to write the file (default: a temp dir)")
    parser.add_argument("--file", type=Path, help="a file made by an earlier --keep run")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--no-sklearn", action="store_true", help="leave log_loss out")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one contender, in this process
    args = parser.parse_args(argv)
    if args.measure:
        assert args.file is not None
        print(json.dumps(measure(args.measure, args.file)))
        return 0

    work = None
    if args.file is not None:
        path = args.file
    else:
        work = Path(tempfile.mkdtemp(prefix="xent-offline-", dir=args.dir))
        path = work / "eval.parquet"
        t0 = time.perf_counter()
        generate(path, args.rows)
        print(
            f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(path).metadata.num_rows
    size = path.stat().st_size
    small = path.with_name("small.parquet")
    if not small.exists():
        generate(small, SMALL, seed=1)
    names = [*CONTENDERS, *FIXED]
    try:
        import sklearn  # noqa: F401

        if not args.no_sklearn:
            names.append(SKLEARN)
    except ImportError:
        print("scikit-learn is not installed: its row is left out", file=sys.stderr)
    loads = [os.getloadavg()]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    cluster = start_cluster()
    os.environ[_ADDRESS] = cluster.scheduler_address
    t_start = time.perf_counter()
    try:
        for turn in range(max(1, args.repeats)):
            order = names[turn % len(names) :] + names[: turn % len(names)]
            for name in order:
                runs[name].append(run_contender(name, path))
                print(
                    f"turn {turn + 1}: {name}: {runs[name][-1]['seconds']:.2f} s", file=sys.stderr
                )
            loads.append(os.getloadavg())
    finally:
        cluster.close()
        if work is not None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif work is not None:
            print(f"kept {path} (and {small.name})", file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    losses = {n: r[0]["loss"] for n, r in runs.items() if n not in FIXED and "loss" in r[0]}

    print(report(runs, rows))
    print()
    print(
        f"{rows:,} rows x {K} float32 logits and an int64 label, Parquet "
        f"({size / 1e6:,.0f} MB, row groups of "
        f"{ROW_GROUP:,} rows). Times: medians over {len(runs[names[0]])} interleaved turns "
        "[min, max]; `xent score` rows are the command's wall time (start-up included: the "
        "`local:2` row includes starting and stopping its local cluster, the running "
        "cluster's row connecting to it; the rows on "
        f"{SMALL:,} rows show that fixed cost, and 'after start-up' takes their median out of "
        "the command's), the others the timed part of their process. "
        "Peak RSS: sampled total of the process tree / the process's own high-water mark "
        "(the running cluster's workers are not in the command's tree). "
        "Mean losses agree: " + ", ".join(f"{n} {v:.9f}" for n, v in losses.items())
    )
    print()
    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} CPUs, {platform.machine()}); load average "
        f"(1 min) {' -> '.join(f'{la[0]:.2f}' for la in loads)}; numpy {np.__version__}, "
        f"Python {platform.python_version()}; total {elapsed:.0f} s"
    )
    print(f"Command: python bench/offline.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
