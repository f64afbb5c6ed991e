"""The feedback loop's memory (schema version 4, API.md section 9).

- ``xent_kept``: the kept items of each batch recorded with ids, one columnar row per batch.
- ``xent_item_keys``: (stream, id) -> (batch, position), a late label's lookup.
- ``xent_item_labels``: late labels and their outcome, one row per labelled item.
- ``xent_label_batches`` / ``xent_label_rollups``: the label sums per batch and per stream, task
  and period (the ``labeled`` and ``reviewed`` figures), alongside ``xent_batches`` and
  ``xent_rollups``. A store upgraded from version 3 has no kept items: they start with the
  first batch recorded after the upgrade.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.schema import label_columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "xent_kept",
        # its own id, never reused: kept items outlive the raw batch row they came with
        sa.Column("batch_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("time", sa.Float(53), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("xent_kept_stream_batch", "xent_kept", ["stream", "batch_id"])
    op.create_index("xent_kept_time", "xent_kept", ["time"])
    op.create_table(
        "xent_item_keys",
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("stream", "item_id", "batch_id", "idx", name="xent_item_keys_pk"),
        sqlite_with_rowid=False,
    )
    op.create_index("xent_item_keys_batch", "xent_item_keys", ["batch_id"])
    op.create_table(
        "xent_item_labels",
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("label", sa.BigInteger, nullable=True),
        sa.Column("label_set", sa.LargeBinary, nullable=True),
        sa.Column("loss", sa.Float(53), nullable=True),
        sa.Column("correct", sa.SmallInteger, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "idx", name="xent_item_labels_pk"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "xent_label_batches",
        sa.Column("batch_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("time", sa.Float(53), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        *label_columns(),
    )
    op.create_index("xent_label_batches_stream_time", "xent_label_batches", ["stream", "time"])
    op.create_index("xent_label_batches_time", "xent_label_batches", ["time"])
    op.create_table(
        "xent_label_rollups",
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        *label_columns(),
        sa.PrimaryKeyConstraint("stream", "level", "start", "task", name="xent_label_rollups_pk"),
        sqlite_with_rowid=False,
    )
    op.create_index("xent_label_rollups_level_start", "xent_label_rollups", ["level", "start"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE xent_kept ALTER COLUMN payload SET STORAGE EXTERNAL")
    op.execute("UPDATE xent_schema_version SET version = 4")


def downgrade() -> None:
    raise NotImplementedError("the store upgrades only; restore a backup to go back")
