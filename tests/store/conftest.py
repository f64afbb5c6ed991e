"""Fixtures of the store tests: one store per backend (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.store.sql import SqlStore
from tests.support.postgres import pg_unavailable, private_schema


@pytest.fixture(scope="module")
def pg_schema_url() -> Iterator[str]:
    """A private schema in the test database, dropped afterwards."""
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with private_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/xent.db"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    """A store on ``url``, emptied afterwards (the PostgreSQL schema is shared by a module)."""
    s = SqlStore.from_url(url)
    yield s
    with s.engine.begin() as conn:
        for table in (
            "xent_flagged",
            "xent_batches",
            "xent_rollups",
            "xent_kept",
            "xent_item_keys",
            "xent_kept_pending",
            "xent_item_labels",
            "xent_label_batches",
            "xent_label_rollups",
        ):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    s.close()
