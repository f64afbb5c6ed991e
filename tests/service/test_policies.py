"""Risk-controlled policies over HTTP (API.md section 10), on SQLite and PostgreSQL: fitting on
the calibration set (checked against ``xentcore.risk_control`` on the same arrays, computed
independently here from the scored items), versions, listing, risk-coverage, and a batch
flagged by a policy, with every error the issue lists."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from tests.service.conftest import MakeClient, TestClient


@pytest.fixture
def app(store_client: TestClient) -> TestClient:
    return store_client


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, 4))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)  # y ~ p: calibrated
    return p, y


def _record(app: TestClient, p: np.ndarray, y: np.ndarray | None, ids: list[Any], **kw: Any):
    body = {"predictions": p.tolist(), "ids": ids, "stream": "s", **kw}
    if y is not None:
        body["labels"] = y.tolist()
    r = app.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_policy_is_fitted_on_the_calibration_set_and_versioned(app: TestClient) -> None:
    p, y = _data(2000)
    _record(app, p, y, list(range(2000)))
    # an unlabelled, unaudited batch adds nothing to the calibration set
    _record(app, p[:500], None, [f"u{i}" for i in range(500)])
    r = app.put("/v1/streams/s/policies/gate", json={"alpha": 0.1, "delta": 0.1})
    assert r.status_code == 200, r.text
    got = r.json()
    want = xc.risk_control(p.max(axis=1), p.argmax(axis=1) == y, alpha=0.1, delta=0.1,
                           min_calibration=100).to_dict()  # fmt: skip
    for key in ("feasible", "n_calibration", "n_accepted", "errors", "coverage", "method"):
        assert got[key] == want[key], key
    assert got["threshold"] == pytest.approx(want["threshold"], rel=1e-12)
    assert got["risk_upper_bound"] == pytest.approx(want["risk_upper_bound"], rel=1e-12)
    assert got["feasible"] and got["risk_upper_bound"] <= 0.1 and got["n_calibration"] == 2000
    assert (got["name"], got["stream"], got["version"]) == ("gate", "s", 1)
    again = app.put("/v1/streams/s/policies/gate", json={"alpha": 0.2, "per_class": True}).json()
    assert again["version"] == 2 and set(again["thresholds"]) == {"0", "1", "2", "3"}
    assert app.get("/v1/streams/s/policies/gate").json()["version"] == 2
    assert app.get("/v1/streams/s/policies/gate?version=1").json()["alpha"] == 0.1
    listed = app.get("/v1/streams/s/policies").json()["policies"]
    assert [(x["name"], x["version"]) for x in listed] == [("gate", 2)]


def test_late_labels_of_audited_items_join_and_others_do_not(app: TestClient) -> None:
    p, y = _data(600, seed=1)
    ids = [f"a{i}" for i in range(600)]
    out = _record(app, p, None, ids, audit_rate=0.5, audit_seed=3)
    audited = set(out["audit"]["indices"])
    labels = app.post("/v1/streams/s/labels", json={"ids": ids, "labels": y.tolist()})
    assert labels.json()["matched"] == 600
    fit = app.put("/v1/streams/s/policies/g", json={"alpha": 0.2, "min_calibration": 1}).json()
    assert fit["n_calibration"] == len(audited)
    idx = np.array(sorted(audited))
    want = xc.risk_control(p[idx].max(axis=1), p[idx].argmax(axis=1) == y[idx], alpha=0.2,
                           delta=0.1).to_dict()  # fmt: skip
    assert fit["n_accepted"] == want["n_accepted"] and fit["errors"] == want["errors"]


def test_a_batch_flagged_by_a_policy(app: TestClient) -> None:
    p, y = _data(2000)
    _record(app, p, y, list(range(2000)))
    fit = app.put("/v1/streams/s/policies/gate", json={"alpha": 0.1}).json()
    q, _ = _data(50, seed=9)
    r = app.post("/v1/score", json={"predictions": q.tolist(), "stream": "s",
                                    "flag": {"policy": "gate"}})  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["policy"] == {"name": "gate", "version": 1, "threshold": fit["threshold"],
                             "alpha": 0.1, "delta": 0.1, "feasible": True}  # fmt: skip
    rejected = ~(q.max(axis=1) >= fit["threshold"])
    assert out["flagged"]["indices"] == np.flatnonzero(rejected).tolist()
    reasons = out["items"]["reasons"]
    assert all(("risk_policy" in r) == bool(f) for r, f in zip(reasons, rejected, strict=True))
    total = app.get("/v1/streams/s/summary").json()["total"]
    assert total["risk_policy"] == int(rejected.sum())


def test_per_class_and_infeasible_policies_flag_as_they_say(app: TestClient) -> None:
    p, y = _data(300)
    _record(app, p, y, list(range(300)))
    bad = app.put("/v1/streams/s/policies/strict", json={"alpha": 0.001}).json()
    assert bad["feasible"] is False and bad["threshold"] is None
    q, _ = _data(20, seed=4)
    out = app.post("/v1/score", json={"predictions": q.tolist(), "stream": "s",
                                      "flag": {"policy": "strict"}}).json()  # fmt: skip
    assert out["flagged"]["count"] == 20 and out["policy"]["feasible"] is False
    per = app.put("/v1/streams/s/policies/pc", json={"alpha": 0.3, "per_class": True,
                                                     "min_calibration": 10}).json()  # fmt: skip
    out = app.post("/v1/score", json={"predictions": q.tolist(), "stream": "s",
                                      "flag": {"policy": "pc"}}).json()  # fmt: skip
    limits = [math.inf if per["thresholds"].get(str(k)) is None else per["thresholds"][str(k)]
              for k in range(4)]  # fmt: skip
    rejected = ~(q.max(axis=1) >= np.array(limits)[q.argmax(axis=1)])
    assert out["flagged"]["indices"] == np.flatnonzero(rejected).tolist()
    assert out["policy"]["thresholds"] == per["thresholds"]


def test_bad_requests(app: TestClient) -> None:
    p, y = _data(200)
    _record(app, p, y, list(range(200)))
    put = app.put
    for body, field in (
        ({"alpha": 0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": 0.1, "delta": 1}, "delta"),
        ({"alpha": 0.1, "min_calibration": 0}, "min_calibration"),
        ({"alpha": 0.1, "confidence": "vibes"}, "confidence"),
        ({"alpha": 0.1, "color": "red"}, "color"),
    ):
        r = put("/v1/streams/s/policies/x", json=body)
        assert r.status_code == 422, body
        assert r.json()["detail"][0]["loc"][:2] == ["body", field], r.json()
    assert put("/v1/streams/nope/policies/x", json={"alpha": 0.1}).status_code == 404
    assert app.get("/v1/streams/s/policies/none").status_code == 404
    q = p[:5].tolist()
    r = app.post("/v1/score", json={"predictions": q, "stream": "s", "flag": {"policy": "x"}})
    assert r.status_code == 404
    r = app.post("/v1/score", json={"predictions": q, "flag": {"policy": "x"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "flag", "policy"]
    put("/v1/streams/s/policies/mp", json={"alpha": 0.2, "min_calibration": 1})
    r = app.post("/v1/score", json={"predictions": q, "stream": "s", "confidence": "margin",
                                    "flag": {"policy": "mp"}})  # fmt: skip
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "flag", "policy"]
    assert app.get("/v1/streams/s/summary").json()["total"]["n_items"] == 200  # nothing recorded


def test_risk_coverage(app: TestClient) -> None:
    p, y = _data(1500, seed=2)
    _record(app, p, y, list(range(1500)))
    got = app.get("/v1/streams/s/risk-coverage?delta=0.05").json()
    want = xc.risk_coverage(p.max(axis=1), p.argmax(axis=1) == y, delta=0.05).to_dict()
    assert got["n"] == 1500 and got["aurc"] == pytest.approx(want["aurc"], rel=1e-12)
    assert len(got["points"]) == len(want["points"]) <= 101
    assert got["points"][0]["coverage"] == 1.0
    assert app.get("/v1/streams/s/risk-coverage?delta=2").status_code == 422
    assert app.get("/v1/streams/nope/risk-coverage").status_code == 404


def test_the_client_fits_reads_and_uses_a_policy(app: TestClient) -> None:
    from service.client import Client, XentError
    from service.schemas import PolicyResponse, RiskCoverageResponse

    p, y = _data(1000)
    _record(app, p, y, list(range(1000)))
    xent = Client("http://testserver", http=app, binary_threshold=None)
    fit = xent.put_policy("s", "gate", alpha=0.1, min_calibration=50)
    assert isinstance(fit, PolicyResponse) and fit.version == 1 and fit.feasible
    assert xent.policy("s", "gate").threshold == fit.threshold
    assert [x.name for x in xent.policies("s").policies] == ["gate"]
    curve = xent.risk_coverage("s", delta=0.2)
    assert isinstance(curve, RiskCoverageResponse) and curve.n == 1000
    r = xent.score(p[:10], stream="s", flag={"policy": "gate"})
    assert r.policy is not None and r.policy.threshold == fit.threshold
    with pytest.raises(XentError) as caught:
        xent.policy("s", "nope")
    assert caught.value.status_code == 404


def test_a_sequences_stream_fits_and_uses_a_policy(app: TestClient) -> None:
    rng = np.random.default_rng(3)
    n = 400
    lengths = rng.integers(2, 8, n)
    seqs = [(-rng.exponential(0.1, k)).tolist() for k in lengths]
    conf = np.array([np.exp(np.mean(s)) for s in seqs])
    ok = rng.random(n) < conf  # verdicts as likely as the confidence
    body = {"sequences": [{"id": f"q{i}", "token_logprobs": s} for i, s in enumerate(seqs)],
            "stream": "chat", "audit_rate": 1.0, "audit_seed": 1}  # fmt: skip
    assert app.post("/v1/sequences/score", json=body).status_code == 200
    ids = [f"q{i}" for i in range(n)]
    app.post("/v1/streams/chat/labels", json={"ids": ids, "labels": ok.astype(int).tolist()})
    wrong = app.put("/v1/streams/chat/policies/g", json={"alpha": 0.3})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "confidence"]
    fit = app.put("/v1/streams/chat/policies/g", json={"alpha": 0.3, "confidence": "sequence",
                                                       "min_calibration": 10}).json()  # fmt: skip
    want = xc.risk_control(conf, ok, alpha=0.3, delta=0.1, min_calibration=10).to_dict()
    assert fit["n_calibration"] == n and fit["n_accepted"] == want["n_accepted"]
    assert fit["feasible"] and fit["threshold"] == pytest.approx(want["threshold"], rel=1e-12)
    new = [[-0.01, -0.02], [-2.0, -3.0]]
    out = app.post("/v1/sequences/score", json={
        "sequences": [{"token_logprobs": s} for s in new], "stream": "chat",
        "flag": {"policy": "g"}}).json()  # fmt: skip
    assert out["policy"]["name"] == "g" and out["policy"]["threshold"] == fit["threshold"]
    accepted = [np.exp(np.mean(s)) >= fit["threshold"] for s in new]
    assert [("risk_policy" in s["reasons"]) for s in out["sequences"]] == [not a for a in accepted]
    app.put("/v1/streams/s2/policies/x", json={"alpha": 0.3})  # another stream: 404
    p, y = _data(200)
    _record(app, p, y, list(range(200)))
    app.put("/v1/streams/s/policies/clf", json={"alpha": 0.3, "min_calibration": 1})
    one = {"sequences": [{"token_logprobs": [-0.1]}], "stream": "s", "flag": {"policy": "clf"}}
    r = app.post("/v1/sequences/score", json=one)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "flag", "policy"]


def test_fits_and_curves_read_at_most_the_newest_calibration_items(
    make_client: MakeClient,
) -> None:
    app = make_client(max_calibration_items=150)
    parts = [_data(100, seed=s) for s in range(3)]
    for k, (p, y) in enumerate(parts):
        _record(app, p, y, [f"{k}-{i}" for i in range(100)])
    fit = app.put("/v1/streams/s/policies/g", json={"alpha": 0.3, "min_calibration": 1}).json()
    assert fit["n_calibration"] == 150 and fit["truncated"] is True
    newest = np.concatenate([parts[2][0], parts[1][0][:50]])
    truth = np.concatenate([parts[2][1], parts[1][1][:50]])
    want = xc.risk_control(newest.max(axis=1), newest.argmax(axis=1) == truth, alpha=0.3,
                           delta=0.1).to_dict()  # fmt: skip
    assert fit["n_accepted"] == want["n_accepted"] and fit["errors"] == want["errors"]
    curve = app.get("/v1/streams/s/risk-coverage").json()
    assert curve["n"] == 150 and curve["truncated"] is True
    assert app.get("/v1/streams/s/risk-coverage?since=2000-01-01T00:00:00Z").json()["n"] == 150
    small = make_client()
    _record(small, *parts[0], list(range(100)))
    assert small.get("/v1/streams/s/risk-coverage").json()["truncated"] is False


def test_policy_fields_are_strict(app: TestClient) -> None:
    p, y = _data(50)
    _record(app, p, y, list(range(50)))
    for body, field in (
        ({"alpha": 0.1, "per_class": 0}, "per_class"),
        ({"alpha": "0.1"}, "alpha"),
        ({"alpha": 0.1, "min_calibration": 1.5}, "min_calibration"),
    ):
        r = app.put("/v1/streams/s/policies/x", json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], body
