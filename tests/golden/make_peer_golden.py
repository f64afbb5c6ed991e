"""Record torch and Keras outputs for the peer-parity options into
``tests/golden/peer_golden.npz`` (run by hand, like ``make_golden.py``).

    python tests/golden/make_peer_golden.py           # (re)write the golden file
    python tests/golden/make_peer_golden.py --check   # recompute, compare with the committed file

Needs torch and Keras 3 (torch backend; ``KERAS_BACKEND=torch`` is set here), neither of which
the test suite imports. A generation venv (numpy pinned to the test venv's):

    python3.11 -m venv /tmp/vg
    /tmp/vg/bin/pip install numpy==2.4.6 <torch 2.13.0 CPU wheel> keras==3.15.1

The layout is ``torch_golden.npz``'s (see ``make_golden.py``: one JSON ``manifest``, inputs
stored once, ``<case>__item`` / ``__mean`` / ``__sum``); every case's ``opts`` holds every
``xentcore.score`` option it needs, ``input_type`` included. Items with no loss are NaN (torch
would give 0 for a masked item: the reference masks it here). Kinds:

* ``bce_weight``: per-class ``class_weights`` of binary / multilabel, against torch's
  ``F.binary_cross_entropy_with_logits(weight=, pos_weight=)`` (binary: ``weight=w[y]`` for
  hard labels; multilabel: ``weight=w`` broadcast over the K columns, mean over N x K
  elements);
* ``ce2_weight``: binary class weights with soft targets (and label smoothing) against torch's
  ``F.cross_entropy`` of the two-class logits (0, z) with probability targets (1 - y, y),
  ``weight=(w0, w1)``: mean divided by N;
* ``focal_binary_weight``: torchvision's ``sigmoid_focal_loss`` (re-implemented in
  ``make_golden.py``) times the class weight; multilabel per-class alpha as one
  ``sigmoid_focal_loss`` per column with that column's alpha;
* ``keras_binary_focal`` / ``keras_categorical_focal``: Keras' ``binary_focal_crossentropy(
  apply_class_balancing=True, alpha=<one per column>)`` and ``categorical_focal_crossentropy(
  alpha=<one per class>)`` on float64 probabilities (Keras clips them to [1e-7, 1 - 1e-7]:
  the cases use ``clip_eps=1e-7``); mean = the mean of Keras' per-item losses. Keras' torch
  backend takes ``ops.mean`` in float32 even for float64 tensors, so the binary focal items
  carry float32 rounding (the test allows for it); the categorical one sums in float64;
* ``focal_multiclass_alpha``: -sum_k alpha_k w_k q'_k (1 - p_k)^gamma log p_k from torch's
  ``log_softmax`` (logits, no clipping);
* ``bce_ignore``: binary ``ignore_index``: torch's BCE on the scored items only (the masked
  mean of a torch training loop); multilabel (entry level): each item's mean over its scored
  entries, the batch mean over the items with one (API.md section 2: v_i = 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
import torch.nn.functional as F
from make_golden import Golden, sigmoid_focal_loss, t64, tlong

OUT = Path(__file__).with_name("peer_golden.npz")
F64 = npt.NDArray[np.float64]
IGNORE = -100


def _add(
    g: Golden,
    name: str,
    kind: str,
    task: str,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    item: torch.Tensor,
    scored: npt.NDArray[np.bool_] | None = None,
    *,
    dtype: str = "float64",
    **opts: Any,
) -> None:
    """A case whose mean is the plain mean over scored items (v_i = 1) and sum their sum."""
    values = item.detach().numpy().astype(np.float64)
    keep = np.ones(values.shape[0], dtype=bool) if scored is None else scored
    values = np.where(keep, values, np.nan)
    total = float(values[keep].sum())
    mean = total / int(keep.sum())
    opts.setdefault("input_type", "logits")
    g.add(name, kind, task, x, y, torch.from_numpy(values), mean, total, dtype=dtype, **opts)


def _f32(x: F64) -> F64:
    return x.astype(np.float32).astype(np.float64)  # torch sees exactly the float32 values


# ---------------------------------------------------------------------------------------------
# class weights of binary and multilabel tasks


def binary_weight_cases(g: Golden) -> None:
    rng = np.random.default_rng(20261201)
    n = 64
    z = rng.normal(0.0, 3.0, size=n)
    y = rng.integers(0, 2, size=n).astype(np.float64)
    ysoft = rng.uniform(0.0, 1.0, size=n)
    w = np.array([0.4, 2.5])

    def hard(name: str, x: F64, *, pos_weight: float | None = None, dtype: str = "float64") -> None:
        kw: dict[str, Any] = {"weight": t64(w[y.astype(np.int64)])}
        opts: dict[str, Any] = {"class_weights": w.tolist()}
        if pos_weight is not None:
            kw["pos_weight"] = t64(np.array([pos_weight]))
            opts["pos_weight"] = pos_weight
        item = F.binary_cross_entropy_with_logits(t64(x), t64(y), reduction="none", **kw)
        mean = F.binary_cross_entropy_with_logits(t64(x), t64(y), reduction="mean", **kw)
        g.add(
            name, "bce_weight", "binary", x, y, item, mean, item.sum(), dtype=dtype,
            input_type="logits", **opts,
        )  # fmt: skip

    hard("bin_cw_hard", z)
    hard("bin_cw_hard_pos_weight", z, pos_weight=1.7)
    hard("bin_cw_hard_float32", _f32(z), dtype="float32")

    def soft(name: str, x: F64, t: F64, weights: F64, smoothing: float = 0.0) -> None:
        pair = torch.stack([torch.zeros_like(t64(x)), t64(x)], dim=1)  # softmax = (1 - p, p)
        target = torch.stack([1.0 - t64(t), t64(t)], dim=1)
        kw = {"weight": t64(weights), "label_smoothing": smoothing}
        out = {r: F.cross_entropy(pair, target, reduction=r, **kw) for r in ("none", "mean", "sum")}
        g.add(
            name, "ce2_weight", "binary", x, t, out["none"], out["mean"], out["sum"],
            input_type="logits", class_weights=weights.tolist(), label_smoothing=smoothing,
        )  # fmt: skip

    soft("bin_cw_soft", z, ysoft, w)
    soft("bin_cw_soft_smooth", z, ysoft, w, smoothing=0.2)
    soft("bin_cw_hard_smooth", z, y, np.array([1.5, 0.3]), smoothing=0.1)
    soft("bin_cw_zero_negative", z, ysoft, np.array([0.0, 1.0]))

    # torchvision's focal loss of each item times its class weight (hard labels)
    for gamma, alpha in ((2.0, 0.25), (1.0, None)):
        loss = sigmoid_focal_loss(
            t64(z), t64(y), alpha=-1.0 if alpha is None else alpha, gamma=gamma
        ) * t64(w[y.astype(np.int64)])
        tag = f"g{gamma:g}_a{'none' if alpha is None else f'{alpha:g}'}"
        _add(
            g, f"bin_cw_focal_{tag}", "focal_binary_weight", "binary", z, y, loss,
            class_weights=w.tolist(), focal_gamma=gamma, focal_alpha=alpha,
        )  # fmt: skip


def multilabel_weight_cases(g: Golden) -> None:
    rng = np.random.default_rng(20261202)
    n, k = 40, 5
    z = rng.normal(0.0, 2.5, size=(n, k))
    y = rng.integers(0, 2, size=(n, k)).astype(np.float64)
    ysoft = rng.uniform(0.0, 1.0, size=(n, k))
    w = rng.uniform(0.2, 3.0, size=k)
    pw = rng.uniform(0.3, 4.0, size=k)

    def case(
        name: str,
        x: F64,
        t: F64,
        *,
        pos_weight: F64 | None = None,
        smoothing: float = 0.0,
        dtype: str = "float64",
    ) -> None:
        ts = t * (1.0 - smoothing) + smoothing / 2 if smoothing else t
        kw: dict[str, Any] = {"weight": t64(w)}
        opts: dict[str, Any] = {"class_weights": w.tolist(), "label_smoothing": smoothing}
        if pos_weight is not None:
            kw["pos_weight"] = t64(pos_weight)
            opts["pos_weight"] = pos_weight.tolist()
        none = F.binary_cross_entropy_with_logits(t64(x), t64(ts), reduction="none", **kw)
        mean = F.binary_cross_entropy_with_logits(t64(x), t64(ts), reduction="mean", **kw)
        item = none.mean(dim=1)
        g.add(
            name, "bce_weight", "multilabel", x, t, item, mean, item.sum(), dtype=dtype,
            input_type="logits", **opts,
        )  # fmt: skip

    case("ml_cw", z, y)
    case("ml_cw_pos_weight", z, y, pos_weight=pw)
    case("ml_cw_soft_smooth", z, ysoft, pos_weight=pw, smoothing=0.1)
    case("ml_cw_float32", _f32(z), y, pos_weight=pw, dtype="float32")
    w0 = w.copy()
    w0[2] = 0.0
    none = F.binary_cross_entropy_with_logits(t64(z), t64(y), weight=t64(w0), reduction="none")
    g.add(
        "ml_cw_zero_class", "bce_weight", "multilabel", z, y, none.mean(dim=1),
        F.binary_cross_entropy_with_logits(t64(z), t64(y), weight=t64(w0)), none.mean(dim=1).sum(),
        input_type="logits", class_weights=w0.tolist(), label_smoothing=0.0,
    )  # fmt: skip

    # per-class alpha: torchvision's sigmoid_focal_loss on each column with its own alpha
    alpha = rng.uniform(0.1, 0.9, size=k)
    for gamma, weights in ((2.0, None), (0.5, w)):
        cols = [
            sigmoid_focal_loss(t64(z[:, j]), t64(y[:, j]), alpha=float(alpha[j]), gamma=gamma)
            for j in range(k)
        ]
        loss = torch.stack(cols, dim=1)
        opts: dict[str, Any] = {"focal_gamma": gamma, "focal_alpha": alpha.tolist()}
        if weights is not None:
            loss = loss * t64(weights)
            opts["class_weights"] = weights.tolist()
        tag = f"g{gamma:g}" + ("_cw" if weights is not None else "")
        _add(g, f"ml_focal_alpha_vec_{tag}", "focal_binary_weight", "multilabel", z, y,
             loss.mean(dim=1), **opts)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Keras focal losses with one alpha per class


def _keras_np(t: Any) -> F64:
    return np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64)


def keras_cases(g: Golden) -> None:
    keras.config.set_floatx("float64")
    keras.config.set_epsilon(1e-7)  # Keras' default, stated
    rng = np.random.default_rng(20261203)

    # multilabel: binary_focal_crossentropy, apply_class_balancing, alpha broadcast over columns
    n, k = 40, 4
    p = rng.uniform(0.02, 0.98, size=(n, k))  # nothing clipped: Keras' p_t uses p unclipped
    y = rng.integers(0, 2, size=(n, k)).astype(np.float64)
    alpha = rng.uniform(0.1, 0.9, size=k)
    for gamma, smoothing in ((2.0, 0.0), (0.5, 0.1)):
        item = keras.losses.binary_focal_crossentropy(
            y, p, apply_class_balancing=True, alpha=keras.ops.convert_to_tensor(alpha),
            gamma=gamma, label_smoothing=smoothing,
        )  # fmt: skip
        _add(
            g, f"keras_ml_focal_alpha_vec_g{gamma:g}_s{smoothing:g}", "keras_binary_focal",
            "multilabel", p, y, torch.from_numpy(_keras_np(item)), input_type="probabilities",
            clip_eps=1e-7, focal_gamma=gamma, focal_alpha=alpha.tolist(), label_smoothing=smoothing,
        )  # fmt: skip

    # multiclass: categorical_focal_crossentropy with alpha one per class (> 1 allowed: Keras
    # suggests inverse class frequencies); some probabilities below 1e-7 are clipped alike
    n, k = 48, 5
    probs = rng.dirichlet(np.full(k, 0.6), size=n)
    probs[:6, 0] = 1e-9
    probs[:6] /= probs[:6].sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, size=n)
    onehot = np.eye(k)[labels]
    soft = rng.dirichlet(np.full(k, 0.8), size=n)
    alpha_k = rng.uniform(0.2, 3.0, size=k)
    for name, target, y_store, gamma, smoothing in (
        ("keras_mc_focal_alpha_vec_sparse_g2", onehot, labels, 2.0, 0.0),
        ("keras_mc_focal_alpha_vec_sparse_g1_s0.1", onehot, labels, 1.0, 0.1),
        ("keras_mc_focal_alpha_vec_soft_g2", soft, soft, 2.0, 0.0),
        ("keras_mc_focal_alpha_vec_soft_g0_s0.2", soft, soft, 0.0, 0.2),
    ):
        item = keras.losses.categorical_focal_crossentropy(
            target,
            probs,
            alpha=keras.ops.convert_to_tensor(alpha_k),
            gamma=gamma,
            label_smoothing=smoothing,
        )
        _add(
            g, name, "keras_categorical_focal", "multiclass", probs, y_store,
            torch.from_numpy(_keras_np(item)), input_type="probabilities", clip_eps=1e-7,
            focal_gamma=gamma, focal_alpha=alpha_k.tolist(), label_smoothing=smoothing,
        )  # fmt: skip


def focal_multiclass_alpha_cases(g: Golden) -> None:
    rng = np.random.default_rng(20261204)
    n, k = 48, 4
    x = rng.normal(0.0, 2.0, size=(n, k))
    y = rng.integers(0, k, size=n)
    q = rng.dirichlet(np.full(k, 0.7), size=n)
    alpha = rng.uniform(0.1, 2.0, size=k)
    w = rng.uniform(0.5, 2.0, size=k)
    for name, target, gamma, weights, smoothing in (
        ("focal_mc_alpha_vec_g2", y, 2.0, None, 0.0),
        ("focal_mc_alpha_vec_g0", y, 0.0, None, 0.0),
        ("focal_mc_alpha_vec_g1_weight_smooth", y, 1.0, w, 0.1),
        ("focal_mc_alpha_vec_soft_g2_weight", q, 2.0, w, 0.0),
    ):
        log_p = F.log_softmax(t64(x), dim=1)
        qq = t64(target) if target.ndim == 2 else F.one_hot(tlong(target), k).to(torch.float64)
        qq = qq * (1.0 - smoothing) + smoothing / k
        ww = torch.ones(k, dtype=torch.float64) if weights is None else t64(weights)
        item = -(t64(alpha) * ww * qq * (-torch.expm1(log_p)) ** gamma * log_p).sum(dim=1)
        opts: dict[str, Any] = {
            "input_type": "logits",
            "focal_gamma": gamma,
            "focal_alpha": alpha.tolist(),
            "label_smoothing": smoothing,
        }
        sparse_weighted = target.ndim == 1 and weights is not None
        denom = float(ww[tlong(target)].sum()) if sparse_weighted else float(n)
        if weights is not None:
            opts["class_weights"] = weights.tolist()
        g.add(
            name, "focal_multiclass_alpha", "multiclass", x, target, item, item.sum() / denom,
            item.sum(), **opts,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# ignore_index of binary and multilabel labels


def ignore_cases(g: Golden) -> None:
    rng = np.random.default_rng(20261205)
    n = 64
    z = rng.normal(0.0, 3.0, size=n)
    y = rng.integers(0, 2, size=n).astype(np.float64)
    y_m100 = y.copy()
    y_m100[rng.choice(n, 11, replace=False)] = IGNORE

    def binary(
        name: str, labels: F64, ignore: int, *, w: F64 | None = None, smoothing: float = 0.0,
        pos_weight: float | None = None,
    ) -> None:  # fmt: skip
        keep = labels != ignore
        t = np.where(keep, labels, 0.0)
        ts = t * (1.0 - smoothing) + smoothing / 2
        kw: dict[str, Any] = {}
        opts: dict[str, Any] = {"ignore_index": ignore, "label_smoothing": smoothing}
        if pos_weight is not None:
            kw["pos_weight"] = t64(np.array([pos_weight]))
            opts["pos_weight"] = pos_weight
        item = F.binary_cross_entropy_with_logits(t64(z), t64(ts), reduction="none", **kw)
        if w is not None:  # hard labels: the class weight of each item
            item = item * t64(w[t.astype(np.int64)])
            opts["class_weights"] = w.tolist()
        _add(g, name, "bce_ignore", "binary", z, labels, item, keep, **opts)

    binary("bin_ignore_m100", y_m100, IGNORE)
    binary("bin_ignore_inrange", y, 0)  # every negative unscored
    binary(
        "bin_ignore_combo", y_m100, IGNORE, w=np.array([0.7, 1.9]), smoothing=0.0, pos_weight=2.0
    )
    ysoft = rng.uniform(0.0, 1.0, size=n)
    ysoft[::5] = IGNORE
    binary("bin_ignore_soft_smooth", ysoft, IGNORE, smoothing=0.1)

    # multilabel, entry level: an item's loss is the mean over its scored entries
    n, k = 32, 6
    zz = rng.normal(0.0, 2.5, size=(n, k))
    yy = rng.integers(0, 2, size=(n, k)).astype(np.float64)
    yy[rng.random((n, k)) < 0.25] = IGNORE
    yy[3] = IGNORE  # an item with no scored entry: no loss
    keep = yy != IGNORE
    t = np.where(keep, yy, 0.0)
    w = rng.uniform(0.3, 2.0, size=k)
    pw = rng.uniform(0.5, 3.0, size=k)
    rows = keep.any(axis=1)
    mask = torch.from_numpy(keep.astype(np.float64))

    def entry_mean(values: torch.Tensor) -> torch.Tensor:
        return (values * mask).sum(dim=1) / mask.sum(dim=1)

    plain = F.binary_cross_entropy_with_logits(t64(zz), t64(t), reduction="none")
    _add(g, "ml_ignore", "bce_ignore", "multilabel", zz, yy, entry_mean(plain), rows,
         ignore_index=IGNORE)  # fmt: skip
    weighted = F.binary_cross_entropy_with_logits(
        t64(zz), t64(t), weight=t64(w), pos_weight=t64(pw), reduction="none"
    )
    _add(g, "ml_ignore_cw_pos_weight", "bce_ignore", "multilabel", zz, yy, entry_mean(weighted),
         rows, ignore_index=IGNORE, class_weights=w.tolist(), pos_weight=pw.tolist())  # fmt: skip
    alpha = rng.uniform(0.1, 0.9, size=k)
    focal = torch.stack(
        [
            sigmoid_focal_loss(t64(zz[:, j]), t64(t[:, j]), alpha=float(alpha[j]), gamma=2.0)
            for j in range(k)
        ],
        dim=1,
    )
    _add(g, "ml_ignore_focal_alpha_vec", "bce_ignore", "multilabel", zz, yy, entry_mean(focal),
         rows, ignore_index=IGNORE, focal_gamma=2.0, focal_alpha=alpha.tolist())  # fmt: skip


def build() -> Golden:
    torch.set_default_dtype(torch.float64)
    g = Golden()
    binary_weight_cases(g)
    multilabel_weight_cases(g)
    keras_cases(g)
    focal_multiclass_alpha_cases(g)
    ignore_cases(g)
    return g


def payload(g: Golden) -> dict[str, npt.NDArray[Any]]:
    out = g.payload()
    meta = json.loads(str(out["manifest"]))
    meta["keras"] = keras.__version__
    out["manifest"] = np.array(json.dumps(meta, sort_keys=True))
    return out


def check(g: Golden) -> int:
    """Compare a fresh build with the committed file; 0 when every array is identical."""
    fresh = payload(g)
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
    if json.loads(str(stored["manifest"]))["cases"] != json.loads(str(fresh["manifest"]))["cases"]:
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
    np.savez_compressed(OUT, **payload(g))  # type: ignore[arg-type]
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {len(g.manifest)} cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
