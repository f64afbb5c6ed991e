"""Micro-benchmark of ``xentcore.score`` against torch and scikit-learn, in one process.

What it measures (wall clock with ``time.perf_counter``; median and min of several repeats
after one warm-up call, the libraries of one row timed in turns so that they share the
machine's state):

* float32 logits of shapes 200,000x10, 20,000x1,000, 500x32,000 and 1,000,000x2 (the K = 2
  closed form) with random integer
  labels: ``xentcore.score(x, y, input_type="logits")`` (loss + confidence + predicted +
  flags), torch ``F.cross_entropy(x, y, reduction="none")`` on one thread (loss only) and
  scikit-learn ``log_loss`` on the softmax probabilities (a mean loss only; fewer repeats on
  the large shapes, where it is slow). Ratios: xentcore/torch and sklearn/xentcore.
* 100,000x10 float64 probabilities (softmax of random logits) with integer labels:
  ``xentcore.score(p, y)`` against ``sklearn.metrics.log_loss(y, p, labels=range(10))``.
* Peak *additional* memory of ``xentcore.score`` on each logits shape, traced with
  ``tracemalloc`` (numpy reports its buffers to it), as a multiple of the input's ``nbytes``
  (target <= 3x).

torch and scikit-learn are optional: a missing one is reported and its columns are left
empty; the script still exits 0. Output is a Markdown table plus the library versions and CPU
count.

Run from the repository root::

    python bench/core.py               # full run (a few minutes at most)
    python bench/core.py --repeats 15  # more repeats for xentcore and torch
    python bench/core.py --quick       # smaller shapes, a smoke run of seconds
    python bench/core.py --numpy-fallback  # without the compiled row kernels
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

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

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

FULL_SHAPES: list[tuple[int, int]] = [(200_000, 10), (20_000, 1_000), (500, 32_000), (1_000_000, 2)]
QUICK_SHAPES: list[tuple[int, int]] = [(20_000, 10), (2_000, 1_000), (50, 32_000), (100_000, 2)]
FULL_PROBS: tuple[int, int] = (100_000, 10)
QUICK_PROBS: tuple[int, int] = (10_000, 10)
# sklearn's log_loss is far slower on wide inputs: cap its repeats by input size
SKLEARN_BIG_ELEMENTS = 5_000_000
SKLEARN_BIG_REPEATS = 3


@dataclass
class Timing:
    """Median and min of the timed repeats, in seconds."""

    median: float
    best: float
    repeats: int


def time_calls(fns: dict[str, Callable[[], Any]], repeats: dict[str, int]) -> dict[str, Timing]:
    """Call each function once to warm up, then time them in turns (round robin) until each has
    run its ``repeats``; median and min wall clock per function.

    Turns, not one function's repeats after another's: on a shared machine the load and the
    memory state drift over seconds, and a ratio of two medians is only fair when both were
    measured across the same stretch of time.
    """
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
    return {name: Timing(statistics.median(ts), min(ts), len(ts)) for name, ts in times.items()}


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


def fmt_ms(t: Timing | None) -> str:
    """``median (min)`` in milliseconds, or a dash."""
    if t is None:
        return "n/a"
    return f"{t.median * 1e3:.1f} ({t.best * 1e3:.1f})"


def fmt_ratio(num: Timing | None, den: Timing | None) -> str:
    """Ratio of medians, or a dash."""
    if num is None or den is None:
        return "n/a"
    return f"{num.median / den.median:.2f}x"


def bench_logits(n: int, k: int, repeats: int, rng: np.random.Generator) -> list[str]:
    """One table row for float32 logits of shape (n, k)."""
    x: F32 = rng.standard_normal((n, k), dtype=np.float32) * np.float32(3.0)
    y: I64 = rng.integers(0, k, size=n, dtype=np.int64)

    def run_xc() -> Any:
        return xentcore.score(x, y, input_type="logits")

    fns: dict[str, Callable[[], Any]] = {"xentcore": run_xc}
    counts = {"xentcore": repeats}
    peak = peak_extra_bytes(run_xc)

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

    if sk_log_loss is not None:
        p = softmax(x)
        labels = list(range(k))
        log_loss = sk_log_loss

        def run_sk() -> Any:
            return log_loss(y, p, labels=labels)

        fns["sklearn"] = run_sk
        counts["sklearn"] = (
            repeats if n * k < SKLEARN_BIG_ELEMENTS else min(repeats, SKLEARN_BIG_REPEATS)
        )

    timed = time_calls(fns, counts)
    t_xc, t_torch, t_sk = timed["xentcore"], timed.get("torch"), timed.get("sklearn")

    return [
        f"logits f32 {n:,}x{k:,}",
        fmt_ms(t_xc),
        fmt_ms(t_torch),
        fmt_ms(t_sk),
        fmt_ratio(t_xc, t_torch),
        fmt_ratio(t_sk, t_xc),
        f"{peak / x.nbytes:.2f}x of {x.nbytes / 2**20:.1f} MiB",
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
    timed = time_calls(fns, dict.fromkeys(fns, repeats))
    t_xc, t_sk = timed["xentcore"], timed.get("sklearn")
    return [
        f"probabilities f64 {n:,}x{k:,}",
        fmt_ms(t_xc),
        "n/a",
        fmt_ms(t_sk),
        "n/a",
        fmt_ratio(t_sk, t_xc),
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
        "--repeats", type=int, default=9, help="timed repeats per case after a warm-up (default 9)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller shapes, for a smoke run")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--numpy-fallback",
        action="store_true",
        help="switch the compiled row kernels off (what an install without a C compiler runs)",
    )
    args = parser.parse_args(argv)
    if args.numpy_fallback:
        xc_kernels._rowops = None
    repeats = max(1, args.repeats)

    missing = [
        name for name, mod in (("torch", torch), ("scikit-learn", sk_log_loss)) if mod is None
    ]
    if missing:
        print(
            f"NOTE: {' and '.join(missing)} not installed: those columns are skipped "
            "(pip install torch scikit-learn to compare).\n"
        )
    if torch is not None:
        torch.set_num_threads(1)

    rng = np.random.default_rng(args.seed)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    probs = QUICK_PROBS if args.quick else FULL_PROBS
    t0 = time.perf_counter()
    rows = [bench_logits(n, k, repeats, rng) for n, k in shapes]
    rows.append(bench_probs(*probs, repeats, rng))
    elapsed = time.perf_counter() - t0

    header = [
        "input",
        "xentcore.score ms",
        "torch cross_entropy ms",
        "sklearn log_loss ms",
        "xentcore / torch",
        "sklearn / xentcore",
        "xentcore peak extra memory",
    ]
    print(markdown_table(header, rows))
    print()
    print(
        "Times: median (min) over the repeats after one warm-up, the libraries of a row timed "
        "in turns; ratios use medians. "
        f"xentcore and torch: {repeats} repeats; sklearn: {repeats} "
        f"({min(repeats, SKLEARN_BIG_REPEATS)} above {SKLEARN_BIG_ELEMENTS:,} elements). "
        "xentcore computes loss, confidence, prediction and flags; torch (1 thread) the "
        "per-item loss only; sklearn the mean loss only, from softmax probabilities. "
        "Peak memory: tracemalloc peak during the call minus the memory held before it, "
        "relative to the input's nbytes."
    )
    print()
    native = xentcore.NATIVE_KERNELS and not args.numpy_fallback
    kernels = "compiled" if native else "numpy fallback"
    torch_v = f"{torch.__version__} ({torch.get_num_threads()} thread)" if torch else "missing"
    print(
        f"xentcore row kernels: {kernels}; "
        f"numpy {np.__version__}, torch {torch_v}, scikit-learn {sklearn_version or 'missing'}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs "
        f"({platform.machine()}, {platform.processor() or platform.system()}); "
        f"total {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
