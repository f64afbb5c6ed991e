"""GET /metrics is protected like /v1 when XENT_API_KEYS is set, unless XENT_METRICS_PUBLIC.

Stream names and volumes are not public information: with API keys the secure default is a
401 without one. The retired XENT_METRICS_REQUIRE_KEY is ignored with a warning that names
XENT_METRICS_PUBLIC, and the deployment files' XENT_METRICS_TOKEN must be one of the keys.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from service.settings import Settings, unknown_variables

KEYS = "client-key-0123,prometheus-key-4567"
SCRAPER = "prometheus-key-4567"
RETIRED_MESSAGE = (
    "XENT_METRICS_REQUIRE_KEY is no longer a setting: GET /metrics needs an API key whenever "
    "XENT_API_KEYS is set, unless XENT_METRICS_PUBLIC=true; it is ignored"
)
TOKEN_MESSAGE = (
    "XENT_METRICS_TOKEN is not one of XENT_API_KEYS: a Prometheus scraping /metrics with it "
    "gets 401 (add it to XENT_API_KEYS)"
)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},  # what Prometheus sends from an empty credentials file
        {"Authorization": "Bearer prometheus-key-4560"},
        {"X-API-Key": "not-a-key"},
        {"Authorization": f"Basic {SCRAPER}"},
    ],
)
def test_metrics_without_a_valid_key_is_401(make_client: Any, headers: dict[str, str]) -> None:
    client = make_client(api_keys=KEYS)
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "missing or invalid API key"}
    assert "xent_" not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SCRAPER}"},  # Prometheus' `authorization` / ServiceMonitor
        {"authorization": "bearer client-key-0123"},
        {"X-API-Key": SCRAPER},
    ],
)
def test_metrics_with_a_key_is_200(make_client: Any, headers: dict[str, str]) -> None:
    client = make_client(api_keys=KEYS)
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "xent_http_requests_total" in response.text


def test_metrics_public_opens_metrics_only(make_client: Any) -> None:
    client = make_client(api_keys=KEYS, metrics_public=True)
    assert client.app.state.settings.metrics_public is True
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 200
    assert client.post("/v1/score", json={"predictions": [0.5]}).status_code == 401
    assert client.get("/v1/streams").status_code == 401


@pytest.mark.parametrize("public", [False, True])
def test_without_api_keys_metrics_stay_open(make_client: Any, public: bool) -> None:
    client = make_client(metrics_public=public)
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 200


def test_metrics_public_is_read_from_the_environment(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().metrics_public is False
    monkeypatch.setenv("XENT_API_KEYS", KEYS)
    monkeypatch.setenv("XENT_METRICS_PUBLIC", "true")
    assert Settings().metrics_public is True
    assert make_client().get("/metrics").status_code == 200
    monkeypatch.setenv("XENT_METRICS_PUBLIC", "false")
    assert make_client().get("/metrics").status_code == 401


@pytest.mark.parametrize("public", [False, True])
def test_openapi_declares_what_the_middleware_does(make_client: Any, public: bool) -> None:
    client = make_client(api_keys=KEYS, metrics_public=public)
    operation = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    if public:
        assert "security" not in operation
    else:
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
        assert "401" in operation["responses"]


# --- the retired XENT_METRICS_REQUIRE_KEY ------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "false", "1", ""])
def test_retired_variable_is_named_with_its_replacement(value: str) -> None:
    assert unknown_variables({"XENT_METRICS_REQUIRE_KEY": value}) == [RETIRED_MESSAGE]
    (message,) = unknown_variables({"xent_metrics_require_key": value})
    assert message.startswith("xent_metrics_require_key is no longer a setting")


@pytest.mark.parametrize("value", ["false", "true"])
def test_retired_variable_changes_nothing(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Even an explicit ``false`` (open, before) no longer opens /metrics: only PUBLIC does."""
    monkeypatch.setenv("XENT_API_KEYS", KEYS)
    monkeypatch.setenv("XENT_METRICS_REQUIRE_KEY", value)
    client = make_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": SCRAPER}).status_code == 200


def test_the_app_logs_the_retired_variable_at_start(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XENT_METRICS_REQUIRE_KEY", "false")
    with caplog.at_level(logging.INFO, logger="service"):
        make_client(api_keys=KEYS)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "service"]
    assert (logging.WARNING, RETIRED_MESSAGE) in messages


# --- XENT_METRICS_TOKEN, the deployment files' key for Prometheus -------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"XENT_METRICS_TOKEN": SCRAPER, "XENT_API_KEYS": KEYS},
        {"XENT_METRICS_TOKEN": f" {SCRAPER}\n", "XENT_API_KEYS": f" {SCRAPER} "},
        {"XENT_METRICS_TOKEN": "other", "XENT_API_KEYS": KEYS, "XENT_METRICS_PUBLIC": "true"},
        {"XENT_METRICS_TOKEN": "other"},  # no keys: /metrics is open, the token unused
        {"XENT_METRICS_TOKEN": ""},
        {"XENT_METRICS_TOKEN_FILE": "/run/secrets/x", "XENT_PUBLISH": "127.0.0.1:8000"},
    ],
)
def test_deployment_variables_pass_quietly(environ: dict[str, str]) -> None:
    assert unknown_variables(environ) == []


@pytest.mark.parametrize(
    "environ",
    [
        {"XENT_METRICS_TOKEN": "prometheus-key", "XENT_API_KEYS": KEYS},
        {"xent_metrics_token": SCRAPER + "x", "XENT_API_KEYS": KEYS},
        {"XENT_METRICS_TOKEN": SCRAPER, "XENT_API_KEYS": KEYS.replace(",", ""), "XENT_X": "1"},
    ],
)
def test_a_metrics_token_that_is_no_key_is_reported(environ: dict[str, str]) -> None:
    warnings = unknown_variables(environ)
    assert warnings[-1] == TOKEN_MESSAGE
    assert not any(SCRAPER in w or "prometheus-key" in w for w in warnings), "never the values"
