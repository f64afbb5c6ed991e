"""The scoring endpoints' plain routes (``service.routing``): they serve first, yet the OpenAPI
document, the request metrics' route label and the 405 answers are those of the FastAPI routes."""

from __future__ import annotations

from service.routing import PlainRoute
from tests.service.conftest import MakeClient


def test_scoring_paths_are_served_by_plain_routes_first(make_client: MakeClient) -> None:
    client = make_client()
    routes = client.app.router.routes  # type: ignore[attr-defined]
    plain = [r.path for r in routes if isinstance(r, PlainRoute)]
    assert set(plain) == {
        "/v1/score", "/v1/loss", "/v1/confidence", "/v1/flag", "/v1/calibration",
        "/v1/sequences/score",
    }  # fmt: skip
    first = [type(r).__name__ for r in routes[: len(plain)]]
    assert first == ["PlainRoute"] * len(plain)
    paths = client.get("/openapi.json").json()["paths"]
    assert list(paths["/v1/score"]) == ["post"]  # documented once, by the FastAPI route


def test_metrics_label_and_405_are_the_templates(make_client: MakeClient) -> None:
    client = make_client()
    assert client.post("/v1/score", json={"predictions": [0.2, 0.9]}).status_code == 200
    wrong = client.get("/v1/score")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {"detail": "Method Not Allowed"}
    text = client.get("/metrics").text
    assert 'route="/v1/score",status="200"' in text
    assert 'route="/v1/score",status="405"' in text
