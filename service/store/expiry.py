"""Retention of the monitoring store: deleting what is past ``XENT_RETENTION``,
``XENT_ROLLUP_RETENTION`` and ``XENT_ITEM_RETENTION`` in bounded chunks, one process at a time
on PostgreSQL (an advisory lock)."""

from __future__ import annotations

import math
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.store.base import Expired
from service.store.connections import Connected
from service.store.kept import expire_items
from service.store.labelsums import expire_label_batches
from service.store.schema import LEVELS, batches, flagged, label_rollups, rollups

__all__ = ["Expiry"]

#: PostgreSQL advisory lock key held by the process running retention ("xret" in ASCII).
_RETENTION_LOCK = 0x78726574


class Expiry(Connected):
    """The retention of :class:`service.store.sql.SqlStore`."""

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
