"""Settings from XENT_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import Settings, get_settings


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
