"""The monitoring store over SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Tables: ``service.store.schema``; schema changes: Alembic (``service.store.migrate``), run when
the store opens. A batch, its flagged items and its four rollup rows are written in one
transaction, so a writer killed midway leaves nothing partial and rollups always equal the raw
rows they sum. Rollups are updated with an additive UPSERT (``ON CONFLICT DO UPDATE SET x = x +
excluded.x``), which several workers and replicas can run at once without losing or doubling an
update: PostgreSQL serialises the writers of one row on its row lock, SQLite serialises write
transactions. SQLite runs in WAL mode with a busy timeout.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from service.store.base import (
    Expired,
    FlaggedPage,
    StoredBatch,
    StreamInfo,
    decode_cursor,
    encode_cursor,
)
from service.store.kept import Kept, expire_items, write_kept
from service.store.labels import LabelCounts, apply_labels
from service.store.labelsums import expire_label_batches
from service.store.listing import items_page
from service.store.migrate import upgrade
from service.store.payload import FlaggedItems, decode, encode
from service.store.schema import (
    BIN_COLUMNS,
    COUNT_COLUMNS,
    LEVELS,
    SUM_COLUMNS,
    batches,
    flagged,
    health,
    label_batches,
    label_rollups,
    rollups,
)
from service.store.sums import StreamsTable, SumsTable, group_rows
from service.store.watchdog import Watchdog
from service.store.windows import Piece
from xentcore.feedback import LABEL_SUMS
from xentcore.summary import BatchSummary

__all__ = ["SqlStore", "engine_for"]

log = logging.getLogger("xent.store")

#: PostgreSQL advisory lock key held by the process running retention ("xret" in ASCII).
_RETENTION_LOCK = 0x78726574
_SCALARS = tuple(c for c in SUM_COLUMNS if not c.startswith("bin_"))
#: Flagged-item batches read per query while filling a page.
_PAGE_BATCHES = 64


#: The store's deadline when none is given (``XENT_STORE_TIMEOUT``'s default).
DEFAULT_TIMEOUT = 2.0


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


def summary_values(s: BatchSummary) -> dict[str, Any]:
    """The column values of a summary (bins spread over their 45 columns)."""
    out: dict[str, Any] = {name: getattr(s, name) for name in _SCALARS}
    for names, values in zip(
        BIN_COLUMNS, (s.bin_count, s.bin_confidence_sum, s.bin_correct_sum), strict=True
    ):
        out.update(zip(names, values, strict=True))
    for name in BIN_COLUMNS[0]:
        out[name] = int(out[name])
    return out


def summary_of(row: Mapping[str, Any] | sa.RowMapping) -> BatchSummary:
    """The summary held by a row of sums (SUM over no rows = NULL = 0)."""
    scalars: dict[str, Any] = {
        name: (int(row[name] or 0) if name in COUNT_COLUMNS else float(row[name] or 0.0))
        for name in _SCALARS
    }
    count, conf, correct = ([float(row[name] or 0.0) for name in names] for names in BIN_COLUMNS)
    return BatchSummary(
        **scalars, bin_count=count, bin_confidence_sum=conf, bin_correct_sum=correct
    )


def _rollup_upsert(dialect: str) -> sa.Insert:
    """``INSERT INTO xent_rollups ... ON CONFLICT (key) DO UPDATE SET x = x + excluded.x``."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(rollups)
    new, old = stmt.excluded, rollups.c
    lesser = sa.func.least if dialect == "postgresql" else sa.func.min
    greater = sa.func.greatest if dialect == "postgresql" else sa.func.max
    return stmt.on_conflict_do_update(
        index_elements=[old.stream, old.level, old.start, old.task],
        set_={
            "n_batches": old.n_batches + new.n_batches,
            "time_min": lesser(old.time_min, new.time_min),
            "time_max": greater(old.time_max, new.time_max),
            **{name: old[name] + new[name] for name in SUM_COLUMNS},
        },
    )


class SqlStore:
    """The monitoring store behind :class:`service.store.base.Store`."""

    def __init__(self, engine: Engine, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.engine = engine
        self.timeout = timeout
        upgrade(engine)
        self._dialect = engine.dialect.name
        self._upsert = _rollup_upsert(self._dialect)
        self._window_queries: dict[tuple[tuple[str, ...], bool, bool], Any] = {}
        #: id(query) -> (query, its SQL for the driver, its constant parameters): PostgreSQL
        #: reads of many numbers (:meth:`_fetch`); the query is kept so its id stays its own.
        self._compiled: dict[int, tuple[Any, str, dict[str, Any]]] = {}

    @classmethod
    def from_url(cls, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> SqlStore:
        return cls(engine_for(url, timeout), timeout=timeout)

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

    # -- writes ---------------------------------------------------------------------------

    def record(
        self,
        *,
        stream: str,
        task: str,
        summary: BatchSummary,
        flagged: FlaggedItems | None = None,
        idempotency_key: str | None = None,
        at: float | None = None,
        kept: Kept | None = None,
    ) -> bool:
        """Write one batch, its flagged items, its kept items (with the label sums of those
        labelled in it) and its rollups in one transaction.

        Returns True when written, False when ``idempotency_key`` was already recorded for this
        stream (a retried batch counts once). Raises on store errors (the caller counts them).
        The rollup UPSERT comes last, so the rows every writer of the stream updates stay
        locked (PostgreSQL) only from it to the commit.
        """
        now = time.time() if at is None else at
        values = summary_values(summary)
        try:
            with self._tx() as conn:
                inserted = conn.execute(
                    batches.insert(),
                    {
                        "stream": stream,
                        "time": now,
                        "task": task,
                        "idempotency_key": idempotency_key,
                        **values,
                    },
                ).inserted_primary_key
                assert inserted is not None
                if flagged is not None and len(flagged):
                    conn.execute(
                        _FLAGGED_INSERT,
                        {
                            "batch_id": inserted[0],
                            "stream": stream,
                            "time": now,
                            "n": len(flagged),
                            "payload": encode(flagged),
                        },
                    )
                if kept is not None:
                    write_kept(conn, stream=stream, time=now, item=kept)
                conn.execute(self._upsert, _rollup_rows(stream, task, now, values))
        except sa.exc.IntegrityError:
            if idempotency_key is None or not self._has_key(stream, idempotency_key):
                raise
            return False
        return True

    def record_many(
        self, *, stream: str, task: str, batches_at: Sequence[tuple[float, BatchSummary]]
    ) -> int:
        """Write many batches of one stream (no flagged items, no idempotency keys) in one
        transaction (no deadline: it is not a request's): one multi-row insert and one UPSERT
        per rollup row touched.

        The bulk path of imports and benchmarks; the rollups end up exactly as if each batch
        had been recorded alone (the same sums, added per rollup row first). Returns the count.
        """
        if not batches_at:
            return 0
        rows: list[dict[str, Any]] = []
        groups: dict[tuple[int, int], dict[str, Any]] = {}
        for t, summary in batches_at:
            values = summary_values(summary)
            rows.append({"stream": stream, "time": t, "task": task, **values})
            for row in _rollup_rows(stream, task, t, values):
                key = (row["level"], row["start"])
                groups[key] = row if key not in groups else _merge_rollup(groups[key], row)
        with self._connection(begin=True, bulk=True) as conn:
            conn.execute(batches.insert(), rows)
            ordered = sorted(groups.items(), key=lambda kv: (_LEVEL_ORDER[kv[0][0]], kv[0][1]))
            conn.execute(self._upsert, [row for _, row in ordered])
        return len(rows)

    def _has_key(self, stream: str, key: str) -> bool:
        with self._connection() as conn:
            q = sa.select(batches.c.id).where(
                batches.c.stream == stream, batches.c.idempotency_key == key
            )
            return conn.execute(q).first() is not None

    # -- windowed reads -------------------------------------------------------------------

    def has_stream(self, stream: str) -> bool:
        """True when the stream has lifetime totals (it was recorded and has not expired)."""
        q = sa.select(rollups.c.n_batches).where(rollups.c.stream == stream, rollups.c.level == 0)
        with self._connection() as conn:
            return conn.execute(q.limit(1)).first() is not None

    def first_time(self, stream: str, before: float) -> float | None:
        """The time of the stream's oldest retained batch, when it is before ``before``."""
        q = sa.select(sa.func.min(rollups.c.time_min)).where(
            rollups.c.stream == stream,
            rollups.c.level == LEVELS[0],
            rollups.c.start < before,
        )
        with self._connection() as conn:
            found = conn.execute(q).scalar()
        return None if found is None or found >= before else float(found)

    def sums(
        self, stream: str, pieces: Sequence[Piece], width: float | None, *, labels: bool = False
    ) -> SumsTable:
        """The sums of ``pieces`` per bucket ``floor(start / width)`` (0 without a width): the
        batch sums (``SUM_COLUMNS``), or with ``labels`` the label sums (``LABEL_SUMS``, from
        ``xent_label_batches`` / ``xent_label_rollups``).

        One query (a UNION ALL of one aggregate per piece, its statement built once per shape
        and cached); rows of one bucket from several pieces or tasks are added in numpy.
        """
        if not pieces:
            return group_rows([], len(LABEL_SUMS) if labels else None)
        shape = (tuple(_kind(p, width) for p in pieces), width is None, labels)
        query = self._window_queries.get(shape)
        if query is None:
            query = self._window_query(*shape)
            self._window_queries[shape] = query
        params: dict[str, Any] = {"stream": stream}
        for i, p in enumerate(pieces):
            raw = p.level is None
            params[f"lo{i}"] = p.lo if raw else int(p.lo)
            params[f"hi{i}"] = p.hi if raw else int(p.hi)
            if not raw:
                params[f"level{i}"] = p.level
        if width is not None:
            params["width"] = width
            params["iwidth"] = int(width)
        with self._connection() as conn:
            rows = self._fetch(conn, query, params)
        return group_rows(rows, len(LABEL_SUMS) if labels else None)

    def _fetch(self, conn: Connection, query: Any, params: dict[str, Any]) -> list[Any]:
        """The rows of a read of many numbers (``query`` built once and reused).

        On PostgreSQL through the driver's own cursor in binary format: each float8 then
        arrives as 8 bytes loaded in C instead of text parsed value by value (a summary of 720
        hourly buckets carries 71 x 721 values: 24 ms of fetching in text, 11 ms in binary).
        SQLAlchemy has no per-statement switch for it. A driver error invalidates the pooled
        connection before it propagates, as SQLAlchemy would.
        """
        if self._dialect != "postgresql":
            return [tuple(r) for r in conn.execute(query, params)]
        compiled = self._compiled.get(id(query))
        if compiled is None:
            c = query.compile(dialect=self.engine.dialect)
            fixed = {k: v for k, v in c.params.items() if v is not None}
            compiled = self._compiled[id(query)] = (query, str(c), fixed)
        _, sql, fixed = compiled
        raw = conn.connection.driver_connection
        assert raw is not None
        try:
            with raw.cursor() as cursor:
                cursor.execute(sql, {**fixed, **params}, binary=True)
                rows: list[Any] = cursor.fetchall()
                return rows
        except Exception:
            conn.invalidate()
            raise

    def _window_query(self, kinds: tuple[str, ...], no_width: bool, labels: bool) -> Any:
        selects = [self._piece_select(i, kind, no_width, labels) for i, kind in enumerate(kinds)]
        return selects[0] if len(selects) == 1 else _union_all(selects)

    def _piece_select(self, i: int, kind: str, no_width: bool, labels: bool = False) -> Any:
        """Piece ``i``'s aggregate: ``k`` (bucket), ``n_batches`` and every summed column, with
        bound parameters ``stream``, ``lo{i}``, ``hi{i}`` (``level{i}``) and ``width``.

        A piece of rollups as wide as the buckets (``kind`` "rows") needs no SQL aggregate: its
        rows are the buckets (one per task), added up in numpy by :func:`group_rows`.
        """
        raw = kind == "raw"
        n: Any
        lo: Any = sa.bindparam(f"lo{i}")
        hi: Any = sa.bindparam(f"hi{i}")
        columns = LABEL_SUMS if labels else SUM_COLUMNS
        raw_table = label_batches if labels else batches
        rollup_table = label_rollups if labels else rollups
        if raw:
            table, n = raw_table, sa.func.count()
            where = [
                table.c.stream == sa.bindparam("stream"),
                table.c.time >= lo,
                table.c.time < hi,
            ]
            key = None if no_width else self._floor_div(table.c.time, sa.bindparam("width"))
        else:
            table = rollup_table
            n = sa.func.count() if labels else sa.func.sum(rollups.c.n_batches)
            where = [
                table.c.stream == sa.bindparam("stream"),
                table.c.level == sa.bindparam(f"level{i}"),
                table.c.start >= lo,
                table.c.start < hi,
            ]
            key = None if no_width else table.c.start // sa.bindparam("iwidth", type_=sa.BigInteger)
        if kind == "rows":  # only with a width, so there is a key
            assert key is not None
            plain = [table.c[name] for name in columns]
            count = sa.literal_column("1") if labels else table.c.n_batches
            return sa.select(key, count, *plain).where(*where)
        # as float8: PostgreSQL sums bigints as numeric (Python Decimal, slow to convert); counts
        # stay exact below 2**53
        zero: Any = sa.literal_column("0")
        sums = [
            sa.cast(sa.func.coalesce(sa.func.sum(table.c[name]), zero), sa.Float(53))
            for name in columns
        ]
        n_rows = sa.cast(sa.func.coalesce(n, zero), sa.Float(53))
        if key is None:
            return sa.select(sa.literal_column("0"), n_rows, *sums).where(*where)
        return sa.select(key, n_rows, *sums).where(*where).group_by(key)

    def _floor_div(self, column: Any, width: Any) -> Any:
        """floor(column / width) as an integer (SQLite: CAST truncates; times are positive)."""
        if self._dialect == "postgresql":
            return sa.cast(sa.func.floor(column / width), sa.BigInteger)
        return sa.cast(column / width, sa.Integer)

    def streams(self) -> StreamsTable:
        """Every stream with its lifetime totals (the rollups' level 0, read through the
        ``(level, start)`` index), by name: O(streams)."""
        with self._connection() as conn:
            rows = self._fetch(conn, _STREAMS, {})
        infos: list[StreamInfo] = []
        keys: list[int] = []
        for stream, task, seen, n, *_ in rows:
            name = str(stream)
            if infos and infos[-1].stream == name:
                prev = infos[-1]
                infos[-1] = StreamInfo(
                    name,
                    max(prev.last_seen, float(seen)),
                    prev.n_batches + int(n),
                    tuple(sorted({*prev.tasks, str(task)})),
                )
            else:
                infos.append(StreamInfo(name, float(seen), int(n), (str(task),)))
            keys.append(len(infos) - 1)
        table = group_rows([(k, row[3], *row[4:]) for k, row in zip(keys, rows, strict=True)])
        return StreamsTable(infos, table)

    def stream_names(self) -> list[StreamInfo]:
        """Every stream, by name: last-seen time, batch count and the tasks it holds."""
        return self.streams().infos

    def batches_in(
        self, stream: str, since: float | None = None, until: float | None = None
    ) -> list[StoredBatch]:
        """Every retained raw batch row of ``stream`` with since <= time < until, oldest first
        (tests and tools; the API reads rollups)."""
        q = sa.select(batches).where(batches.c.stream == stream).order_by(batches.c.time)
        if since is not None:
            q = q.where(batches.c.time >= since)
        if until is not None:
            q = q.where(batches.c.time < until)
        with self._connection() as conn:
            rows = conn.execute(q).mappings().all()
        return [StoredBatch(float(r["time"]), str(r["task"]), summary_of(r)) for r in rows]

    # -- flagged items --------------------------------------------------------------------

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> FlaggedPage:
        """Flagged items of ``stream``, newest first, and the cursor of the next page.

        Batches follow their row id downwards and the items of a batch their index downwards;
        the cursor is (batch id, items of that batch already shown), so rows written while a
        client pages never shift a page. Raises :class:`InvalidCursor` for a cursor not made
        here.
        """
        at_batch, skip = decode_cursor(cursor) if cursor is not None else (None, 0)
        items: list[dict[str, Any]] = []
        last: tuple[int, int] | None = None
        for batch_id, t, payload in self._flagged_batches(stream, since, at_batch):
            page = decode(payload)
            start = skip if batch_id == at_batch else 0
            take = min(len(page) - start, limit - len(items))
            rows = len(page) - 1 - start - np.arange(max(take, 0), dtype=np.intp)
            items.extend(_flagged_dicts(page, rows, t))
            if len(items) >= limit:
                last = (batch_id, start + take)
                more = start + take < len(page) or self._older_flagged(stream, since, batch_id)
                return items, (encode_cursor(*last) if more else None)
        return items, None

    def _flagged_batches(
        self, stream: str, since: float | None, at_batch: int | None
    ) -> Iterable[tuple[int, float, bytes]]:
        """(batch id, time, payload) of the stream's flagged batches, newest first, read
        ``_PAGE_BATCHES`` at a time."""
        upper = at_batch
        while True:
            q = sa.select(flagged.c.batch_id, flagged.c.time, flagged.c.payload).where(
                flagged.c.stream == stream
            )
            if since is not None:
                q = q.where(flagged.c.time >= since)
            if upper is not None:
                q = q.where(flagged.c.batch_id <= upper)
            q = q.order_by(flagged.c.batch_id.desc()).limit(_PAGE_BATCHES)
            with self._connection() as conn:
                rows = conn.execute(q).all()
            for batch_id, t, payload in rows:
                yield int(batch_id), float(t), bytes(payload)
            if len(rows) < _PAGE_BATCHES:
                return
            upper = int(rows[-1][0]) - 1

    def _older_flagged(self, stream: str, since: float | None, batch_id: int) -> bool:
        q = sa.select(flagged.c.batch_id).where(
            flagged.c.stream == stream, flagged.c.batch_id < batch_id
        )
        if since is not None:
            q = q.where(flagged.c.time >= since)
        with self._connection() as conn:
            return conn.execute(q.limit(1)).first() is not None

    # -- feedback (API.md section 9) --------------------------------------------------------

    def label(self, stream: str, ids: Sequence[Any], labels: Sequence[Any]) -> LabelCounts:
        """Apply late labels to the stream's newest kept item of each id, all or nothing
        (:func:`service.store.labels.apply_labels`; ``LabelProblem`` writes nothing)."""
        with self._tx() as conn:
            return apply_labels(conn, stream=stream, ids=ids, labels=labels)

    def items(
        self,
        stream: str,
        *,
        since: float | None = None,
        until: float | None = None,
        audit: bool | None = None,
        labeled: bool | None = None,
        flagged: bool | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Kept items of ``stream``, newest first, filtered, and the cursor of the next page
        (:class:`InvalidCursor` for a cursor not made here)."""
        at = decode_cursor(cursor) if cursor is not None else None
        with self._connection() as conn:
            rows, last = items_page(
                conn,
                stream=stream,
                since=since,
                until=until,
                audit=audit,
                labeled=labeled,
                flagged=flagged,
                limit=limit,
                at=(at[0], at[1]) if at is not None else None,
            )
        return rows, None if last is None else encode_cursor(*last)

    # -- retention ------------------------------------------------------------------------

    def expire(
        self,
        *,
        now: float,
        retention: float,
        rollup_retention: float,
        item_retention: float | None = None,
        chunk: int = 1000,
        pause: float = 0.01,
    ) -> Expired:
        """Delete raw batch rows (their flagged items and label sums) older than ``retention``
        seconds, rollups (and label rollups) whose period ended more than ``rollup_retention``
        seconds ago, and kept items older than ``item_retention`` (default ``retention``).

        Deletes in transactions of at most ``chunk`` batches or ``chunk`` periods of one
        stream and level, sleeping ``pause`` between them, so writers wait at most one chunk.
        On PostgreSQL one process at a time runs it (an advisory lock; the others skip).
        """
        with self.engine.connect() as lock_conn:
            if not self._try_lock(lock_conn):
                return Expired(0, 0, skipped=True)
            try:
                n_batches = self._expire_batches(now - retention, chunk, pause)
                self._expire_label_batches(now - retention, chunk, pause)
                n_rollups = self._expire_rollups(now - rollup_retention, chunk, pause)
                n_rollups += self._expire_rollups(
                    now - rollup_retention, chunk, pause, table=label_rollups
                )
                keep = retention if item_retention is None else item_retention
                n_items = self._expire_items(now - keep, chunk, pause)
            finally:
                self._unlock(lock_conn)
        return Expired(n_batches, n_rollups, n_items)

    def _expire_label_batches(self, cutoff: float, chunk: int, pause: float) -> None:
        """Delete per-batch label sums older than ``cutoff`` (raw rows' retention), in chunks."""
        while True:
            with self._tx() as conn:
                more = expire_label_batches(conn, cutoff, chunk)
            if not more:
                return
            time.sleep(pause)

    def _expire_items(self, cutoff: float, chunk: int, pause: float) -> int:
        deleted = 0
        while True:
            with self._tx() as conn:
                n, more = expire_items(conn, cutoff, chunk)
            deleted += n
            if not more:
                return deleted
            time.sleep(pause)

    def _try_lock(self, conn: Connection) -> bool:
        if self._dialect != "postgresql":
            return True
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _RETENTION_LOCK})
        conn.commit()
        return bool(got.scalar())

    def _unlock(self, conn: Connection) -> None:
        if self._dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _RETENTION_LOCK})
            conn.commit()

    def _expire_batches(self, cutoff: float, chunk: int, pause: float) -> int:
        deleted = 0
        while True:
            with self._tx() as conn:
                ids = (
                    conn.execute(
                        sa.select(batches.c.id)
                        .where(batches.c.time < cutoff)
                        .order_by(batches.c.time)
                        .limit(chunk)
                    )
                    .scalars()
                    .all()
                )
                if ids:
                    conn.execute(flagged.delete().where(flagged.c.batch_id.in_(ids)))
                    conn.execute(batches.delete().where(batches.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < chunk:
                return deleted
            time.sleep(pause)

    def _expire_rollups(
        self, cutoff: float, chunk: int, pause: float, *, table: sa.Table = rollups
    ) -> int:
        """Delete rollups whose period ended before ``cutoff``, level by level in chunks of
        about ``chunk`` rows (found through the ``(level, start)`` index, whatever the number
        of streams), then the lifetime totals of streams with nothing newer."""
        deleted = 0
        for level in LEVELS:
            end = math.floor(cutoff / level) * level - level  # start + level <= cutoff
            while True:
                n, more = self._expire_chunk(level, end, chunk, table)
                deleted += n
                if not more:
                    break
                time.sleep(pause)
        if table is not rollups:  # label rollups: lifetime totals stay while the stream does
            with self._tx() as conn:
                gone = conn.execute(
                    table.delete().where(
                        table.c.level == 0,
                        ~sa.exists().where(
                            rollups.c.stream == table.c.stream, rollups.c.level == 0
                        ),
                    )
                ).rowcount
            return deleted + int(gone)
        with self._tx() as conn:
            gone = conn.execute(
                rollups.delete().where(rollups.c.level == 0, rollups.c.time_max < cutoff)
            ).rowcount
        return deleted + int(gone)

    def _expire_chunk(self, level: int, end: int, chunk: int, table: sa.Table) -> tuple[int, bool]:
        """Delete the oldest ``level`` rows of ``table`` (rollups or label rollups) with start
        <= end, about ``chunk`` of them (all rows of the boundary start go together); returns
        (deleted, more left)."""
        level_rows = (table.c.level == level, table.c.start <= end)
        with self._tx() as conn:
            bound = conn.execute(
                sa.select(table.c.start)
                .where(*level_rows)
                .order_by(table.c.start)
                .offset(chunk)
                .limit(1)
            ).scalar()
            if bound is None:
                gone: int = conn.execute(table.delete().where(*level_rows)).rowcount
                return gone, False
            gone = conn.execute(
                table.delete().where(table.c.level == level, table.c.start < bound)
            ).rowcount
            if gone == 0:  # more than `chunk` rows share the oldest start: take that start whole
                gone = conn.execute(
                    table.delete().where(table.c.level == level, table.c.start == bound)
                ).rowcount
            return gone, True


_FLAGGED_INSERT = flagged.insert()
#: The one thread that ends store calls past their deadline.
_WATCHDOG = Watchdog()


#: The lifetime rows (level 0) of every stream and task, by stream.
_STREAMS = (
    sa.select(
        rollups.c.stream,
        rollups.c.task,
        rollups.c.time_max,
        rollups.c.n_batches,
        *(rollups.c[name] for name in SUM_COLUMNS),
    )
    .where(rollups.c.level == sa.literal_column("0"))
    .order_by(rollups.c.stream, rollups.c.task)
)


def _kind(piece: Piece, width: float | None) -> str:
    """How a piece is read: "raw" rows, "rows" of rollups as wide as a bucket, or "sum"."""
    if piece.level is None:
        return "raw"
    if width is not None and int(width) == piece.level:
        return "rows"
    return "sum"


def _union_all(selects: list[Any]) -> Any:
    """``UNION ALL`` of the selects (typed Any: mypy cannot expand SQLAlchemy's generics here)."""
    union: Any = sa.union_all
    return union(*selects)


def _rollup_rows(
    stream: str, task: str, now: float, values: dict[str, Any]
) -> list[dict[str, Any]]:
    """The batch's four rollup rows, in one fixed order (lifetime, day, hour, minute), so that
    writers of one stream always lock its rows in the same order (no deadlock)."""
    starts = [(0, 0), *((level, math.floor(now / level) * level) for level in LEVELS)]
    return [
        {
            "stream": stream,
            "level": level,
            "start": start,
            "task": task,
            "n_batches": 1,
            "time_min": now,
            "time_max": now,
            **values,
        }
        for level, start in starts
    ]


#: Rollup rows are locked lifetime first, then day, hour, minute (every writer: same order).
_LEVEL_ORDER = {level: i for i, level in enumerate((0, *LEVELS))}


def _merge_rollup(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two rollup rows of one key added (what the UPSERT does in SQL)."""
    out = dict(a)
    out["n_batches"] = a["n_batches"] + b["n_batches"]
    out["time_min"] = min(a["time_min"], b["time_min"])
    out["time_max"] = max(a["time_max"], b["time_max"])
    for name in SUM_COLUMNS:
        out[name] = a[name] + b[name]
    return out


def _nan_none(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]


def _flagged_dicts(page: FlaggedItems, rows: Any, t: float) -> list[dict[str, Any]]:
    """The API's flagged-item dicts of ``page``'s items at ``rows``."""
    rows_list = rows.tolist()
    index = page.index[rows].tolist()
    confidence = _nan_none(page.confidence[rows].tolist())
    loss = _nan_none(page.loss[rows].tolist()) if page.loss is not None else [None] * len(rows_list)
    reasons = page.reason_lists(rows)
    predicted = page.shown(page.predicted, rows)
    label = page.shown(page.label, rows)
    ids = page.id_list(rows)
    return [
        {
            "time": t,
            "id": ids[j],
            "index": index[j],
            "confidence": confidence[j],
            "loss": loss[j],
            "predicted": predicted[j],
            "label": label[j],
            "reasons": reasons[j],
        }
        for j in range(len(rows_list))
    ]
