"""Record torch reference outputs into ``tests/golden/torch_golden.npz`` (run by hand).

    python tests/golden/make_golden.py           # (re)write the golden file
    python tests/golden/make_golden.py --check   # recompute and compare with the committed file

torch is a generation-time tool only: the test suite reads the committed ``.npz`` and never
imports torch. Every input comes from ``numpy.random.default_rng`` with a fixed seed and is stored
in the file (float64; a float32 case stores the float64 image of its float32 values), so the tests
feed xentcore exactly the values torch saw.

Layout: one JSON ``manifest`` (case name -> kind, task, options, input dtype, and the keys of its
inputs ``x`` and targets ``y``, each stored once as ``input__<digest>`` since cases share them)
and, per case, ``<case>__item`` (per-item loss, shape N), ``<case>__mean`` and ``<case>__sum``
(0-d). Kinds:

* ``ce``: ``F.cross_entropy(x, y, weight=, ignore_index=, label_smoothing=)``; item = reduction
  ``"none"`` (0 where ignored), mean / sum = reductions ``"mean"`` / ``"sum"``;
* ``bce``: ``F.binary_cross_entropy_with_logits(x, y, pos_weight=)``; multilabel item = mean over
  classes of the ``"none"`` output, mean = reduction ``"mean"``;
* ``focal_binary``: torchvision's ``sigmoid_focal_loss`` re-implemented from its source;
* ``focal_multiclass``: API.md section 2, -alpha sum_k w_k q'_k (1 - p_k)^gamma log p_k from
  ``log_softmax``; mean = sum / sum_i v_i (v_i = w_{y_i} for class indices with weights, else 1).

Label smoothing of binary / multilabel targets (y' = y (1 - e) + e / 2) has no torch argument:
the reference gets the smoothed targets, xentcore the raw ones and ``label_smoothing``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

OUT = Path(__file__).with_name("torch_golden.npz")
F64 = npt.NDArray[np.float64]


class Golden:
    """Accumulates cases: arrays and a manifest entry per case."""

    def __init__(self) -> None:
        self.arrays: dict[str, npt.NDArray[Any]] = {}
        self.manifest: dict[str, dict[str, Any]] = {}

    def add(
        self,
        name: str,
        kind: str,
        task: str,
        x: npt.NDArray[Any],
        y: npt.NDArray[Any],
        item: torch.Tensor,
        mean: torch.Tensor | float,
        total: torch.Tensor | float,
        *,
        dtype: str = "float64",
        **opts: Any,
    ) -> None:
        assert name not in self.manifest, name
        self.manifest[name] = {
            "kind": kind,
            "task": task,
            "dtype": dtype,
            "opts": opts,
            "x": self.store(np.asarray(x, dtype=np.float64)),
            "y": self.store(np.asarray(y)),
        }
        self.arrays[f"{name}__item"] = item.detach().numpy().astype(np.float64)
        self.arrays[f"{name}__mean"] = np.array(float(mean), dtype=np.float64)
        self.arrays[f"{name}__sum"] = np.array(float(total), dtype=np.float64)

    def store(self, a: npt.NDArray[Any]) -> str:
        """Store an input once (cases share them) under a key derived from its content."""
        digest = hashlib.sha256(a.dtype.str.encode() + str(a.shape).encode() + a.tobytes())
        key = f"input__{digest.hexdigest()[:16]}"
        self.arrays.setdefault(key, a)
        return key

    def payload(self) -> dict[str, npt.NDArray[Any]]:
        meta = {"torch": torch.__version__, "numpy": np.__version__, "cases": self.manifest}
        return {"manifest": np.array(json.dumps(meta, sort_keys=True)), **self.arrays}


def t64(a: npt.NDArray[Any]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def tlong(a: npt.NDArray[Any]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# multiclass cross-entropy


def ce_case(
    g: Golden,
    name: str,
    x: F64,
    y: npt.NDArray[Any],
    *,
    weight: F64 | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    dtype: str = "float64",
) -> None:
    """torch cross_entropy with integer (y 1-D) or probability (y 2-D) targets."""
    if dtype == "float32":
        x = x.astype(np.float32).astype(np.float64)  # torch sees exactly the float32 values
    soft = y.ndim == 2
    target = t64(y) if soft else tlong(y)
    kw: dict[str, Any] = {"label_smoothing": label_smoothing}
    if weight is not None:
        kw["weight"] = t64(weight)
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    out = {
        red: F.cross_entropy(t64(x), target, reduction=red, **kw) for red in ("none", "mean", "sum")
    }
    opts: dict[str, Any] = {"label_smoothing": label_smoothing}
    if weight is not None:
        opts["class_weights"] = weight.tolist()
    if ignore_index is not None:
        opts["ignore_index"] = ignore_index
    g.add(name, "ce", "multiclass", x, y, out["none"], out["mean"], out["sum"], dtype=dtype, **opts)


def sparse_labels(rng: np.random.Generator, n: int, k: int) -> npt.NDArray[np.int64]:
    return rng.integers(0, k, size=n).astype(np.int64)


def soft_targets(rng: np.random.Generator, n: int, k: int) -> F64:
    return rng.dirichlet(np.full(k, 0.7), size=n)


def multiclass_cases(g: Golden) -> None:
    rng = np.random.default_rng(20261101)
    n, k = 64, 5
    x = rng.normal(0.0, 2.0, size=(n, k))
    y = sparse_labels(rng, n, k)
    w = rng.uniform(0.2, 3.0, size=k)
    y_m100 = y.copy()
    y_m100[rng.choice(n, 9, replace=False)] = -100
    ce_case(g, "ce_plain", x, y)
    ce_case(g, "ce_weight", x, y, weight=w)
    ce_case(g, "ce_ignore_m100", x, y_m100, ignore_index=-100)
    ce_case(g, "ce_ignore_inrange", x, y, ignore_index=2)
    ce_case(g, "ce_smooth_0.1", x, y, label_smoothing=0.1)
    ce_case(g, "ce_smooth_0.37", x, y, label_smoothing=0.37)
    ce_case(g, "ce_smooth_1.0", x, y, label_smoothing=1.0)
    ce_case(g, "ce_weight_smooth", x, y, weight=w, label_smoothing=0.2)
    ce_case(g, "ce_weight_ignore_m100", x, y_m100, weight=w, ignore_index=-100)
    ce_case(g, "ce_ignore_smooth", x, y_m100, ignore_index=-100, label_smoothing=0.15)
    ce_case(g, "ce_combo_m100", x, y_m100, weight=w, ignore_index=-100, label_smoothing=0.25)
    ce_case(g, "ce_combo_inrange", x, y, weight=w, ignore_index=1, label_smoothing=0.3)
    w0 = w.copy()
    w0[3] = 0.0
    ce_case(g, "ce_zero_class_weight", x, y, weight=w0, label_smoothing=0.05)

    # probability targets: torch divides the mean by N, never by the weights
    q = soft_targets(rng, n, k)
    onehot = np.eye(k)[y]
    ce_case(g, "ce_soft", x, q)
    ce_case(g, "ce_soft_weight", x, q, weight=w)
    ce_case(g, "ce_soft_smooth", x, q, label_smoothing=0.2)
    ce_case(g, "ce_soft_weight_smooth", x, q, weight=w, label_smoothing=0.3)
    ce_case(g, "ce_onehot_weight_smooth", x, onehot, weight=w, label_smoothing=0.1)

    # class counts and batch shapes
    for kk, nn, scale, seed in (
        (2, 40, 3.0, 1),
        (3, 40, 3.0, 2),
        (1000, 8, 4.0, 3),
        (32000, 2, 4.0, 4),
    ):
        r = np.random.default_rng(seed)
        xx = r.normal(0.0, scale, size=(nn, kk))
        yy = sparse_labels(r, nn, kk)
        ce_case(g, f"ce_k{kk}", xx, yy)
        ce_case(
            g,
            f"ce_k{kk}_weight_smooth",
            xx,
            yy,
            weight=r.uniform(0.5, 2.0, size=kk),
            label_smoothing=0.1,
        )
        ce_case(g, f"ce_k{kk}_float32_smooth", xx, yy, label_smoothing=0.1, dtype="float32")
    r = np.random.default_rng(5)
    ce_case(g, "ce_single_item", r.normal(0.0, 2.0, size=(1, 4)), np.array([3]))
    ce_case(
        g,
        "ce_single_item_combo",
        r.normal(0.0, 2.0, size=(1, 4)),
        np.array([1]),
        weight=np.array([0.5, 2.0, 1.0, 3.0]),
        label_smoothing=0.2,
    )
    ce_case(
        g,
        "ce_single_soft",
        r.normal(0.0, 2.0, size=(1, 3)),
        np.array([[0.2, 0.5, 0.3]]),
        weight=np.array([1.0, 2.0, 0.5]),
        label_smoothing=0.1,
    )

    # extreme logits: never clipped, stable forms everywhere
    r = np.random.default_rng(6)
    for mag in (1e4, 1e8):
        xx = r.choice([-1.0, 1.0], size=(24, 4)) * mag * r.uniform(0.5, 1.0, size=(24, 4))
        yy = sparse_labels(r, 24, 4)
        tag = f"{mag:.0e}".replace("+0", "")
        ce_case(g, f"ce_extreme_{tag}", xx, yy)
        ce_case(
            g,
            f"ce_extreme_{tag}_combo",
            xx,
            yy,
            weight=np.array([1.0, 0.5, 2.0, 1.5]),
            label_smoothing=0.1,
        )
        ce_case(g, f"ce_extreme_{tag}_soft", xx, soft_targets(r, 24, 4), label_smoothing=0.05)
    mixed = np.array(
        [
            [1e8, -1e8, 3.0, 1e8 - 1.0],
            [1e8, 1e8, 1e8, 1e8],
            [-1e8, -1e8, -1e8 + 2.0, -1e8],
            [1e4, -1e8, 0.0, 1e4 + 0.5],
            [1e8 - 30.0, 1e8, 1e8 - 1e-3, -1e4],
            [0.0, 0.0, 1e-300, -1e-300],
        ]
    )
    mixed_y = np.array([3, 2, 0, 1, 0, 3])
    ce_case(g, "ce_extreme_mixed", mixed, mixed_y)
    ce_case(g, "ce_extreme_mixed_smooth", mixed, mixed_y, label_smoothing=0.3)
    ce_case(g, "ce_extreme_mixed_weight", mixed, mixed_y, weight=np.array([2.0, 1.0, 0.5, 3.0]))

    # float32 inputs: xentcore on float32 vs torch float64 on the same values
    r = np.random.default_rng(7)
    xx = r.normal(0.0, 4.0, size=(50, 10))
    yy = sparse_labels(r, 50, 10)
    yy_ign = yy.copy()
    yy_ign[::7] = -100
    ww = r.uniform(0.3, 2.0, size=10)
    ce_case(g, "ce_float32", xx, yy, dtype="float32")
    ce_case(g, "ce_float32_weight", xx, yy, weight=ww, dtype="float32")
    ce_case(
        g,
        "ce_float32_combo",
        xx,
        yy_ign,
        weight=ww,
        ignore_index=-100,
        label_smoothing=0.2,
        dtype="float32",
    )
    ce_case(
        g,
        "ce_float32_soft",
        xx,
        soft_targets(r, 50, 10),
        weight=ww,
        label_smoothing=0.1,
        dtype="float32",
    )
    ce_case(
        g,
        "ce_float32_wide",
        r.normal(0.0, 15.0, size=(20, 6)),
        sparse_labels(r, 20, 6),
        dtype="float32",
    )


# ---------------------------------------------------------------------------------------------
# binary / multilabel BCE with logits and torchvision's sigmoid focal loss


def bce_case(
    g: Golden,
    name: str,
    x: F64,
    y: F64,
    *,
    pos_weight: float | F64 | None = None,
    label_smoothing: float = 0.0,
    dtype: str = "float64",
) -> None:
    if dtype == "float32":
        x = x.astype(np.float32).astype(np.float64)
    task = "binary" if x.ndim == 1 else "multilabel"
    ys = y * (1.0 - label_smoothing) + label_smoothing / 2 if label_smoothing else y
    kw: dict[str, Any] = {}
    opts: dict[str, Any] = {"label_smoothing": label_smoothing}
    if pos_weight is not None:
        kw["pos_weight"] = t64(np.atleast_1d(np.asarray(pos_weight, dtype=np.float64)))
        opts["pos_weight"] = (
            pos_weight.tolist() if isinstance(pos_weight, np.ndarray) else float(pos_weight)
        )
    none = F.binary_cross_entropy_with_logits(t64(x), t64(ys), reduction="none", **kw)
    mean = F.binary_cross_entropy_with_logits(t64(x), t64(ys), reduction="mean", **kw)
    item = none if task == "binary" else none.mean(dim=1)
    g.add(name, "bce", task, x, y, item, mean, item.sum(), dtype=dtype, **opts)


def sigmoid_focal_loss(
    inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """torchvision.ops.sigmoid_focal_loss, reduction="none", line for line."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


def focal_binary_case(
    g: Golden,
    name: str,
    x: F64,
    y: F64,
    *,
    gamma: float,
    alpha: float | None,
    label_smoothing: float = 0.0,
) -> None:
    task = "binary" if x.ndim == 1 else "multilabel"
    ys = y * (1.0 - label_smoothing) + label_smoothing / 2 if label_smoothing else y
    loss = sigmoid_focal_loss(t64(x), t64(ys), alpha=-1.0 if alpha is None else alpha, gamma=gamma)
    item = loss if task == "binary" else loss.mean(dim=1)
    g.add(
        name,
        "focal_binary",
        task,
        x,
        y,
        item,
        loss.mean(),
        item.sum(),
        focal_gamma=gamma,
        focal_alpha=alpha,
        label_smoothing=label_smoothing,
    )


def binary_cases(g: Golden) -> None:
    rng = np.random.default_rng(20261102)
    n = 64
    z = rng.normal(0.0, 3.0, size=n)
    y01 = rng.integers(0, 2, size=n).astype(np.float64)
    ysoft = rng.uniform(0.0, 1.0, size=n)
    bce_case(g, "bce_plain", z, y01)
    bce_case(g, "bce_soft", z, ysoft)
    bce_case(g, "bce_pos_weight", z, y01, pos_weight=2.5)
    bce_case(g, "bce_pos_weight_soft", z, ysoft, pos_weight=0.4)
    bce_case(g, "bce_smooth", z, y01, label_smoothing=0.1)
    bce_case(g, "bce_pos_weight_smooth", z, y01, pos_weight=3.0, label_smoothing=0.2)
    bce_case(g, "bce_float32", z, ysoft, pos_weight=1.7, dtype="float32")
    bce_case(g, "bce_single_item", np.array([-1.3]), np.array([1.0]), pos_weight=2.0)
    ext = np.array([1e4, -1e4, 1e8, -1e8, 1e4, -1e8, 1e8, -1e4, 40.0, -40.0, 1e-300, 0.0])
    ext_y = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    bce_case(g, "bce_extreme", ext, ext_y)
    bce_case(
        g, "bce_extreme_soft_pos_weight", ext, rng.uniform(0.0, 1.0, size=ext.size), pos_weight=2.0
    )

    # multilabel N x K: item loss = mean over k
    n, k = 32, 6
    zz = rng.normal(0.0, 2.5, size=(n, k))
    yy = rng.integers(0, 2, size=(n, k)).astype(np.float64)
    yys = rng.uniform(0.0, 1.0, size=(n, k))
    pw = rng.uniform(0.3, 4.0, size=k)
    bce_case(g, "ml_plain", zz, yy)
    bce_case(g, "ml_pos_weight_scalar", zz, yys, pos_weight=1.8)
    bce_case(g, "ml_pos_weight_vector", zz, yy, pos_weight=pw)
    bce_case(g, "ml_pos_weight_vector_soft", zz, yys, pos_weight=pw)
    bce_case(g, "ml_pos_weight_vector_smooth", zz, yy, pos_weight=pw, label_smoothing=0.1)
    bce_case(g, "ml_float32", zz, yy, pos_weight=pw, dtype="float32")
    bce_case(g, "ml_k1", zz[:, :1], yy[:, :1], pos_weight=2.0)

    # torchvision sigmoid_focal_loss
    for gamma, alpha in (
        (2.0, 0.25),
        (2.0, None),
        (0.5, 0.75),
        (1.0, 0.5),
        (5.0, 0.25),
        (0.0, 0.25),
    ):
        tag = f"g{gamma:g}_a{'none' if alpha is None else f'{alpha:g}'}"
        focal_binary_case(g, f"focal_bin_{tag}", z, y01, gamma=gamma, alpha=alpha)
        focal_binary_case(g, f"focal_ml_{tag}", zz, yy, gamma=gamma, alpha=alpha)
    focal_binary_case(g, "focal_bin_soft", z, ysoft, gamma=2.0, alpha=0.25)
    focal_binary_case(g, "focal_ml_soft", zz, yys, gamma=1.5, alpha=None)
    focal_binary_case(g, "focal_bin_smooth", z, y01, gamma=2.0, alpha=0.25, label_smoothing=0.1)


# ---------------------------------------------------------------------------------------------
# multiclass focal (Keras CategoricalFocalCrossentropy semantics, logits, no clipping)


def focal_mc_case(
    g: Golden,
    name: str,
    x: F64,
    y: npt.NDArray[Any],
    *,
    gamma: float,
    alpha: float | None,
    weight: F64 | None = None,
    label_smoothing: float = 0.0,
) -> None:
    k = x.shape[1]
    log_p = F.log_softmax(t64(x), dim=1)
    one_minus_p = -torch.expm1(log_p)
    q = t64(y) if y.ndim == 2 else F.one_hot(tlong(y), k).to(torch.float64)
    q = q * (1.0 - label_smoothing) + label_smoothing / k
    w = torch.ones(k, dtype=torch.float64) if weight is None else t64(weight)
    item = -(w * q * one_minus_p**gamma * log_p).sum(dim=1)
    if alpha is not None:
        item = item * alpha
    denom = w[tlong(y)].sum() if (y.ndim == 1 and weight is not None) else float(x.shape[0])
    opts: dict[str, Any] = {
        "focal_gamma": gamma,
        "focal_alpha": alpha,
        "label_smoothing": label_smoothing,
    }
    if weight is not None:
        opts["class_weights"] = weight.tolist()
    g.add(
        name, "focal_multiclass", "multiclass", x, y, item, item.sum() / denom, item.sum(), **opts
    )


def focal_multiclass_cases(g: Golden) -> None:
    rng = np.random.default_rng(20261103)
    n, k = 48, 4
    x = rng.normal(0.0, 2.0, size=(n, k))
    y = sparse_labels(rng, n, k)
    q = soft_targets(rng, n, k)
    w = rng.uniform(0.5, 2.0, size=k)
    focal_mc_case(g, "focal_mc_g2", x, y, gamma=2.0, alpha=None)
    focal_mc_case(g, "focal_mc_g2_a0.25", x, y, gamma=2.0, alpha=0.25)
    focal_mc_case(g, "focal_mc_g0.5_weight", x, y, gamma=0.5, alpha=None, weight=w)
    focal_mc_case(
        g,
        "focal_mc_g1_a0.5_weight_smooth",
        x,
        y,
        gamma=1.0,
        alpha=0.5,
        weight=w,
        label_smoothing=0.1,
    )
    focal_mc_case(g, "focal_mc_g0_a0.25", x, y, gamma=0.0, alpha=0.25)
    focal_mc_case(g, "focal_mc_soft_g2", x, q, gamma=2.0, alpha=0.25)
    focal_mc_case(
        g, "focal_mc_soft_weight_smooth", x, q, gamma=3.0, alpha=None, weight=w, label_smoothing=0.2
    )


def build() -> Golden:
    torch.set_default_dtype(torch.float64)
    g = Golden()
    multiclass_cases(g)
    binary_cases(g)
    focal_multiclass_cases(g)
    return g


def check(g: Golden) -> int:
    """Compare a fresh build with the committed file; 0 when every array is identical."""
    fresh = g.payload()
    with np.load(OUT, allow_pickle=False) as old:
        stored = {key: old[key] for key in old.files}
    bad = sorted(set(fresh) ^ set(stored))
    bad += [
        key
        for key in fresh
        if key in stored
        and key != "manifest"
        and not np.array_equal(fresh[key], stored[key], equal_nan=True)
    ]
    old_cases = json.loads(str(stored["manifest"]))["cases"]
    if old_cases != json.loads(str(fresh["manifest"]))["cases"]:
        bad.append("manifest")
    for key in bad:
        print(f"differs: {key}", file=sys.stderr)
    print(f"{len(fresh)} arrays, {len(bad)} differ")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args()
    g = build()
    if args.check:
        return check(g)
    np.savez_compressed(OUT, **g.payload())  # type: ignore[arg-type]
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {len(g.manifest)} cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
