"""The label sums (``xentcore.feedback.LABEL_SUMS``) in SQL: per kept batch
(``xent_label_batches``) and per stream, task and period (``xent_label_rollups``), as
``xent_batches`` / ``xent_rollups`` hold the batch sums; added to with additive UPSERTs."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from service.store.schema import LEVELS, label_batches, label_rollups
from xentcore.feedback import LABEL_SUMS

__all__ = ["add_label_sums", "expire_label_batches"]


@functools.cache
def _upsert(table: sa.Table, keys: tuple[str, ...], dialect: str) -> Any:
    """The additive UPSERT of label sums into ``table`` (built once per table and dialect)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={name: table.c[name] + stmt.excluded[name] for name in LABEL_SUMS},
    )


_LEVEL_ORDER = {level: i for i, level in enumerate((0, *LEVELS))}
_FLOAT_SUMS = frozenset(n for n in LABEL_SUMS if n == "lab_loss_sum" or "conf" in n)


def _named(sums: npt.NDArray[np.float64]) -> dict[str, float | int]:
    return {
        name: (v if name in _FLOAT_SUMS else round(v))
        for name, v in zip(LABEL_SUMS, sums.tolist(), strict=True)
    }


def add_label_sums(
    conn: Connection,
    stream: str,
    task: str,
    per_batch: Sequence[tuple[int, float, npt.NDArray[np.float64]]],
) -> None:
    """Add ``sums`` (a vector over LABEL_SUMS) to each (batch id, batch time)'s row and to the
    stream's rollup rows of those times (additive UPSERTs; rollup rows in one fixed order, so
    concurrent writers lock them alike)."""
    dialect = conn.dialect.name
    batch_rows = []
    periods: dict[tuple[int, int], npt.NDArray[np.float64]] = {}
    for batch_id, t, sums in sorted(per_batch, key=lambda b: b[0]):
        batch_rows.append(
            {"batch_id": batch_id, "stream": stream, "time": t, "task": task, **_named(sums)}
        )
        for level, start in ((0, 0), *((lv, math.floor(t / lv) * lv) for lv in LEVELS)):
            key = (level, start)
            periods[key] = periods[key] + sums if key in periods else sums.copy()
    conn.execute(_upsert(label_batches, ("batch_id",), dialect), batch_rows)
    ordered = sorted(periods.items(), key=lambda kv: (_LEVEL_ORDER[kv[0][0]], kv[0][1]))
    conn.execute(
        _upsert(label_rollups, ("stream", "level", "start", "task"), dialect),
        [
            {"stream": stream, "level": lv, "start": st, "task": task, **_named(sums)}
            for (lv, st), sums in ordered
        ],
    )


def expire_label_batches(conn: Connection, cutoff: float, chunk: int) -> bool:
    """Delete up to ``chunk`` per-batch label sums older than ``cutoff``; True if more are left.

    They go with the raw rows (``XENT_RETENTION``): a window's edges are read from raw rows
    within that horizon only, and the rollups keep the sums."""
    ids = (
        conn.execute(
            sa.select(label_batches.c.batch_id)
            .where(label_batches.c.time < cutoff)
            .order_by(label_batches.c.time)
            .limit(chunk)
        )
        .scalars()
        .all()
    )
    if ids:
        conn.execute(label_batches.delete().where(label_batches.c.batch_id.in_(ids)))
    return len(ids) == chunk
