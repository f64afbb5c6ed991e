"""Fixtures of the service tests: apps built with their own settings, and clients for them.

Every app gets a temporary ``data_dir`` so no test writes a store into the working tree.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.settings import Settings
from tests.support.postgres import pg_unavailable, private_schema

with warnings.catch_warnings():
    # starlette asks for the httpx2 package; the TestClient works the same with httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]

MakeClient = Callable[..., TestClient]


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """``settings_for(**overrides)``: Settings with a temporary data directory."""

    def make(**overrides: Any) -> Settings:
        return Settings(data_dir=tmp_path / "data", **overrides)

    return make


@pytest.fixture
def make_client(settings_for: Callable[..., Settings]) -> Iterator[MakeClient]:
    """``make_client(**overrides)``: a started TestClient of a fresh app (stopped at teardown)."""
    opened: list[TestClient] = []

    def make(*, raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
        client = TestClient(
            create_app(settings_for(**overrides)), raise_server_exceptions=raise_server_exceptions
        )
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    """A client of an app with the default settings."""
    return make_client()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_client(request: pytest.FixtureRequest, make_client: MakeClient) -> Iterator[TestClient]:
    """A client of an app on each store: its SQLite default, and a private PostgreSQL schema
    (skipped when no PostgreSQL answers)."""
    if request.param == "sqlite":
        yield make_client()
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with private_schema() as url:
        yield make_client(database_url=url)
