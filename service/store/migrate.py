"""Schema migrations of the monitoring store, run by Alembic under a lock.

:func:`upgrade` brings a database to the newest revision (``service/store/migrations``):
a new database gets every revision; a database that the first release created (its tables and
``xent_schema_version`` = 1, no Alembic version) is stamped with the baseline ``0001`` and
upgraded in place. The service runs it when the store opens, ``xent db upgrade`` runs it by hand.

Several processes (workers, replicas) may open the store at once. PostgreSQL serialises them on
an advisory lock held by the migrating transaction; SQLite on ``BEGIN IMMEDIATE`` (the database's
write lock, taken before the version is read). The losers then find the schema current.
A database at a revision this code does not know (made by a newer release) is refused.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from service.store.schema import SCHEMA_VERSION

__all__ = ["VERSION_TABLE", "SchemaTooNew", "current_revision", "head_revision", "upgrade"]

log = logging.getLogger("xent.store")

#: Alembic's version table, named for this project so it never meets an application's own.
VERSION_TABLE = "xent_alembic_version"
#: PostgreSQL advisory lock key held while migrating ("xent" in ASCII).
_MIGRATION_LOCK = 0x78656E74
#: How long a process opening a SQLite store waits for another one migrating it (ms).
_SQLITE_WAIT_MS = 600_000
#: SQLite's ALTER TABLE ... DROP COLUMN (revision 0002) needs 3.35.
_SQLITE_MIN = (3, 35, 0)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    location = resources.files("service.store").joinpath("migrations")
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision (None: not under Alembic yet)."""
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that holds the migration lock; committed on exit."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            with conn.begin():
                # a migration may take longer than the store's statement deadline
                conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                yield conn
            return
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {_SQLITE_WAIT_MS}")  # wait for a migrator
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite: we own the transaction
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy or 0)}")


def _check(conn: Connection) -> str | None:
    """The current revision; :class:`SchemaTooNew` for a revision or version from the future."""
    names = set(sa.inspect(conn).get_table_names())
    if "xent_schema_version" in names:
        found = conn.execute(sa.text("SELECT max(version) FROM xent_schema_version")).scalar()
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"store schema version {found} is newer than this service ({SCHEMA_VERSION}); "
                "upgrade the service"
            )
    revision = current_revision(conn) if VERSION_TABLE in names else None
    if revision is not None:
        known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
        if revision not in known:
            raise SchemaTooNew(
                f"store schema revision {revision!r} is newer than this service "
                f"(head {head_revision()!r}); upgrade the service"
            )
    elif "xent_batches" in names:
        return "v1"
    return revision


def upgrade(engine: Engine, *, attempts: int = 8) -> bool:
    """Bring the store's schema to the newest revision; True when something was applied.

    SQLite databases created at the same moment by several processes may still race on the
    very first ``BEGIN IMMEDIATE`` (a busy error); those are retried.
    """
    if engine.dialect.name == "sqlite" and sqlite3.sqlite_version_info < _SQLITE_MIN:
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} is too old for the store (needs 3.35 or newer)"
        )
    for attempt in range(attempts):
        try:
            return _upgrade_once(engine)
        except sa.exc.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return False  # pragma: no cover - the loop returns or raises


def _upgrade_once(engine: Engine) -> bool:
    with _locked(engine) as conn:
        found = _check(conn)
        head = head_revision()
        if found == head:
            return False
        cfg = _config(conn)
        if found == "v1":
            log.info("store created by the first release: stamping it 0001 to upgrade in place")
            command.stamp(cfg, "0001")
        log.info("upgrading the store schema from %s to %s", found or "nothing", head)
        command.upgrade(cfg, "head")
        return True
