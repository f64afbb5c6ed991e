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
    StreamTotals,
    Sums,
    decode_cursor,
    encode_cursor,
)
from service.store.migrate import upgrade
from service.store.payload import FlaggedItems, decode, encode
from service.store.schema import (
    BIN_COLUMNS,
    COUNT_COLUMNS,
    LEVELS,
    SUM_COLUMNS,
    batches,
    flagged,
    rollups,
)
from service.store.windows import Piece
from xentcore.summary import BatchSummary

__all__ = ["SqlStore", "engine_for"]

log = logging.getLogger("xent.store")

#: PostgreSQL advisory lock key held by the process running retention ("xret" in ASCII).
_RETENTION_LOCK = 0x78726574
_SCALARS = tuple(c for c in SUM_COLUMNS if not c.startswith("bin_"))
#: Flagged-item batches read per query while filling a page.
_PAGE_BATCHES = 64


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def engine_for(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://...`` (psycopg 3 driver)."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 5.0})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5}
    )


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

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine)
        self._dialect = engine.dialect.name
        self._upsert = _rollup_upsert(self._dialect)

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(engine_for(url))

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # any driver error means "not ready"
            log.warning("store ping failed", exc_info=True)
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
    ) -> bool:
        """Write one batch, its flagged items and its rollups in one transaction.

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
        transaction: one multi-row insert and one UPSERT per rollup row touched.

        The bulk path of imports and benchmarks; the rollups end up exactly as if each batch
        had been recorded alone (the same sums, added per rollup row first). Returns the count.
        """
        if not batches_at:
            return 0
        rows, groups = [], {}
        for t, summary in batches_at:
            values = summary_values(summary)
            rows.append({"stream": stream, "time": t, "task": task, **values})
            for row in _rollup_rows(stream, task, t, values):
                key = (row["level"], row["start"])
                groups[key] = row if key not in groups else _merge_rollup(groups[key], row)
        with self._tx() as conn:
            conn.execute(batches.insert(), rows)
            ordered = sorted(groups.items(), key=lambda kv: (_LEVEL_ORDER[kv[0][0]], kv[0][1]))
            conn.execute(self._upsert, [row for _, row in ordered])
        return len(rows)

    def _has_key(self, stream: str, key: str) -> bool:
        with self.engine.connect() as conn:
            q = sa.select(batches.c.id).where(
                batches.c.stream == stream, batches.c.idempotency_key == key
            )
            return conn.execute(q).first() is not None

    # -- windowed reads -------------------------------------------------------------------

    def has_stream(self, stream: str) -> bool:
        """True when the stream has lifetime totals (it was recorded and has not expired)."""
        q = sa.select(rollups.c.n_batches).where(rollups.c.stream == stream, rollups.c.level == 0)
        with self.engine.connect() as conn:
            return conn.execute(q.limit(1)).first() is not None

    def first_time(self, stream: str, before: float) -> float | None:
        """The time of the stream's oldest retained batch, when it is before ``before``."""
        q = sa.select(sa.func.min(rollups.c.time_min)).where(
            rollups.c.stream == stream,
            rollups.c.level == LEVELS[0],
            rollups.c.start < before,
        )
        with self.engine.connect() as conn:
            found = conn.execute(q).scalar()
        return None if found is None or found >= before else float(found)

    def sums(self, stream: str, pieces: Sequence[Piece], width: float | None) -> dict[int, Sums]:
        """The sums of ``pieces`` per bucket ``floor(start / width)`` (0 without a width).

        One query (a UNION ALL of one aggregate per piece); rows of one bucket from several
        pieces or tasks are added here.
        """
        if not pieces:
            return {}
        selects = [self._piece_select(stream, p, width) for p in pieces]
        query: Any = selects[0]
        if len(selects) > 1:
            query = _union_all(selects)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        out: dict[int, Sums] = {}
        for row in rows:
            n = int(row["n_batches"] or 0)
            if n == 0:
                continue
            key = int(row["k"])
            part = Sums(n, summary_of(row))
            out[key] = out[key] + part if key in out else part
        return out

    def _piece_select(self, stream: str, piece: Piece, width: float | None) -> Any:
        """One piece's aggregate: ``k`` (bucket), ``n_batches`` and every summed column."""
        n: Any
        if piece.level is None:
            table, n = batches, sa.func.count()
            where = [table.c.stream == stream, table.c.time >= piece.lo, table.c.time < piece.hi]
            key = None if width is None else self._floor_div(table.c.time, width)
        else:
            table, n = rollups, sa.func.sum(rollups.c.n_batches)
            where = [
                table.c.stream == stream,
                table.c.level == piece.level,
                table.c.start >= int(piece.lo),
                table.c.start < int(piece.hi),
            ]
            key = None if width is None else table.c.start // int(width)
        sums = [sa.func.sum(table.c[name]).label(name) for name in SUM_COLUMNS]
        if key is None:
            return sa.select(
                sa.literal(0, sa.BigInteger).label("k"), n.label("n_batches"), *sums
            ).where(*where)
        return sa.select(key.label("k"), n.label("n_batches"), *sums).where(*where).group_by(key)

    def _floor_div(self, column: Any, width: float) -> Any:
        """floor(column / width) as an integer (SQLite: CAST truncates; times are positive)."""
        if self._dialect == "postgresql":
            return sa.cast(sa.func.floor(column / width), sa.BigInteger)
        return sa.cast(column / width, sa.Integer)

    def streams(self) -> list[StreamTotals]:
        """Every stream with its lifetime totals (the rollups' level 0), by name: O(streams)."""
        q = (
            sa.select(rollups)
            .where(rollups.c.level == 0)
            .order_by(rollups.c.stream, rollups.c.task)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out: list[StreamTotals] = []
        for row in rows:
            name, s = str(row["stream"]), summary_of(row)
            info = StreamInfo(
                name, float(row["time_max"]), int(row["n_batches"]), (str(row["task"]),)
            )
            if out and out[-1].info.stream == name:
                prev = out[-1]
                info = StreamInfo(
                    name,
                    max(prev.info.last_seen, info.last_seen),
                    prev.info.n_batches + info.n_batches,
                    tuple(sorted({*prev.info.tasks, *info.tasks})),
                )
                out[-1] = StreamTotals(info, prev.total + s)
            else:
                out.append(StreamTotals(info, s))
        return out

    def stream_names(self) -> list[StreamInfo]:
        """Every stream, by name: last-seen time, batch count and the tasks it holds."""
        return [t.info for t in self.streams()]

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
        with self.engine.connect() as conn:
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
            with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
            return conn.execute(q.limit(1)).first() is not None

    # -- retention ------------------------------------------------------------------------

    def expire(
        self,
        *,
        now: float,
        retention: float,
        rollup_retention: float,
        chunk: int = 1000,
        pause: float = 0.01,
    ) -> Expired:
        """Delete raw batch rows (and their flagged items) older than ``retention`` seconds and
        rollups whose period ended more than ``rollup_retention`` seconds ago.

        Deletes in transactions of at most ``chunk`` batches or ``chunk`` periods of one
        stream and level, sleeping ``pause`` between them, so writers wait at most one chunk.
        On PostgreSQL one process at a time runs it (an advisory lock; the others skip).
        """
        with self.engine.connect() as lock_conn:
            if not self._try_lock(lock_conn):
                return Expired(0, 0, skipped=True)
            try:
                n_batches = self._expire_batches(now - retention, chunk, pause)
                n_rollups = self._expire_rollups(now - rollup_retention, chunk, pause)
            finally:
                self._unlock(lock_conn)
        return Expired(n_batches, n_rollups)

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

    def _expire_rollups(self, cutoff: float, chunk: int, pause: float) -> int:
        deleted = 0
        for totals in self.streams():
            stream = totals.info.stream
            for level in LEVELS:
                deleted += self._expire_level(stream, level, cutoff, chunk, pause)
            if totals.info.last_seen < cutoff:  # nothing left of it: its totals go too
                with self._tx() as conn:
                    deleted += conn.execute(
                        rollups.delete().where(
                            rollups.c.stream == stream,
                            rollups.c.level == 0,
                            rollups.c.time_max < cutoff,
                        )
                    ).rowcount
        return deleted

    def _expire_level(
        self, stream: str, level: int, cutoff: float, chunk: int, pause: float
    ) -> int:
        """Delete the stream's ``level`` rollups with start + level <= cutoff, ``chunk``
        periods per transaction."""
        end = math.floor(cutoff / level) * level - level  # last start whose period has ended
        deleted = 0
        with self.engine.connect() as conn:
            lo = conn.execute(
                sa.select(sa.func.min(rollups.c.start)).where(
                    rollups.c.stream == stream, rollups.c.level == level
                )
            ).scalar()
        while lo is not None and lo <= end:
            hi = min(int(lo) + chunk * level, end + level)
            with self._tx() as conn:
                deleted += conn.execute(
                    rollups.delete().where(
                        rollups.c.stream == stream,
                        rollups.c.level == level,
                        rollups.c.start < hi,
                    )
                ).rowcount
            lo = hi
            time.sleep(pause)
        return deleted


_FLAGGED_INSERT = flagged.insert()


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
    out = []
    for j, r in enumerate(rows_list):
        out.append(
            {
                "time": t,
                "id": None if page.ids is None else page.ids[r],
                "index": index[j],
                "confidence": confidence[j],
                "loss": loss[j],
                "predicted": None if page.predicted is None else page.predicted[r],
                "label": None if page.label is None else page.label[r],
                "reasons": reasons[j],
            }
        )
    return out
