"""/healthz, /readyz, /metrics, request ids and the OpenAPI document."""

from __future__ import annotations

import logging
from typing import Any

from service.app import create_app


def test_healthz(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_with_and_without_store(client: Any) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}
    client.app.state.store = None
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json() == {"status": "unavailable"}


def test_lifespan_opens_and_closes_the_store(make_client: Any) -> None:
    client = make_client()
    store = client.app.state.store
    assert store is not None and store.ping()
    client.__exit__(None, None, None)
    assert client.app.state.store is None


def test_start_warns_without_the_compiled_kernels(
    make_client: Any, monkeypatch: Any, caplog: Any
) -> None:
    import xentcore

    def warned() -> bool:
        return any("numpy fallback" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="service"):
        make_client()
    assert warned() is (not xentcore.NATIVE_KERNELS)
    caplog.clear()
    monkeypatch.setattr(xentcore, "NATIVE_KERNELS", False)
    with caplog.at_level(logging.WARNING, logger="service"):
        client = make_client()
    assert warned()
    assert client.post("/v1/score", json={"predictions": [0.5]}).status_code == 200


def test_store_that_cannot_open_leaves_scoring_up(make_client: Any) -> None:
    client = make_client(database_url="postgresql://nobody@127.0.0.1:1/none")  # nothing listens
    assert client.app.state.store.ping() is False  # kept, and retried on use
    assert client.get("/readyz").status_code == 503
    assert (
        client.post("/v1/score", json={"predictions": [0.5], "stream": "s"}).json()["recorded"]
        is False
    )


def test_metrics_by_route_template_and_status(client: Any) -> None:
    client.post("/v1/score", json={"predictions": [0.5, 0.9]})
    client.post("/v1/score", json={"predictions": [2.0]})
    client.post("/v1/score", content=b"x", headers={"Content-Type": "text/plain"})
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'xent_http_requests_total{method="POST",route="/v1/score",status="200"} 1.0' in text
    assert 'xent_http_requests_total{method="POST",route="/v1/score",status="422"} 1.0' in text
    assert 'xent_http_requests_total{method="POST",route="/v1/score",status="415"} 1.0' in text
    assert 'xent_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'xent_http_request_duration_seconds_count{method="POST",route="/v1/score"} 3.0' in text
    assert 'xent_items_scored_total{endpoint="score",task="binary"} 2.0' in text
    assert "xent_scoring_in_flight 0.0" in text


def test_each_app_has_its_own_registry(settings_for: Any) -> None:
    first, second = create_app(settings_for()), create_app(settings_for())
    assert first.state.metrics.registry is not second.state.metrics.registry


def test_request_id_header(client: Any) -> None:
    response = client.get("/healthz")
    assert len(response.headers["x-request-id"]) == 32
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    response = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"


def test_openapi_documents_bodies_and_errors(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name in (
        "BatchRequest",
        "LabelledBatchRequest",
        "CalibrationRequest",
        "SequencesRequest",
        "TensorRef",
        "FlagRules",
        "ScoreResponse",
        "ValidationErrorResponse",
    ):
        assert name in schemas, name
    assert "labels" in schemas["LabelledBatchRequest"]["required"]
    assert schemas["BatchRequest"]["properties"]["predictions"]["description"]
    routes = {
        "/v1/score": "BatchRequest",
        "/v1/loss": "LabelledBatchRequest",
        "/v1/confidence": "BatchRequest",
        "/v1/flag": "BatchRequest",
        "/v1/calibration": "CalibrationRequest",
        "/v1/sequences/score": "SequencesRequest",
    }
    for path, model in routes.items():
        op = doc["paths"][path]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}"
        assert {"200", "401", "413", "415", "422", "500", "503"} <= set(op["responses"])
        assert op["security"]
    assert "/healthz" in doc["paths"] and "/metrics" in doc["paths"]
    assert client.get("/docs").status_code == 200


def test_monitoring_routes_are_served_and_protected(make_client: Any) -> None:
    client = make_client(api_keys="k")
    key = {"X-API-Key": "k"}
    body = {
        "predictions": [[0.7, 0.3], [0.4, 0.6]],
        "labels": [0, 0],
        "stream": "m1",
        "ids": ["a", "b"],
        "flag": {"misclassified": True},
    }
    assert client.post("/v1/score", json=body, headers=key).json()["recorded"] is True
    assert client.get("/v1/streams").status_code == 401
    streams = client.get("/v1/streams", headers=key).json()["streams"]
    assert [s["stream"] for s in streams] == ["m1"]
    flagged = client.get("/v1/streams/m1/flagged", headers=key).json()["items"]
    assert [(f["id"], f["index"], f["reasons"]) for f in flagged] == [("b", 1, ["misclassified"])]
