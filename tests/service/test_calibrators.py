"""Calibrators over HTTP (API.md section 10), on SQLite and PostgreSQL: temperature and Platt
fitted on the calibration set's kept rows (checked against ``xentcore.calibrators`` on arrays
rebuilt here from what was sent), versions, and a batch scored through a calibrator (checked
against ``xentcore.score`` on the calibrated logits), with the errors the issue lists."""

from __future__ import annotations

import numpy as np
import pytest

import xentcore as xc
from tests.service.conftest import TestClient
from xentcore.calibrators import fit_platt, fit_temperature


@pytest.fixture
def app(store_client: TestClient) -> TestClient:
    return store_client


def _overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits three times too sharp: labels drawn from softmax(z / 3)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, 4))
    p = np.exp(z / 3) / np.exp(z / 3).sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, y


def _log_softmax32(z: np.ndarray) -> np.ndarray:
    s = z - z.max(axis=1, keepdims=True)
    return (s - np.log(np.exp(s).sum(axis=1, keepdims=True))).astype(np.float32)


def test_temperature_is_fitted_on_kept_rows_and_applied(app: TestClient) -> None:
    z, y = _overconfident(1500)
    body = {"predictions": z.tolist(), "labels": y.tolist(), "input_type": "logits",
            "ids": list(range(1500)), "stream": "m"}  # fmt: skip
    assert app.post("/v1/score", json=body).status_code == 200
    r = app.put("/v1/streams/m/calibrators/ts", json={"method": "temperature"})
    assert r.status_code == 200, r.text
    fit = r.json()
    want = fit_temperature(_log_softmax32(z).astype(np.float64), y)
    assert fit["temperature"] == pytest.approx(want, rel=1e-5)
    assert 2.5 < fit["temperature"] < 3.5  # the sharpening it was built with
    assert fit["n_calibration"] == 1500 and fit["nll_after"] < fit["nll_before"]
    assert (fit["name"], fit["version"], fit["method"]) == ("ts", 1, "temperature")
    q, qy = _overconfident(40, seed=5)
    out = app.post("/v1/score", json={"predictions": q.tolist(), "labels": qy.tolist(),
                                      "input_type": "logits", "stream": "m",
                                      "calibrator": "ts"}).json()  # fmt: skip
    assert out["calibrated"] == {"name": "ts", "version": 1, "method": "temperature",
                                 "temperature": fit["temperature"]}  # fmt: skip
    ref = xc.score(q / fit["temperature"], qy, input_type="logits")
    assert out["loss"]["mean"] == pytest.approx(ref.loss_mean, rel=1e-12)
    assert out["items"]["confidence"] == pytest.approx(ref.confidence.tolist(), rel=1e-12)
    # probabilities in: the same calibrated answer (log p / T has the softmax of z / T)
    p = np.exp(_log_softmax32(q).astype(np.float64))
    again = app.post("/v1/score", json={"predictions": p.tolist(), "labels": qy.tolist(),
                                        "stream": "m", "calibrator": "ts",
                                        "renormalize": True}).json()  # fmt: skip
    assert again["loss"]["mean"] == pytest.approx(ref.loss_mean, rel=1e-5)
    assert (
        app.put("/v1/streams/m/calibrators/ts", json={"method": "temperature"}).json()["version"]
        == 2
    )
    assert app.get("/v1/streams/m/calibrators/ts?version=1").json()["version"] == 1
    assert [c["name"] for c in app.get("/v1/streams/m/calibrators").json()["calibrators"]] == ["ts"]


def test_platt_on_a_binary_stream(app: TestClient) -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.02, 0.98, 800)
    y = (rng.random(800) < p**2).astype(int)  # over-confident in class 1
    body = {"predictions": p.tolist(), "labels": y.tolist(), "ids": [f"b{i}" for i in range(800)],
            "stream": "bin"}  # fmt: skip
    assert app.post("/v1/score", json=body).status_code == 200
    fit = app.put("/v1/streams/bin/calibrators/pl", json={"method": "platt"}).json()
    a, b = fit_platt(p, y)
    assert fit["a"] == pytest.approx(a, rel=1e-9) and fit["b"] == pytest.approx(b, rel=1e-9)
    q = rng.uniform(0.05, 0.95, 10)
    out = app.post("/v1/score", json={"predictions": q.tolist(), "stream": "bin",
                                      "calibrator": "pl"}).json()  # fmt: skip
    calibrated = 1 / (1 + np.exp(-(a * np.log(q / (1 - q)) + b)))
    assert out["items"]["confidence"] == pytest.approx(
        np.maximum(calibrated, 1 - calibrated).tolist(), rel=1e-9
    )
    assert out["calibrated"]["method"] == "platt" and set(out["calibrated"]) >= {"a", "b"}


def test_errors(app: TestClient) -> None:
    z, y = _overconfident(200)
    app.post("/v1/score", json={"predictions": z.tolist(), "labels": y.tolist(),
                                "input_type": "logits", "ids": list(range(200)),
                                "stream": "m"})  # fmt: skip
    r = app.put("/v1/streams/m/calibrators/x", json={"method": "platt"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "method"]
    assert "binary" in r.json()["detail"][0]["msg"]
    r = app.put("/v1/streams/m/calibrators/x", json={"method": "isotonic"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "method"]
    assert (
        app.put("/v1/streams/nope/calibrators/x", json={"method": "temperature"}).status_code == 404
    )
    assert app.get("/v1/streams/m/calibrators/none").status_code == 404
    q = z[:3].tolist()
    r = app.post("/v1/score", json={"predictions": q, "input_type": "logits", "stream": "m",
                                    "calibrator": "none"})  # fmt: skip
    assert r.status_code == 404
    r = app.post("/v1/score", json={"predictions": q, "input_type": "logits", "calibrator": "ts"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "calibrator"]
    app.put("/v1/streams/m/calibrators/ts", json={"method": "temperature"})
    r = app.post("/v1/score", json={"predictions": [0.2, 0.9], "stream": "m",
                                    "calibrator": "ts"})  # fmt: skip
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "calibrator"]
    # an unlabelled stream has no calibration set
    app.post("/v1/score", json={"predictions": z.tolist(), "input_type": "logits",
                                "ids": list(range(200)), "stream": "raw"})  # fmt: skip
    r = app.put("/v1/streams/raw/calibrators/x", json={"method": "temperature"})
    assert r.status_code == 422 and "kept its prediction" in r.json()["detail"][0]["msg"]


def test_the_client_fits_and_applies_a_calibrator(app: TestClient) -> None:
    from service.client import Client
    from service.schemas import CalibratorResponse

    z, y = _overconfident(500)
    xent = Client("http://testserver", http=app, binary_threshold=None)
    xent.score(z, y, input_type="logits", ids=list(range(500)), stream="m")
    fit = xent.put_calibrator("m", "ts", method="temperature")
    assert isinstance(fit, CalibratorResponse) and fit.temperature is not None
    assert xent.calibrator("m", "ts").version == 1
    assert [c.name for c in xent.calibrators("m").calibrators] == ["ts"]
    r = xent.score(z[:5], input_type="logits", stream="m", calibrator="ts")
    assert r.calibrated is not None and r.calibrated.temperature == fit.temperature
