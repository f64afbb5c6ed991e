"""xentcore against torch, through the golden vectors of ``tests/golden/make_golden.py``.

torch is not a dependency: the committed ``torch_golden.npz`` holds the inputs (float64) and the
outputs torch gave for them. Every case is scored by ``xentcore.score`` with the matching options
and compared per item and for both reductions: float32 inputs at rtol 1e-6 against torch's
float64 result on the same values (the contract's bound for float32), float64 inputs at rtol 1e-10
(they agree to ~1e-13; the slack is torch's own rounding of small losses). The atol of 1e-12
only matters for losses torch itself rounds to 0 (log_softmax of a confident item: torch returns
-0.0 where the exact loss is ~1e-18).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import xentcore as xc

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "torch_golden.npz"
RTOL32, RTOL64, ATOL = 1e-6, 1e-10, 1e-12


@cache
def _golden() -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    with np.load(GOLDEN, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("manifest"))), arrays


def _cases() -> list[str]:
    return sorted(_golden()[0]["cases"])


def _load(
    name: str,
) -> tuple[
    dict[str, Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.float64], float, float
]:
    meta, arrays = _golden()
    case = meta["cases"][name]
    x = arrays[case["x"]]
    if case["dtype"] == "float32":
        x32 = x.astype(np.float32)
        assert np.array_equal(x32.astype(np.float64), x)  # stored as the float32 values' image
        x = x32
    return (
        case,
        x,
        arrays[case["y"]],
        arrays[f"{name}__item"],
        float(arrays[f"{name}__mean"]),
        float(arrays[f"{name}__sum"]),
    )


def _rtol(case: dict[str, Any]) -> float:
    return RTOL32 if case["dtype"] == "float32" else RTOL64


def _score(case: dict[str, Any], x: npt.NDArray[Any], y: npt.NDArray[Any]) -> xc.ScoreResult:
    opts = dict(case["opts"])
    if opts.get("focal_alpha", 0.0) is None:
        del opts["focal_alpha"]
    return xc.score(x, y, task=case["task"], input_type="logits", flag={}, **opts)


def test_golden_file_is_small_and_complete() -> None:
    assert GOLDEN.stat().st_size < 3_000_000
    meta, _ = _golden()
    kinds = {c["kind"] for c in meta["cases"].values()}
    assert kinds == {"ce", "bce", "focal_binary", "focal_multiclass"}
    assert len(meta["cases"]) >= 80


@pytest.mark.parametrize("name", _cases())
def test_item_loss_matches_torch(name: str) -> None:
    case, x, y, item, _, _ = _load(name)
    r = _score(case, x, y)
    rtol = _rtol(case)
    assert r.item_loss is not None
    assert r.item_loss.dtype == np.float64
    assert r.item_loss.shape == (x.shape[0],)
    ignore = case["opts"].get("ignore_index")
    if ignore is not None:
        ignored = y == ignore
        # torch gives 0 for an ignored item; xentcore gives no loss (NaN)
        assert np.isnan(r.item_loss[ignored]).all()
        assert (item[ignored] == 0).all()
        np.testing.assert_allclose(r.item_loss[~ignored], item[~ignored], rtol=rtol, atol=ATOL)
        assert r.n_scored == int(np.count_nonzero(~ignored))
    else:
        assert np.isfinite(r.item_loss).all()
        np.testing.assert_allclose(r.item_loss, item, rtol=rtol, atol=ATOL)
        assert r.n_scored == x.shape[0]


@pytest.mark.parametrize("name", _cases())
def test_reductions_match_torch(name: str) -> None:
    case, x, y, _, mean, total = _load(name)
    r = _score(case, x, y)
    assert r.loss_sum is not None and r.loss_mean is not None
    np.testing.assert_allclose(r.loss_sum, total, rtol=_rtol(case), atol=ATOL)
    np.testing.assert_allclose(r.loss_mean, mean, rtol=_rtol(case), atol=ATOL)


def _float64_twins() -> list[str]:
    """Cases whose logits are moderate enough that softmax / sigmoid probabilities are > eps."""
    meta, arrays = _golden()
    out = []
    for name, case in meta["cases"].items():
        x = arrays[case["x"]]
        spread = np.ptp(x, axis=1).max() if x.ndim == 2 else np.abs(x).max()
        if case["kind"] in ("ce", "bce") and spread < 30:
            out.append(name)
    return sorted(out)


def _as_probabilities(x: npt.NDArray[np.float64], task: str) -> npt.NDArray[np.float64]:
    if task == "multiclass":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
        return p
    p = 1.0 / (1.0 + np.exp(-x))
    return p


@pytest.mark.parametrize("input_type", ["probabilities", "log_probabilities"])
@pytest.mark.parametrize("name", _float64_twins())
def test_probability_inputs_match_torch(name: str, input_type: str) -> None:
    """The same torch figures from softmax / sigmoid probabilities (or their logs) of the logits.

    Section 2: for probabilities the formula is applied to log p as given, so with no value
    clipped the loss is torch's up to the rounding of the probabilities themselves.
    """
    case, x32, y, item, mean, total = _load(name)
    x = x32.astype(np.float64)  # float64 probabilities of the values torch saw
    if input_type == "log_probabilities":
        if case["task"] == "multiclass":
            m = x.max(axis=1, keepdims=True)
            pred = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
        else:
            pred = -np.logaddexp(0.0, -x)
    else:
        pred = _as_probabilities(x, case["task"])
    opts = dict(case["opts"])
    r = xc.score(pred, y, task=case["task"], input_type=input_type, flag={}, **opts)
    assert r.item_loss is not None and r.loss_mean is not None and r.loss_sum is not None
    assert not any("clipped" in w for w in r.warnings)
    ok = ~np.isnan(r.item_loss)
    np.testing.assert_allclose(r.item_loss[ok], item[ok], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.loss_mean, mean, rtol=1e-9)
    np.testing.assert_allclose(r.loss_sum, total, rtol=1e-9)
