"""Settings from XENT_* environment variables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import Settings, get_settings, unknown_variables


def test_defaults(monkeypatch: Any) -> None:
    s = Settings()
    assert (s.host, s.port, s.workers, s.log_level) == ("127.0.0.1", 8000, 1, "info")
    assert s.database_url is None and s.data_dir == Path("data")
    assert s.api_keys == [] and s.cors_origins == []
    assert s.max_body_bytes == 64 * 2**20
    assert (s.max_items, s.max_elements) == (1_000_000, 50_000_000)
    assert (s.min_confidence, s.sum_tolerance, s.max_concurrency) == (0.5, 1e-4, 8)
    assert s.max_streams == 1000


def test_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("XENT_API_KEYS", " k1, k2 ,,")
    monkeypatch.setenv("XENT_CORS_ORIGINS", "https://a.example")
    monkeypatch.setenv("XENT_PORT", "9001")
    monkeypatch.setenv("XENT_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("XENT_MIN_CONFIDENCE", "0.7")
    s = Settings()
    assert s.api_keys == ["k1", "k2"] and s.cors_origins == ["https://a.example"]
    assert (s.port, s.log_level, s.min_confidence) == (9001, "debug", 0.7)
    assert "k1" not in repr(s)


def test_invalid_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("XENT_MIN_CONFIDENCE", "2")
    with pytest.raises(ValidationError):
        Settings()


def test_get_settings_is_cached() -> None:
    get_settings.cache_clear()
    assert get_settings() is get_settings()
    get_settings.cache_clear()


def test_cors(make_client: Any) -> None:
    client = make_client(cors_origins="https://app.example")
    response = client.options(
        "/v1/score",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("XENT_API_KEY", "XENT_API_KEYS"),
        ("XENT_DATABSE_URL", "XENT_DATABASE_URL"),
        ("XENT_MAX_ITEM", "XENT_MAX_ITEMS"),
        ("xent_worker", "XENT_WORKERS"),
        ("XENT_CORS_ORIGIN", "XENT_CORS_ORIGINS"),
    ],
)
def test_a_typo_is_named_with_the_setting_meant(name: str, meant: str) -> None:
    assert unknown_variables({name: "1"}) == [
        f"{name} is not a setting (did you mean {meant}?); it is ignored"
    ]


def test_a_name_far_from_any_setting_points_to_the_readme() -> None:
    (message,) = unknown_variables({"XENT_QUUX": "1", "PATH": "/bin", "XENTX": "1"})
    assert message.startswith("XENT_QUUX is not a setting (see the README's Settings)")


def test_every_setting_and_the_reserved_names_pass_quietly() -> None:
    environ = {f"XENT_{name.upper()}": "1" for name in Settings.model_fields}
    environ |= {"xent_port": "1", "XENT_TEST_CHROMIUM": "x", "XENT_PUBLISH": "127.0.0.1:8000"}
    assert unknown_variables(environ) == []


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/xent.db",
        "sqlite://",
        "SQLITE:///x.db",
        "postgresql://u@h:5432/db",
        "postgres://u@h/db",
        "postgresql+psycopg://u@h/db",
    ],
)
def test_supported_database_urls(url: str) -> None:
    assert Settings(database_url=url).database_url == url


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://u:secret@h/db", "unsupported scheme 'mysql'"),
        ("redis://h:6379/0", "unsupported scheme 'redis'"),
        ("/var/lib/xent.db", "no scheme found"),
        ("://h/db", "no scheme found"),
    ],
)
def test_unsupported_database_url_names_the_scheme(url: str, named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(database_url=url)
    (err,) = caught.value.errors(include_input=False)
    assert err["loc"] == ("database_url",) and named in err["msg"]
    assert "secret" not in str(err)


def test_the_app_logs_unknown_variables_at_start(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XENT_API_KEY", "typo")
    with caplog.at_level(logging.INFO, logger="service"):
        make_client()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "service"]
    typo = "XENT_API_KEY is not a setting (did you mean XENT_API_KEYS?); it is ignored"
    assert (logging.WARNING, typo) in messages
    assert (logging.INFO, "no XENT_API_KEYS: every route is open to this host") in messages


def test_an_open_service_on_a_network_interface_is_a_warning(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service"):
        make_client(host="0.0.0.0")
    opened = [r for r in caplog.records if "every route is open" in r.getMessage()]
    assert [r.levelno for r in opened] == [logging.WARNING]
    assert "anyone who can reach it" in opened[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="service"):
        make_client(host="0.0.0.0", api_keys=["k"])
    assert not [r for r in caplog.records if "every route is open" in r.getMessage()]
