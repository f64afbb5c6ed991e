"""The PostgreSQL these machines run (127.0.0.1:5432, trust auth, database ``test``).

Tests get a private schema, dropped afterwards, and skip with a message where no server answers.
``XENT_TEST_POSTGRES_URL`` points them at another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

__all__ = ["PG_URL", "pg_unavailable", "private_schema"]

PG_URL = os.environ.get("XENT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _engine() -> sa.Engine:
    return sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        connect_args={"connect_timeout": 3},
    )


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it answers."""
    engine = _engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:  # any failure: no usable server here
        return (
            f"no PostgreSQL reachable at {PG_URL} ({type(exc).__name__}); start it "
            "(pg_ctlcluster ... main start) or set XENT_TEST_POSTGRES_URL"
        )
    finally:
        engine.dispose()


@contextmanager
def private_schema() -> Iterator[str]:
    """A URL whose connections use a fresh schema of their own (dropped on exit)."""
    schema = f"xt_{uuid.uuid4().hex[:10]}"
    admin = _engine()
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
