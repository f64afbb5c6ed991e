"""Rollups, calibration bins in columns, flagged items by batch (schema version 2).

- ``xent_batches``: the JSON ``bins`` text becomes 45 columns (``bin_n_*``, ``bin_conf_*``,
  ``bin_correct_*``) that SQL can sum; an index on ``time`` serves retention.
- ``xent_flagged_items`` (a row per item) becomes ``xent_flagged`` (a row per batch, the items
  column by column: ``service.store.payload``); items, their order and values are kept.
- ``xent_rollups``: per stream, task and minute / hour / day, plus lifetime totals, backfilled
  from the batches.
- ``xent_schema_version`` becomes 2, so the first release refuses to write to this store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from alembic import op

from service.store.payload import FlaggedItems, encode, reason_bits
from service.store.schema import BIN_COLUMNS, LEVELS
from service.store.schema import SUM_COLUMNS as _NEWEST_SUMS
from service.store.schema import sum_columns as _newest_sum_columns
from xentcore.types import REASONS

#: The summed columns as of this revision: later revisions add theirs (0006: ``risk_policy``).
SUM_COLUMNS = tuple(c for c in _NEWEST_SUMS if c != "risk_policy")


def sum_columns() -> list[sa.Column[object]]:
    return [c for c in _newest_sum_columns() if c.name in SUM_COLUMNS]


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Batches whose flagged items are converted per round trip.
_CHUNK = 500
_SEQUENCE_REASONS = ("low_token_probability",)


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    _bins_to_columns(pg)
    op.create_index("xent_batches_time", "xent_batches", ["time"])
    _flagged_by_batch(bind)
    _rollups(pg)
    op.execute("UPDATE xent_schema_version SET version = 2")


def downgrade() -> None:
    raise NotImplementedError("the store upgrades only; restore a backup to go back")


def _bins_to_columns(pg: bool) -> None:
    """Add the bin columns, fill them from the JSON ``[[counts], [conf sums], [correct sums]]``
    and drop the JSON."""
    for column in sum_columns():
        if column.name.startswith("bin_"):
            op.add_column("xent_batches", column)
    sets = []
    for part, names in enumerate(BIN_COLUMNS):
        for b, name in enumerate(names):
            if pg:
                value = f"((bins::json -> {part}) ->> {b})::float8"
                if part == 0:
                    value = f"round({value})::bigint"
            else:
                value = f"json_extract(bins, '$[{part}][{b}]')"
            sets.append(f"{name} = {value}")
    op.execute(f"UPDATE xent_batches SET {', '.join(sets)}")
    op.execute("ALTER TABLE xent_batches DROP COLUMN bins")  # SQLite >= 3.35: no table copy


def _flagged_by_batch(bind: sa.Connection) -> None:
    """One payload row per batch from the per-item rows, in their order."""
    table = op.create_table(
        "xent_flagged",
        sa.Column(
            "batch_id",
            sa.BigInteger,
            sa.ForeignKey("xent_batches.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("time", sa.Float(53), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    assert table is not None
    items = sa.table(
        "xent_flagged_items",
        *(
            sa.column(name)
            for name in (
                "id", "batch_id", "stream", "time", "item_id", "item_index",
                "confidence", "loss", "predicted", "label", "reasons",
            )
        ),
    )  # fmt: skip
    ids = bind.execute(sa.select(items.c.batch_id).distinct().order_by(items.c.batch_id))
    batch_ids = [int(b) for b in ids.scalars()]
    for lo in range(0, len(batch_ids), _CHUNK):
        chunk = batch_ids[lo : lo + _CHUNK]
        rows = (
            bind.execute(
                sa.select(items)
                .where(items.c.batch_id.in_(chunk))
                .order_by(items.c.batch_id, items.c.id)
            )
            .mappings()
            .all()
        )
        payloads = [_payload(group) for group in _groups(rows)]
        if payloads:
            bind.execute(table.insert(), payloads)
    op.create_index("xent_flagged_stream_batch", "xent_flagged", ["stream", "batch_id"])
    op.drop_table("xent_flagged_items")


def _groups(rows: Sequence[Any]) -> Iterator[list[Any]]:
    group: list[Any] = []
    for row in rows:
        if group and row["batch_id"] != group[0]["batch_id"]:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _json_or_none(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _payload(rows: list[Any]) -> dict[str, Any]:
    """The ``xent_flagged`` row of one batch's per-item rows."""
    reasons = [[r for r in str(row["reasons"]).split(",") if r] for row in rows]
    seen = {r for rs in reasons for r in rs}
    names = tuple(r for r in (*REASONS, *_SEQUENCE_REASONS) if r in seen) + tuple(
        sorted(seen - set(REASONS) - set(_SEQUENCE_REASONS))
    )
    masks = [np.array([name in rs for rs in reasons], dtype=bool) for name in names]
    ids = [_json_or_none(row["item_id"]) for row in rows]
    labels = [_json_or_none(row["label"]) for row in rows]
    losses = [row["loss"] for row in rows]
    items = FlaggedItems(
        index=np.array([int(row["item_index"]) for row in rows], dtype=np.int64),
        confidence=np.array([_nan(row["confidence"]) for row in rows], dtype=np.float64),
        loss=None
        if all(v is None for v in losses)
        else np.array([_nan(v) for v in losses], dtype=np.float64),
        reason_names=names,
        reasons=reason_bits(masks),
        ids=None if all(i is None for i in ids) else ids,
        predicted=[orjson.loads(row["predicted"]) for row in rows],
        label=None if all(v is None for v in labels) else labels,
    )
    first = rows[0]
    return {
        "batch_id": int(first["batch_id"]),
        "stream": first["stream"],
        "time": float(first["time"]),
        "n": len(rows),
        "payload": encode(items),
    }


def _rollups(pg: bool) -> None:
    """Create the rollups and fill them with the sums of the batches (lifetime, day, hour,
    minute), grouped in SQL."""
    op.create_table(
        "xent_rollups",
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("n_batches", sa.BigInteger, nullable=False),
        sa.Column("time_min", sa.Float(53), nullable=False),
        sa.Column("time_max", sa.Float(53), nullable=False),
        *sum_columns(),
        sa.PrimaryKeyConstraint("stream", "level", "start", "task", name="xent_rollups_pk"),
        sqlite_with_rowid=False,  # rows stored in key order: a stream's periods lie together
    )
    columns = ", ".join(SUM_COLUMNS)
    sums = ", ".join(f"SUM({c})" for c in SUM_COLUMNS)
    for level in (0, *LEVELS):
        if level == 0:
            start = "0"
        elif pg:
            start = f"(floor(time / {level})::bigint * {level})"
        else:
            start = f"(CAST(time / {level} AS INTEGER) * {level})"
        op.execute(
            f"INSERT INTO xent_rollups (stream, level, start, task, n_batches, time_min, "
            f"time_max, {columns}) SELECT stream, {level}, {start}, task, COUNT(*), MIN(time), "
            f"MAX(time), {sums} FROM xent_batches GROUP BY stream, task"
            + ("" if level == 0 else f", {start}")
        )
