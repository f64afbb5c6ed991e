"""Small batches: the fixed per-call cost of ``xentcore.score`` against torch's cross-entropy.

An agent pipeline scores a handful of items per call: there the cost of a call is its fixed
part (checks, options, flags, result objects), not its arithmetic. This script measures it on
the shapes of issue 19, float32 logits with int64 class-index labels, and on probability rows:

* 1 item x 10 classes, and 32 x 10; then 32 x 10 float64 probability rows (torch:
  ``F.nll_loss(p.log(), y, reduction="none")``);
* ``xentcore.score(x, y, input_type="logits")`` (checks, loss, confidence, prediction and
  flags) against torch ``F.cross_entropy(x, y, reduction="none")`` on the same arrays (the
  per-item loss only, one thread): the issue's target is a ratio of at most 2. A result's
  fields are made on their first read: the score followed by a read of ``item_loss`` (what
  torch's call returns) is timed too;
* the service's path, ``check_batch`` then ``score_batch`` (what ``service/convert.py``
  ``score_request`` runs, with the ``ScoreOptions`` and flag rules it builds per request), and
  the same with ``xentcore.fastpath.check_batch``, the service's drop-in for ``check_batch``
  (when the installed xentcore has it).

Timing: each contender runs ``--inner`` calls back to back (per-call time = their total / inner,
well above the clock's resolution), the contenders in turns, A B A B ...; each turn's ratio to
torch is taken within the turn, and the table shows the median over ``--turns`` turns, with the
interquartile range and the extremes beside it (on a shared machine the load drifts over
seconds: a ratio of two measurements made a moment apart is what holds, and the median of many
is what a preempted turn does not move). A garbage collection precedes each turn.

Run from the repository root (torch optional: without it the ratios are left out)::

    python bench/small.py
    python bench/small.py --turns 300

An editable install of xentcore takes precedence over PYTHONPATH: to time another checkout, run
the script where that checkout is the one installed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

# bench/ itself is first on sys.path when run as a script: leave it out (bench/http.py would
# shadow the standard library's http, which torch imports)
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

# the repository root last, so `bench.machine` is found and xentcore resolves as it would anyway
sys.path.append(str(Path(__file__).resolve().parents[1]))
import numpy as np

from bench.machine import cpu_model

try:
    import xentcore
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import xentcore
from xentcore.score import score_batch
from xentcore.types import InputType, ScoreOptions
from xentcore.validate import check_batch, check_flag_rules

fast_check_batch: Callable[..., Any] | None
try:
    from xentcore.fastpath import check_batch as fast_check_batch
except ImportError:  # a xentcore without the fast path
    fast_check_batch = None

torch: ModuleType | None
try:
    import torch
    import torch.nn.functional as torch_f
except ImportError:
    torch = None
    torch_f = None

#: (items, classes, input type): the issue's cases, then probability rows
CASES: list[tuple[int, int, InputType]] = [
    (1, 10, "logits"),
    (32, 10, "logits"),
    (32, 10, "probabilities"),
]


def per_call(fn: Callable[[], Any], inner: int) -> float:
    """Seconds per call of ``inner`` calls made back to back."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def turns(fns: dict[str, Callable[[], Any]], n_turns: int, inner: int) -> dict[str, list[float]]:
    """Per-call seconds of each contender in each turn (warmed up first)."""
    for fn in fns.values():
        for _ in range(max(10, inner // 10)):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n_turns):
        gc.collect()
        for name, fn in fns.items():
            times[name].append(per_call(fn, inner))
    return times


def fmt_us(ts: list[float]) -> str:
    return f"{statistics.median(ts) * 1e6:.1f}"


def fmt_ratio(a: list[float], b: list[float]) -> str:
    """Median of the per-turn ratios, their interquartile range and their extremes."""
    r = sorted(x / y for x, y in zip(a, b, strict=True))
    q1, _, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0], r[0], r[0])
    return f"{statistics.median(r):.2f}x [{q1:.2f}, {q3:.2f}] ({r[0]:.2f} to {r[-1]:.2f})"


def contenders(
    n: int, k: int, input_type: InputType, rng: np.random.Generator
) -> dict[str, Callable[[], Any]]:
    """The calls timed on one case: float32 logits, or float64 probability rows (torch: the
    negative log of the label's probability, ``F.nll_loss(p.log(), y, reduction="none")``)."""
    z = rng.normal(0.0, 2.0, (n, k))
    if input_type == "logits":
        x = z.astype(np.float32)
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        x = e / e.sum(axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    fns: dict[str, Callable[[], Any]] = {}
    if torch is not None and torch_f is not None:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        ce, nll = torch_f.cross_entropy, torch_f.nll_loss
        if input_type == "logits":
            fns["torch"] = lambda: ce(xt, yt, reduction="none")
        else:
            fns["torch"] = lambda: nll(xt.log(), yt, reduction="none")
        want = fns["torch"]().double().numpy()
        got = xentcore.score(x, y, input_type=input_type).item_loss
        if got is None or not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            print(f"WARNING: xentcore and torch losses differ on {n}x{k}", file=sys.stderr)
    score = xentcore.score
    fns["xentcore.score"] = lambda: score(x, y, input_type=input_type)
    # torch's call returns the loss itself: a score and a read of its loss, side by side
    fns["xentcore.score(...).item_loss"] = lambda: score(x, y, input_type=input_type).item_loss

    def service(check: Callable[..., Any]) -> Callable[[], Any]:
        def run() -> Any:  # service/convert.py: score_options, check_batch, flag_rules, score
            options = ScoreOptions(input_type=input_type, sum_tolerance=1e-4)
            return score_batch(check(x, y, options), check_flag_rules(None))

        return run

    fns["check_batch + score_batch"] = service(check_batch)
    if fast_check_batch is not None:
        fns["fastpath.check_batch + score_batch"] = service(fast_check_batch)
    return fns


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the cases, print the table; always returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=100, help="timed turns (default 100)")
    parser.add_argument("--inner", type=int, default=500, help="calls per turn (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if torch is not None:
        torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.perf_counter()
    for n, k, input_type in CASES:
        fns = contenders(n, k, input_type, rng)
        case = f"{n}x{k} " + ("f32 logits" if input_type == "logits" else "f64 probabilities")
        times = turns(fns, max(1, args.turns), max(1, args.inner))
        for name, ts in times.items():
            if name == "torch":
                continue
            ratio = fmt_ratio(ts, times["torch"]) if "torch" in times else "n/a"
            torch_us = fmt_us(times["torch"]) if "torch" in times else "n/a"
            rows.append(f"| {case} | {name} | {fmt_us(ts)} | {torch_us} | {ratio} |")
    elapsed = time.perf_counter() - t0
    print("| batch | xentcore call | us per call | torch us | xentcore / torch |")
    print("| --- | --- | ---: | ---: | ---: |")
    print("\n".join(rows))
    print()
    print(
        f"Per-call times: medians over {args.turns} interleaved turns of {args.inner} calls. "
        "Ratios: each turn's own ratio to torch on the same arrays, 1 thread "
        '(logits: F.cross_entropy(x, y, reduction="none"); probabilities: '
        'F.nll_loss(p.log(), y, reduction="none")): median [interquartile range] '
        "(smallest to largest)."
    )
    native = xentcore.NATIVE_KERNELS
    fast = "yes" if fast_check_batch is not None else "no"
    torch_v = torch.__version__ if torch is not None else "missing"
    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} CPUs, {platform.machine()}); xentcore from "
        f"{Path(xentcore.__file__).parent} (compiled kernels: {native}, fast path: {fast}); "
        f"numpy {np.__version__}, torch {torch_v}, Python {platform.python_version()}; "
        f"total {elapsed:.1f} s"
    )
    print(f"Command: python bench/small.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
