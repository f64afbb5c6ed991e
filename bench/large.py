"""LLM-sized batches: binary tensors over loopback, peak memory, and ``xent score`` on files.

Run by hand from the repository root (about a minute):

    python -m bench.large             # 1,000 x 32,000 float32 logits
    python -m bench.large --repeat 3  # fewer repetitions

1. The round trip of a 1,000 x 32,000 float32 logits batch (128 MB) with int64 labels: the
   Python client (``service.client.Client``) sends it as binary tensors to a real ``xent serve``
   on a free 127.0.0.1 port (started here, stopped by its own process handle afterwards), with
   ``per_item=False``. Next to it, torch's ``F.cross_entropy`` (1 thread, ``reduction="none"``)
   on the same array, in the same run; the torch columns are skipped if torch is missing.
2. Peak RSS of the server process (``VmHWM`` of ``/proc/<pid>/status``) before and after one
   request, against the tensor's size: "no more than one copy" means the growth stays near one
   tensor (the received body) plus the scoring's small chunked work space.
3. ``xent score`` (``xentcore.files``) on an ``.npy`` of the same array: in chunks of 64 rows
   against the whole file in one chunk, and ``xentcore.score`` on the array in memory.

Prints a Markdown table. Nothing here is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import xentcore as xc
from service.client import Client
from tests.support.server import xent_serve
from xentcore.files import open_rows, score_file

N, V = 1_000, 32_000
MiB = 1024 * 1024


def timings_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls after one warm-up call, in ms."""
    fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def fmt(times: list[float]) -> str:
    return f"{statistics.median(times):,.1f} ({min(times):,.1f})"


def vm_kib(pid: int, key: str) -> int:
    """``VmHWM`` / ``VmRSS`` of a process, in KiB (0 where /proc is missing)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def torch_ms(logits: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], repeat: int) -> Any:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch is not installed: its columns are skipped", file=sys.stderr)
        return None
    torch.set_num_threads(1)
    x, y = torch.from_numpy(logits), torch.from_numpy(labels)
    ref = F.cross_entropy(x, y, reduction="none").double().numpy()
    return timings_ms(lambda: F.cross_entropy(x, y, reduction="none"), repeat), ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((N, V), dtype=np.float32) * np.float32(3.0)
    labels = rng.integers(0, V, N)
    tensor_mib = logits.nbytes / MiB
    rows: list[tuple[str, str]] = []

    torch_result = torch_ms(logits, labels, repeat)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"XENT_LOG_LEVEL": "warning", "XENT_MAX_BODY_BYTES": str(256 * MiB)}
        with xent_serve(Path(tmp), env=env) as server, Client(server.url, timeout=120) as xent:
            hwm_before = vm_kib(server.proc.pid, "VmHWM")
            first = xent.score(logits, labels, input_type="logits", per_item=True)
            hwm_after = vm_kib(server.proc.pid, "VmHWM")
            trips = timings_ms(
                lambda: xent.score(logits, labels, input_type="logits", per_item=False),
                repeat,
            )
        assert first.items is not None and first.items.loss is not None
        served = np.asarray(first.items.loss, dtype=float)

        path = Path(tmp) / "logits.npy"
        np.save(path, logits)
        np.save(Path(tmp) / "labels.npy", labels)

        def offline(chunk_rows: int) -> None:
            x, y = open_rows(str(path)), open_rows(str(Path(tmp) / "labels.npy"))
            try:
                score_file(x, y, chunk_rows=chunk_rows, options={"input_type": "logits"})
            finally:
                x.close()
                y.close()

        chunked = timings_ms(lambda: offline(64), repeat)
        whole = timings_ms(lambda: offline(N), repeat)
    memory = timings_ms(lambda: xc.score(logits, labels, input_type="logits"), repeat)

    rows.append(("round trip, client -> xent serve (binary, 128 MB) ms", fmt(trips)))
    if torch_result is not None:
        t_times, ref = torch_result
        ratio = statistics.median(trips) / statistics.median(t_times)
        err = float(np.max(np.abs(served - ref) / ref))
        rows.append(("torch F.cross_entropy, 1 thread, ms", fmt(t_times)))
        rows.append(("round trip / torch compute", f"{ratio:.2f}x (target <= 4x)"))
        rows.append(("max relative difference of per-item loss vs torch", f"{err:.1e}"))
    growth = (hwm_after - hwm_before) / 1024
    rows.append(
        (
            "server peak RSS (VmHWM) before -> after one request",
            f"{hwm_before / 1024:,.0f} -> {hwm_after / 1024:,.0f} MiB "
            f"(+{growth:,.0f} MiB = {growth / tensor_mib:.2f}x the {tensor_mib:,.0f} MiB tensor)",
        )
    )
    rows.append(("xentcore.score in memory ms", fmt(memory)))
    rows.append(("xent score, .npy, chunks of 64 rows (16 chunks) ms", fmt(chunked)))
    rows.append(("xent score, .npy, one chunk ms", fmt(whole)))

    print(f"| {N:,} x {V:,} float32 logits, int64 labels | median ms (min) / figure |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
