"""Record torchmetrics' calibration errors into ``tests/golden/calibration_breadth.json`` (by hand).

    python tests/golden/make_calibration_golden.py           # (re)write the golden file
    python tests/golden/make_calibration_golden.py --check   # recompute and compare

torch and torchmetrics are generation-time tools only (a separate venv: the CPU torch wheel and
``pip install torchmetrics``); the test suite reads the committed JSON and imports neither.
Inputs come from ``numpy.random.default_rng`` with fixed seeds and are stored in the file.

Per case, with ``tm = torchmetrics.functional.classification``:

* ``ece``, ``mce``, ``rms_calibration_error``: ``tm.multiclass_calibration_error(p, y,
  num_classes=K, n_bins=B, norm="l1" | "max" | "l2")``, the top-label figures (a binary case
  passes the columns [1 - p, p]);
* ``classwise_ece``: the mean over classes k of ``tm.binary_calibration_error(p[:, k], y == k,
  n_bins=B, norm="l1")``, whose "confidence" is the probability given and whose "accuracy" is
  the target: the calibration error of class k against the rest (Kull et al. 2019).

torchmetrics works in float32 here (the multiclass path casts confidences to float32), so the
probabilities are drawn as float32 and stored as the float64 images of those values: both sides
see the same numbers, and the figures agree to float32 accumulation (rtol 1e-5 in the test).
torchmetrics' bins are [lower, upper) with float32 edges, xentcore's (lower, upper] in float64:
every case is drawn again until no probability lies within 1e-6 of an edge, so the bins agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

OUT = Path(__file__).with_name("calibration_breadth.json")
#: name -> (task, N, K, n_bins, Dirichlet concentration, seed)
CASES: dict[str, tuple[str, int, int, int, float, int]] = {
    "multiclass_k3_b15": ("multiclass", 300, 3, 15, 0.7, 1),
    "multiclass_k3_b7": ("multiclass", 300, 3, 7, 0.7, 2),
    "multiclass_k10_b15": ("multiclass", 500, 10, 15, 0.3, 3),
    "binary_b15": ("binary", 400, 2, 15, 0.8, 4),
    "binary_b10": ("binary", 400, 2, 10, 0.8, 5),
}


def _draw(n: int, k: int, concentration: float, seed: int) -> tuple[npt.NDArray[Any], Any]:
    """float32 probability rows and labels drawn from a sharpened copy (a miscalibrated model)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, concentration), size=n).astype(np.float32)
    truth = p.astype(np.float64) ** 0.7
    truth /= truth.sum(axis=1, keepdims=True)
    y = (truth.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(0, k - 1)
    return p, y.astype(np.int64)


def _clear_of_edges(p: npt.NDArray[Any], n_bins: int) -> bool:
    values = np.concatenate([p.ravel(), p.max(axis=1)]).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    gap = np.abs(values[:, None] - edges[None, 1:-1]).min()
    top = p.max(axis=1)
    ties = np.sort(p, axis=1)[:, -2] == top  # argmax ties would break differently
    return bool(gap > 1e-6 and not ties.any() and (values < 1.0).all())


def _case(task: str, n: int, k: int, n_bins: int, conc: float, seed: int) -> dict[str, Any]:
    import torch  # here, not at the top: pytest's doctest collection imports this module
    from torchmetrics.functional.classification import (
        binary_calibration_error,
        multiclass_calibration_error,
    )

    while True:
        p, y = _draw(n, k, conc, seed)
        if _clear_of_edges(p, n_bins):
            break
        seed += 1000
    pt, yt = torch.from_numpy(p), torch.from_numpy(y)

    def top(norm: str) -> float:
        return float(multiclass_calibration_error(pt, yt, num_classes=k, n_bins=n_bins, norm=norm))

    per_class = [
        float(
            binary_calibration_error(
                pt[:, j].contiguous(), (yt == j).long(), n_bins=n_bins, norm="l1"
            )
        )
        for j in range(k)
    ]
    predictions = p[:, 1] if task == "binary" else p
    return {
        "task": task,
        "n_bins": n_bins,
        "seed": seed,
        "predictions": predictions.astype(np.float64).tolist(),
        "labels": y.tolist(),
        "ece": top("l1"),
        "mce": top("max"),
        "rms_calibration_error": top("l2"),
        "classwise_ece": float(np.mean(per_class)),
    }


def build() -> dict[str, Any]:
    import torch
    import torchmetrics

    return {
        "generator": "tests/golden/make_calibration_golden.py",
        "torch": torch.__version__,
        "torchmetrics": torchmetrics.__version__,
        "cases": {name: _case(*spec) for name, spec in CASES.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args()
    golden = build()
    if args.check:
        committed = json.loads(OUT.read_text())
        for name, case in golden["cases"].items():
            old = committed["cases"][name]
            for key in ("ece", "mce", "rms_calibration_error", "classwise_ece"):
                if not np.isclose(case[key], old[key], rtol=1e-6, atol=0):
                    print(f"{name}.{key}: {case[key]} != committed {old[key]}")
                    return 1
        print("golden file up to date")
        return 0
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT} ({len(golden['cases'])} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
