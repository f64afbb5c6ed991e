"""Connections to the monitoring store: the engine for a URL, and every store call under its
deadline (``XENT_STORE_TIMEOUT``): engine connect, pool checkout and statement timeouts, and a
watchdog that ends a call to a server that stopped answering."""

from __future__ import annotations

import logging
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from service.store.schema import health
from service.store.watchdog import Watchdog

__all__ = ["DEFAULT_TIMEOUT", "Connected", "engine_for"]

log = logging.getLogger("xent.store")

#: The store's deadline when none is given (``XENT_STORE_TIMEOUT``'s default).
DEFAULT_TIMEOUT = 2.0
#: The one thread that ends store calls past their deadline.
_WATCHDOG = Watchdog()


def _sqlite_pragmas(timeout: float) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def engine_for(url: str, timeout: float = DEFAULT_TIMEOUT) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://...`` (psycopg 3 driver) whose every
    wait is bounded by ``timeout`` seconds: SQLite's busy timeout; PostgreSQL's connect timeout
    (libpq counts whole seconds, at least 2), pool checkout and server-side
    ``statement_timeout`` (a live server ends a statement waiting on a lock). A server that
    hangs altogether is the store's watchdog's business (:meth:`SqlStore._connection`)."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": timeout})
        sa.event.listen(engine, "connect", _sqlite_pragmas(timeout))
        return engine
    options = sa.engine.make_url(url).query.get("options", "")
    if not isinstance(options, str):  # given twice in the URL: keep the last
        options = options[-1]
    statement = f"-c statement_timeout={max(1, int(timeout * 1000))}"
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeout,
        connect_args={
            "connect_timeout": max(2, math.ceil(timeout)),
            "options": f"{options} {statement}".strip(),
        },
    )


def _abort(conn: Connection) -> None:
    """End whatever ``conn`` is waiting for, from another thread: SQLite's ``interrupt()``;
    for PostgreSQL, shut the socket down (a hung server never answers a cancel request), so the
    blocked call fails at once and the pool drops the connection."""
    try:
        raw = conn.connection.dbapi_connection
        if raw is None:
            return
        if isinstance(raw, sqlite3.Connection):
            raw.interrupt()
            return
        fd = raw.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        log.error("store operation past its deadline: connection shut down")
    except Exception:  # already closed, or a driver without these: nothing to end
        log.debug("store watchdog found nothing to end", exc_info=True)


class Connected:
    """An engine and its connections under the store's deadline: what every part of
    :class:`service.store.sql.SqlStore` reads and writes through."""

    def __init__(self, engine: Engine, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.engine = engine
        self.timeout = timeout
        self._dialect = engine.dialect.name

    @contextmanager
    def _connection(self, *, begin: bool = False, bulk: bool = False) -> Iterator[Connection]:
        """A pooled connection (in a transaction with ``begin``) under the store's deadline:
        past ``timeout`` seconds a watchdog ends what it waits for (:func:`_abort`), so no
        store call outlives its deadline by more than the driver's reaction. ``bulk`` (a
        transaction of an import, not of a request) has no deadline."""
        if bulk:
            with self.engine.begin() as conn:
                if self._dialect == "postgresql":
                    conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
                yield conn
            return
        with self.engine.connect() as conn:
            token = _WATCHDOG.arm(self.timeout, lambda: _abort(conn))
            try:
                if begin:
                    with conn.begin():
                        yield conn
                else:
                    yield conn
            finally:
                _WATCHDOG.disarm(token)

    def _tx(self) -> Any:
        return self._connection(begin=True)

    def ping(self) -> bool:
        """True when the store can write: one small write (``xent_health``), so a store that
        answers reads but cannot write (a full disk, a read-only replica) is not ready."""
        try:
            with self._tx() as conn:
                conn.execute(health.update().where(health.c.id == 1).values(at=time.time()))
            return True
        except Exception:  # any driver error means "not ready"
            log.warning("store ping (a write) failed", exc_info=True)
            return False

    def close(self) -> None:
        self.engine.dispose()
