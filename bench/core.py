"""Micro-benchmark of ``xentcore.score`` against torch, one np.exp pass and scikit-learn.

What it measures (wall clock with ``time.perf_counter``, after one warm-up call of each):

* float32 logits with random integer labels, the shapes of issue 18: 1,000,000x2, 200,000x10,
  20,000x1,000, 2,000x1,000, 500x32,000 and 64x128,000. ``xentcore.score(x, y,
  input_type="logits")`` (validation, loss, confidence, prediction and flags) against torch
  ``F.cross_entropy(x, y, reduction="none")`` (the per-item loss only) on one thread, and for
  K >= 1,000 against a single ``np.exp(x, out=buf)`` pass over the input (into a buffer
  allocated once, so the page faults of a fresh output do not slow the reference down).
  The calls run interleaved, A B A B ...: each turn times every contender once, and each
  ratio is the median over the turns of that turn's ratio, with the smallest and largest
  (the spread) beside it: on a shared machine the load drifts over seconds, and a ratio of
  two calls made a moment apart is what holds.
* The same at ``--threads`` threads (default 2) for the largest shapes: ``score(...,
  threads=T)`` against torch with ``torch.set_num_threads(T)``.
* scikit-learn ``log_loss`` on the softmax probabilities (the mean loss only; fewer turns on
  large shapes), and 100,000x10 float64 probabilities with integer labels.
* Peak *additional* memory of ``xentcore.score`` on each logits shape (``tracemalloc``), as a
  multiple of the input's ``nbytes``.

numpy's BLAS (xentcore's finiteness scan uses it) is held to one thread through
threadpoolctl when it is installed: ``threads`` is about xentcore's fused kernel. torch and
scikit-learn are optional: a missing one is reported and its columns are left empty; the
script exits 0. Output: a Markdown table, then the CPU model (from /proc/cpuinfo), the
instruction set the fused kernel runs, the library versions and the command line.

Small batches (1 item, 32 x 10), where the fixed cost of a call is what counts, have their own
script: ``bench/small.py``.

Run from the repository root::

    python bench/core.py                   # full run (a few minutes)
    python bench/core.py --repeats 15      # more turns
    python bench/core.py --quick           # smaller shapes, a smoke run of seconds
    python bench/core.py --numpy-fallback  # without the compiled kernels
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as `python bench/core.py`, bench/ itself is first on sys.path, and a script there named
# like a module (bench/http.py) would shadow it (the standard library's http, which torch
# imports): this script imports nothing from its own folder.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

# the repository root last, so `bench.machine` is found and xentcore resolves as it would anyway
sys.path.append(str(Path(__file__).resolve().parents[1]))
import numpy as np
import numpy.typing as npt

from bench.machine import cpu_model

try:
    import xentcore
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import xentcore
from xentcore import _kernels as xc_kernels

torch: ModuleType | None
try:
    import torch
    import torch.nn.functional as torch_f
except ImportError:
    torch = None
    torch_f = None

sk_log_loss: Callable[..., float] | None
try:
    from sklearn import __version__ as sklearn_version
    from sklearn.metrics import log_loss as sk_log_loss
except ImportError:
    sk_log_loss = None
    sklearn_version = None

threadpool_limits: Callable[..., Any] | None
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

FULL_SHAPES: list[tuple[int, int]] = [
    (1_000_000, 2),
    (200_000, 10),
    (20_000, 1_000),
    (2_000, 1_000),
    (500, 32_000),
    (64, 128_000),
]
QUICK_SHAPES: list[tuple[int, int]] = [(100_000, 2), (20_000, 10), (2_000, 1_000), (16, 32_000)]
#: The shapes also run at ``--threads`` threads.
FULL_THREAD_SHAPES: list[tuple[int, int]] = [(1_000_000, 2), (20_000, 1_000), (500, 32_000)]
QUICK_THREAD_SHAPES: list[tuple[int, int]] = [(100_000, 2), (2_000, 1_000)]
FULL_PROBS: tuple[int, int] = (100_000, 10)
QUICK_PROBS: tuple[int, int] = (10_000, 10)
#: Rows from this width on are also compared with one np.exp pass.
EXP_MIN_K = 1_000
# sklearn's log_loss is far slower on wide inputs: cap its turns by input size
SKLEARN_BIG_ELEMENTS = 5_000_000
SKLEARN_BIG_REPEATS = 3


@dataclass
class Timed:
    """Wall-clock seconds of each turn of each contender."""

    times: dict[str, list[float]]

    def median(self, name: str) -> float | None:
        ts = self.times.get(name)
        return statistics.median(ts) if ts else None

    def ratios(self, num: str, den: str) -> list[float]:
        """Per-turn ratios num / den over the turns both ran."""
        a, b = self.times.get(num, []), self.times.get(den, [])
        return [x / y for x, y in zip(a, b, strict=False)]


def time_turns(fns: dict[str, Callable[[], Any]], repeats: dict[str, int]) -> Timed:
    """Warm each function up once, then time them in turns (A B C, A B C, ...) until each has
    run its ``repeats``. A garbage collection precedes every call."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for turn in range(max(repeats.values())):
        for name, fn in fns.items():
            if turn < repeats[name]:
                gc.collect()
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return Timed(times)


def peak_extra_bytes(fn: Callable[[], Any]) -> int:
    """Peak memory allocated during ``fn()`` above what was allocated before it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def softmax(z: npt.NDArray[np.floating[Any]]) -> F64:
    """Row softmax in float64."""
    z64 = z.astype(np.float64)
    z64 -= z64.max(axis=1, keepdims=True)
    np.exp(z64, out=z64)
    z64 /= z64.sum(axis=1, keepdims=True)
    return z64


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch held to ``threads`` threads, numpy's BLAS to one, for the block.

    xentcore's ``threads`` covers its fused kernel only; its finiteness scan is a BLAS
    matrix-vector product, which OpenBLAS would spread over every core (and which slows
    down several-fold when another process holds one of them).
    """
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    limits = threadpool_limits(1, user_api="blas") if threadpool_limits else None
    try:
        yield
    finally:
        if limits is not None:
            limits.unregister()
        if torch is not None and previous is not None:
            torch.set_num_threads(previous)


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds, or n/a."""
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f}"


def fmt_ratios(ratios: list[float]) -> str:
    """``median [min, max]`` of per-turn ratios, or n/a."""
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]"


def bench_logits(
    n: int, k: int, repeats: int, rng: np.random.Generator, *, threads: int = 1
) -> list[str]:
    """One table row for float32 logits of shape (n, k), at ``threads`` threads."""
    x: F32 = rng.standard_normal((n, k), dtype=np.float32) * np.float32(3.0)
    y: I64 = rng.integers(0, k, size=n, dtype=np.int64)

    def run_xc() -> Any:
        return xentcore.score(x, y, input_type="logits", threads=threads)

    fns: dict[str, Callable[[], Any]] = {"xentcore": run_xc}
    counts = {"xentcore": repeats}
    peak = peak_extra_bytes(run_xc) if threads == 1 else None

    if torch is not None and torch_f is not None:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        ref = torch_f.cross_entropy(xt, yt, reduction="none").double().numpy()
        got = run_xc().item_loss
        if not np.allclose(got, ref, rtol=1e-4, atol=1e-4):
            print(f"WARNING: xentcore and torch losses differ on {n}x{k}", file=sys.stderr)

        def run_torch() -> Any:
            with torch.no_grad():
                return torch_f.cross_entropy(xt, yt, reduction="none")

        fns["torch"], counts["torch"] = run_torch, repeats

    if k >= EXP_MIN_K and threads == 1:
        buf = np.empty_like(x)

        def run_exp() -> Any:
            return np.exp(x, out=buf)

        fns["np.exp"], counts["np.exp"] = run_exp, repeats

    if sk_log_loss is not None and threads == 1:
        p = softmax(x)
        labels = list(range(k))
        log_loss = sk_log_loss

        def run_sk() -> Any:
            return log_loss(y, p, labels=labels)

        fns["sklearn"] = run_sk
        counts["sklearn"] = (
            repeats if n * k < SKLEARN_BIG_ELEMENTS else min(repeats, SKLEARN_BIG_REPEATS)
        )

    timed = time_turns(fns, counts)
    sk = timed.median("sklearn")
    xc_med = timed.median("xentcore")
    label = f"logits f32 {n:,}x{k:,}" + (f", {threads} threads" if threads > 1 else "")
    return [
        label,
        fmt_ms(xc_med),
        fmt_ms(timed.median("torch")),
        fmt_ratios(timed.ratios("xentcore", "torch")),
        fmt_ms(timed.median("np.exp")),
        fmt_ratios(timed.ratios("xentcore", "np.exp")),
        fmt_ms(sk),
        "n/a" if sk is None or xc_med is None else f"{sk / xc_med:.1f}x",
        "n/a" if peak is None else f"{peak / x.nbytes:.2f}x of {x.nbytes / 2**20:.1f} MiB",
    ]


def bench_probs(n: int, k: int, repeats: int, rng: np.random.Generator) -> list[str]:
    """One table row for float64 probabilities of shape (n, k)."""
    p = softmax(rng.standard_normal((n, k)) * 3.0)
    y: I64 = rng.integers(0, k, size=n, dtype=np.int64)

    def run_xc() -> Any:
        return xentcore.score(p, y)

    fns: dict[str, Callable[[], Any]] = {"xentcore": run_xc}
    peak = peak_extra_bytes(run_xc)
    if sk_log_loss is not None:
        labels = list(range(k))
        log_loss = sk_log_loss
        ref = log_loss(y, p, labels=labels)
        got = run_xc().loss_mean
        if not np.isclose(got, ref, rtol=1e-9):
            print(f"WARNING: xentcore {got} and sklearn {ref} mean losses differ", file=sys.stderr)

        def run_sk() -> Any:
            return log_loss(y, p, labels=labels)

        fns["sklearn"] = run_sk
    timed = time_turns(fns, dict.fromkeys(fns, repeats))
    xc_med, sk = timed.median("xentcore"), timed.median("sklearn")
    return [
        f"probabilities f64 {n:,}x{k:,}",
        fmt_ms(xc_med),
        "n/a",
        "n/a",
        "n/a",
        "n/a",
        fmt_ms(sk),
        "n/a" if sk is None or xc_med is None else f"{sk / xc_med:.1f}x",
        f"{peak / p.nbytes:.2f}x of {p.nbytes / 2**20:.1f} MiB",
    ]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every case, print the table; always returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--repeats", type=int, default=9, help="timed turns per case after a warm-up (default 9)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller shapes, for a smoke run")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="thread count of the threads rows (default 2; 1 leaves them out)",
    )
    parser.add_argument(
        "--numpy-fallback",
        action="store_true",
        help="switch the compiled kernels off (what an install without a C compiler runs)",
    )
    args = parser.parse_args(argv)
    if args.numpy_fallback:
        xc_kernels._rowops = None
    repeats = max(1, args.repeats)

    missing = [
        name
        for name, mod in (
            ("torch", torch),
            ("scikit-learn", sk_log_loss),
            ("threadpoolctl", threadpool_limits),
        )
        if mod is None
    ]
    if missing:
        print(
            f"NOTE: {', '.join(missing)} not installed: those columns (or BLAS thread limits) "
            "are skipped (pip install torch scikit-learn to compare).\n"
        )

    rng = np.random.default_rng(args.seed)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    thread_shapes = QUICK_THREAD_SHAPES if args.quick else FULL_THREAD_SHAPES
    probs = QUICK_PROBS if args.quick else FULL_PROBS
    t0 = time.perf_counter()
    with torch_threads(1):
        rows = [bench_logits(n, k, repeats, rng) for n, k in shapes]
        rows.append(bench_probs(*probs, repeats, rng))
    if args.threads > 1:
        with torch_threads(args.threads):
            for n, k in thread_shapes:
                rows.append(bench_logits(n, k, repeats, rng, threads=args.threads))
    elapsed = time.perf_counter() - t0

    header = [
        "input",
        "xentcore.score ms",
        "torch cross_entropy ms",
        "xentcore / torch",
        "np.exp ms",
        "xentcore / np.exp",
        "sklearn log_loss ms",
        "sklearn / xentcore",
        "xentcore peak extra memory",
    ]
    print(markdown_table(header, rows))
    print()
    print(
        f"Times: medians over {repeats} interleaved turns after one warm-up (sklearn: at most "
        f"{SKLEARN_BIG_REPEATS} turns above {SKLEARN_BIG_ELEMENTS:,} elements). Ratios: median "
        "[min, max] over the turns of each turn's own ratio. xentcore computes validation, "
        "loss, confidence, prediction and flags; torch the per-item loss only; np.exp one pass "
        "into a preallocated buffer; sklearn the mean loss only, from softmax probabilities. "
        "Peak memory: tracemalloc peak during the call minus the memory held before it, "
        "relative to the input's nbytes."
    )
    print()
    native = xentcore.NATIVE_KERNELS and not args.numpy_fallback
    isa = xc_kernels.fused_isa() if native else None
    kernels = f"compiled, fused kernel on {isa}" if isa else "numpy fallback"
    torch_v = torch.__version__ if torch is not None else "missing"
    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} CPUs, {platform.machine()}); "
        f"xentcore kernels: {kernels}; numpy {np.__version__}, torch {torch_v}, "
        f"scikit-learn {sklearn_version or 'missing'}, Python {platform.python_version()}; "
        f"numpy's BLAS on 1 thread: {'yes' if threadpool_limits else 'no'}; "
        f"total {elapsed:.1f} s"
    )
    print(f"Command: python bench/core.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
