"""/v1/calibration: hand-computed bins, ECE, MCE, Brier, NLL; the temperature fit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from service.schemas import CalibrationResponse


def calibrate(client: Any, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == status, response.text
    if status == 200:
        CalibrationResponse.model_validate(response.json())
    return dict(response.json())


def test_binary_hand_computed(client: Any) -> None:
    out = calibrate(
        client, {"predictions": [0.9, 0.8, 0.3, 0.6], "labels": [1, 1, 0, 0], "n_bins": 5}
    )
    # confidences 0.9, 0.8, 0.7, 0.6; correct 1, 1, 1, 0
    assert out["task"] == "binary" and out["n_items"] == 4 and out["n_scored"] == 4
    assert out["ece"] == pytest.approx((0.1 + 0.5 + 0.6) / 4, rel=1e-12)
    assert out["mce"] == pytest.approx(0.6, rel=1e-12)
    assert out["brier"] == pytest.approx((0.01 + 0.04 + 0.09 + 0.36) / 4, rel=1e-12)
    nll = -(math.log(0.9) + math.log(0.8) + math.log(0.7) + math.log(0.4)) / 4
    assert out["nll"] == pytest.approx(nll, rel=1e-14)
    assert [b["count"] for b in out["bins"]] == [0, 0, 1, 2, 1]
    assert out["bins"][0] == {
        "lower": 0.0,
        "upper": 0.2,
        "count": 0,
        "mean_confidence": None,
        "accuracy": None,
    }
    assert out["bins"][3]["mean_confidence"] == pytest.approx(0.75)
    assert out["bins"][3]["accuracy"] == 1.0
    assert "temperature" not in out


def test_temperature_fit_matches_xentcore(client: Any) -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(60, 4)) * 4
    y = rng.integers(0, 4, 60)
    out = calibrate(
        client,
        {
            "predictions": z.tolist(),
            "labels": y.tolist(),
            "input_type": "logits",
            "fit_temperature": True,
            "strategy": "quantile",
            "n_bins": 6,
        },
    )
    ref = xc.calibration(
        z, y, input_type="logits", fit_temperature=True, strategy="quantile", n_bins=6
    )
    assert ref.temperature is not None
    for name in ("ece", "mce", "brier", "nll", "temperature", "nll_after", "ece_after"):
        assert out[name] == pytest.approx(getattr(ref, name), rel=1e-9), name
    assert out["nll_after"] <= out["nll"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"predictions": [0.5]}, ["labels"]),
        ({"predictions": [[0.5, 0.5]], "labels": [[1, 0]], "task": "multilabel"}, ["task"]),
        ({"predictions": [0.5], "labels": [1], "n_bins": 0}, ["n_bins"]),
        ({"predictions": [0.5], "labels": [1], "n_bins": 2.0}, ["n_bins"]),
        ({"predictions": [0.5], "labels": [1], "strategy": "kmeans"}, ["strategy"]),
    ],
)
def test_invalid_calibration(client: Any, body: dict[str, Any], loc: list[Any]) -> None:
    out = calibrate(client, body, status=422)
    assert out["detail"][0]["loc"] == ["body", *loc]


def test_the_batch_is_scored_once(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The route calibrates the batch it has scored: one ``score_batch``, no second one."""
    import importlib

    import service.convert

    # xentcore.calibration is also the name of the function xentcore re-exports: the module
    core_calibration = importlib.import_module("xentcore.calibration")
    calls: list[str] = []
    original = service.convert.score_batch

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("score")
        return original(*args, **kwargs)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("calibration scored the batch again")

    monkeypatch.setattr(service.convert, "score_batch", counted)
    monkeypatch.setattr(core_calibration, "score_batch", refused)
    out = calibrate(client, {"predictions": [0.9, 0.8, 0.3, 0.6], "labels": [1, 1, 0, 0]})
    assert calls == ["score"] and out["n_scored"] == 4


def test_breadth_figures_binary(client: Any) -> None:
    """classwise ECE, RMS and the positive-class reliability curve (hand-computed)."""
    out = calibrate(
        client, {"predictions": [0.9, 0.8, 0.3, 0.6], "labels": [1, 1, 0, 0], "n_bins": 5}
    )
    # top-label gaps per bin: -0.6 (1 item), +0.5 (2 items), +0.1 (1 item)
    rms = math.sqrt((0.36 + 0.25 / 2 + 0.01) / 4)
    assert out["rms_calibration_error"] == pytest.approx(rms, rel=1e-14)
    assert out["classwise_ece"] == pytest.approx((0.3 + 0.6 + 0.2 + 0.1) / 4, rel=1e-14)
    assert out["reliability_curve"] == {
        "prob_true": [0.0, 0.0, 1.0, 1.0],
        "prob_pred": [0.3, 0.6, 0.8, 0.9],
        "count": [1, 1, 1, 1],
    }
    # the figures that were there before are unchanged
    assert out["ece"] == pytest.approx((0.1 + 0.5 + 0.6) / 4, rel=1e-12)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_breadth_figures_match_xentcore(client: Any, strategy: str) -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(80, 3)) * 3
    y = rng.integers(0, 3, 80)
    body = {"predictions": z.tolist(), "labels": y.tolist(), "input_type": "logits"}
    out = calibrate(client, {**body, "strategy": strategy, "n_bins": 6})
    ref = xc.calibration(z, y, input_type="logits", strategy=strategy, n_bins=6)
    assert out["classwise_ece"] == pytest.approx(ref.classwise_ece, rel=1e-12)
    assert out["rms_calibration_error"] == pytest.approx(ref.rms_calibration_error, rel=1e-12)
    assert out["reliability_curve"] is None  # multiclass
    zb, yb = z[:, 0], (y == 0).astype(int)
    binary = {"predictions": zb.tolist(), "labels": yb.tolist(), "input_type": "logits"}
    out = calibrate(client, {**binary, "strategy": strategy, "n_bins": 6})
    ref = xc.calibration(zb, yb, input_type="logits", strategy=strategy, n_bins=6)
    assert ref.reliability_curve is not None
    assert out["reliability_curve"]["count"] == ref.reliability_curve["count"]
    for key in ("prob_true", "prob_pred"):
        assert out["reliability_curve"][key] == pytest.approx(ref.reliability_curve[key], rel=1e-12)
