"""Windowed reads of the monitoring store: the sums of a window's pieces per bucket (batch sums
or label sums), every stream's lifetime totals, and the raw rows (tests and tools)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.store.base import StoredBatch, StreamInfo
from service.store.connections import Connected
from service.store.schema import LEVELS, SUM_COLUMNS, batches, label_batches, label_rollups, rollups
from service.store.sums import StreamsTable, SumsTable, group_rows, summary_of
from service.store.windows import Piece
from xentcore.feedback import LABEL_SUMS

__all__ = ["WindowReads"]


class WindowReads(Connected):
    """The read side of :class:`service.store.sql.SqlStore`."""

    #: (piece kinds, no width, labels) -> the window's query, built once per shape.
    _window_queries: dict[tuple[tuple[str, ...], bool, bool], Any]
    #: id(query) -> (query, its SQL for the driver, its constant parameters): PostgreSQL
    #: reads of many numbers (:meth:`_fetch`); the query is kept so its id stays its own.
    _compiled: dict[int, tuple[Any, str, dict[str, Any]]]

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
