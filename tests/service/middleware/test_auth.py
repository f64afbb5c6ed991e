"""API keys: Bearer or X-API-Key, 401 with WWW-Authenticate, open health routes."""

from __future__ import annotations

from typing import Any

import pytest

from service.middleware.auth import key_matches

BODY = {"predictions": [0.5, 0.9]}
KEYS = "k1-0123456789,second-key"


@pytest.fixture
def locked(make_client: Any) -> Any:
    return make_client(api_keys=KEYS)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer k1-0123456780"},  # same length, last character wrong
        {"Authorization": "Bearer k1"},  # other length
        {"Authorization": "Bearer " + "k" * 5000},
        {"X-API-Key": "k1-012345678"},
        {"Authorization": "Basic k1-0123456789"},
        {"Authorization": "Bearer "},
    ],
)
def test_missing_or_wrong_key(locked: Any, headers: dict[str, str]) -> None:
    for path in (
        "/v1/score",
        "/v1/loss",
        "/v1/confidence",
        "/v1/flag",
        "/v1/calibration",
        "/v1/sequences/score",
    ):
        response = locked.post(path, json=BODY, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "missing or invalid API key"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer k1-0123456789"},
        {"Authorization": "bearer second-key"},
        {"X-API-Key": "second-key"},
    ],
)
def test_right_key(locked: Any, headers: dict[str, str]) -> None:
    assert locked.post("/v1/score", json=BODY, headers=headers).status_code == 200


def test_health_and_docs_stay_open(locked: Any) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert locked.get(path).status_code == 200, path


def test_metrics_need_a_key_like_v1(locked: Any) -> None:
    """The secure default (tests/service/middleware/test_metrics_auth.py has the rest)."""
    response = locked.get("/metrics")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert locked.get("/metrics", headers={"X-API-Key": "second-key"}).status_code == 200


def test_no_keys_means_open(client: Any) -> None:
    assert client.post("/v1/score", json=BODY).status_code == 200


def test_auth_comes_before_the_body_is_read(locked: Any) -> None:
    response = locked.post(
        "/v1/score", content=b"not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401


def test_key_matches() -> None:
    assert key_matches("b", ["a", "b"])
    assert not key_matches("c", ["a", "b"])
    assert not key_matches("", ["a"])
    assert not key_matches("a", [])
    assert key_matches("ключ", ["ключ"])
