"""The monitoring store over SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Schema (version 1): ``batches`` holds one row of sums per recorded batch (a
:class:`xentcore.summary.BatchSummary`, calibration bins as JSON); ``flagged_items`` holds the
flagged items of those batches. A batch and its flagged items are written in one transaction, so
a writer killed midway leaves nothing partial. SQLite runs in WAL mode with a busy timeout, which
keeps several worker processes writing at once without "database is locked" failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from service.store.base import FlaggedRow, StoredBatch, StreamInfo, decode_cursor, encode_cursor
from xentcore.summary import BatchSummary

__all__ = ["SCHEMA_VERSION", "SqlStore", "engine_for"]

log = logging.getLogger("xent.store")

SCHEMA_VERSION = 1
#: PostgreSQL advisory lock key held while the schema is created ("xent" in ASCII).
_MIGRATION_LOCK = 0x78656E74
_SCALARS = (
    "n_items",
    "n_scored",
    "loss_sum",
    "weight_sum",
    "confidence_sum",
    "confidence_count",
    "flagged",
    "low_confidence",
    "high_loss",
    "misclassified",
    "low_token_probability",
    "n_classified",
    "correct",
)

metadata = sa.MetaData()
schema_version = sa.Table(
    "xent_schema_version", metadata, sa.Column("version", sa.Integer, nullable=False)
)
batches = sa.Table(
    "xent_batches",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("time", sa.Float(53), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    *(
        sa.Column(name, sa.Float(53) if "sum" in name else sa.BigInteger, nullable=False)
        for name in _SCALARS
    ),
    sa.Column("bins", sa.Text, nullable=False),
    sa.UniqueConstraint("stream", "idempotency_key", name="xent_batches_idem"),
    sa.Index("xent_batches_stream_time", "stream", "time"),
)
flagged_items = sa.Table(
    "xent_flagged_items",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "batch_id",
        sa.BigInteger,
        sa.ForeignKey("xent_batches.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("time", sa.Float(53), nullable=False),
    sa.Column("item_id", sa.Text, nullable=True),
    sa.Column("item_index", sa.BigInteger, nullable=False),
    sa.Column("confidence", sa.Float(53), nullable=True),
    sa.Column("loss", sa.Float(53), nullable=True),
    sa.Column("predicted", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Index("xent_flagged_stream_id", "stream", "id"),
)


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


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class SqlStore:
    """The monitoring store behind :class:`service.store.base.Store`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._migrate()

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(engine_for(url))

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _migrate(self, attempts: int = 8) -> None:
        """Create the schema (version 1) if absent; refuse a newer schema than this code knows.

        Several processes (workers, replicas) may open a new database at the same moment and all
        find no tables. PostgreSQL serialises them on an advisory lock; on SQLite the losers of
        the race get "table already exists", wait a moment and check again.
        """
        for attempt in range(attempts):
            try:
                self._create_schema()
                return
            except sa.exc.DBAPIError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.02 * (attempt + 1))

    def _create_schema(self) -> None:
        with self._tx() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            metadata.create_all(conn, checkfirst=True)
            found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if found is None:
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            elif found > SCHEMA_VERSION:
                raise RuntimeError(
                    f"store schema version {found} is newer than this service "
                    f"({SCHEMA_VERSION}); upgrade the service"
                )

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

    def record(
        self,
        *,
        stream: str,
        task: str,
        summary: BatchSummary,
        flagged: Sequence[FlaggedRow],
        idempotency_key: str | None = None,
        at: float | None = None,
    ) -> bool:
        """Write one batch and its flagged items in one transaction.

        Returns True when written, False when ``idempotency_key`` was already recorded for this
        stream (a retried batch counts once). Raises on store errors (the caller counts them).
        """
        now = time.time() if at is None else at
        values = {name: getattr(summary, name) for name in _SCALARS}
        bins = _json([summary.bin_count, summary.bin_confidence_sum, summary.bin_correct_sum])
        try:
            with self._tx() as conn:
                inserted = conn.execute(
                    batches.insert().values(
                        stream=stream,
                        time=now,
                        task=task,
                        idempotency_key=idempotency_key,
                        bins=bins,
                        **values,
                    )
                ).inserted_primary_key
                assert inserted is not None
                batch_id = inserted[0]
                if flagged:
                    conn.execute(
                        flagged_items.insert(),
                        [
                            {
                                "batch_id": batch_id,
                                "stream": stream,
                                "time": now,
                                "item_id": None if f.item_id is None else _json(f.item_id),
                                "item_index": f.index,
                                "confidence": f.confidence,
                                "loss": f.loss,
                                "predicted": _json(f.predicted),
                                "label": None if f.label is None else _json(f.label),
                                "reasons": ",".join(f.reasons),
                            }
                            for f in flagged
                        ],
                    )
        except sa.exc.IntegrityError:
            if idempotency_key is None or not self._has_key(stream, idempotency_key):
                raise
            return False
        return True

    def _has_key(self, stream: str, key: str) -> bool:
        with self.engine.connect() as conn:
            q = sa.select(batches.c.id).where(
                batches.c.stream == stream, batches.c.idempotency_key == key
            )
            return conn.execute(q).first() is not None

    def batches_in(
        self, stream: str, since: float | None = None, until: float | None = None
    ) -> list[StoredBatch]:
        """Every batch of ``stream`` with since <= time < until, oldest first."""
        q = sa.select(batches).where(batches.c.stream == stream).order_by(batches.c.time)
        if since is not None:
            q = q.where(batches.c.time >= since)
        if until is not None:
            q = q.where(batches.c.time < until)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for row in rows:
            count, conf_sum, correct_sum = orjson.loads(row["bins"])
            s = BatchSummary(
                **{name: row[name] for name in _SCALARS},
                bin_count=count,
                bin_confidence_sum=conf_sum,
                bin_correct_sum=correct_sum,
            )
            out.append(StoredBatch(float(row["time"]), str(row["task"]), s))
        return out

    def stream_names(self) -> list[StreamInfo]:
        """Every stream, by name: last-seen time, batch count and the tasks it holds.

        One query grouped by stream and task; the groups of a stream are folded here.
        """
        q = (
            sa.select(
                batches.c.stream, batches.c.task, sa.func.max(batches.c.time), sa.func.count()
            )
            .group_by(batches.c.stream, batches.c.task)
            .order_by(batches.c.stream, batches.c.task)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        out: list[StreamInfo] = []
        for stream, task, seen, count in rows:
            name, t, n = str(stream), float(seen), int(count)
            if out and out[-1].stream == name:
                prev = out[-1]
                out[-1] = StreamInfo(
                    name,
                    max(prev.last_seen, t),
                    prev.n_batches + n,
                    tuple(sorted({*prev.tasks, str(task)})),
                )
            else:
                out.append(StreamInfo(name, t, n, (str(task),)))
        return out

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Flagged items of ``stream``, newest first, and the cursor of the next page.

        Pages follow the row id downwards (``id < cursor``), so rows written while a client
        pages never shift a page. Raises :class:`InvalidCursor` for a cursor not made here.
        """
        after = None if cursor is None else decode_cursor(cursor)
        q = (
            sa.select(flagged_items)
            .where(flagged_items.c.stream == stream)
            .order_by(flagged_items.c.id.desc())
            .limit(limit + 1)
        )
        if since is not None:
            q = q.where(flagged_items.c.time >= since)
        if after is not None:
            q = q.where(flagged_items.c.id < after)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        items = [
            {
                "time": float(r["time"]),
                "id": None if r["item_id"] is None else orjson.loads(r["item_id"]),
                "index": int(r["item_index"]),
                "confidence": r["confidence"],
                "loss": r["loss"],
                "predicted": orjson.loads(r["predicted"]),
                "label": None if r["label"] is None else orjson.loads(r["label"]),
                "reasons": [x for x in str(r["reasons"]).split(",") if x],
            }
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        return items, (encode_cursor(int(rows[limit - 1]["id"])) if more and limit else None)
