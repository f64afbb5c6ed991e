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

import math
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from service.store.base import decode_cursor, encode_cursor
from service.store.calset import CalibrationSet, calibration_set
from service.store.connections import DEFAULT_TIMEOUT, engine_for
from service.store.expiry import Expiry
from service.store.fits import Kind, get_fit, list_fits, put_fit
from service.store.flaggedpages import FlaggedPages
from service.store.kept import Kept, index_pending, write_kept
from service.store.labels import LabelCounts, apply_labels
from service.store.listing import items_page
from service.store.migrate import upgrade
from service.store.payload import FlaggedItems, encode
from service.store.reads import WindowReads
from service.store.schema import (
    LEVELS,
    SUM_COLUMNS,
    batches,
    flagged,
    rollups,
)
from service.store.sums import summary_of, summary_values
from xentcore.summary import BatchSummary

__all__ = ["DEFAULT_TIMEOUT", "SqlStore", "engine_for", "summary_of", "summary_values"]


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


class SqlStore(WindowReads, FlaggedPages, Expiry):
    """The monitoring store behind :class:`service.store.base.Store`: the writes here, the
    reads (``reads``), flagged pages (``flaggedpages``), retention (``expiry``) and kept items
    (``kept``, ``labels``, ``listing``) in their modules."""

    def __init__(self, engine: Engine, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(engine, timeout=timeout)
        upgrade(engine)
        self._upsert = _rollup_upsert(self._dialect)
        self._window_queries = {}
        self._compiled = {}

    @classmethod
    def from_url(cls, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> SqlStore:
        return cls(engine_for(url, timeout), timeout=timeout)

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

    # -- feedback (API.md section 9) --------------------------------------------------------

    def label(self, stream: str, ids: Sequence[Any], labels: Sequence[Any]) -> LabelCounts:
        """Apply late labels to the stream's newest kept item of each id, all or nothing
        (:func:`service.store.labels.apply_labels`; ``LabelProblem`` writes nothing)."""
        with self._tx() as conn:
            return apply_labels(conn, stream=stream, ids=ids, labels=labels)

    def calibration_set(
        self,
        stream: str,
        *,
        confidence: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> CalibrationSet:
        """The stream's calibration set (:mod:`service.store.calset`), read in one snapshot."""
        with self._tx() as conn:
            return calibration_set(
                conn, stream, confidence=confidence, since=since, until=until, limit=limit
            )

    def put_fit(self, stream: str, kind: Kind, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store ``body`` as the next version of a policy or calibrator; returns it with its
        ``version`` and ``fitted_at`` (a concurrent fit of the same name: retried)."""
        for attempt in range(5):
            now = time.time()
            try:
                with self._tx() as conn:
                    version = put_fit(
                        conn, stream=stream, kind=kind, name=name, fitted_at=now, body=body
                    )
                return {**body, "version": version, "fitted_at": now}
            except sa.exc.IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def get_fit(
        self, stream: str, kind: Kind, name: str, version: int | None = None
    ) -> dict[str, Any] | None:
        with self._connection() as conn:
            return get_fit(conn, stream=stream, kind=kind, name=name, version=version)

    def list_fits(self, stream: str, kind: Kind) -> list[dict[str, Any]]:
        with self._connection() as conn:
            return list_fits(conn, stream=stream, kind=kind)

    def index_items(self, *, max_items: int = 50_000) -> int:
        """Add the lookup keys of queued kept batches (:func:`service.store.kept.index_pending`),
        one batch per transaction, oldest first, until the queue is empty or ``max_items``
        keys were added; returns how many. Lookups do not need it (they read the queue), it
        keeps them fast."""
        done = 0
        while done < max_items:
            with self._tx() as conn:
                n = index_pending(conn)
            if n is None:
                return done
            done += n
        return done

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


_FLAGGED_INSERT = flagged.insert()


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
