"""Baseline: the store as the first release created it (schema version 1).

A database made by that release (tables, no Alembic version) is stamped with this revision and
upgraded from it; a new database gets these tables first, then every later revision.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
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


def upgrade() -> None:
    op.create_table("xent_schema_version", sa.Column("version", sa.Integer, nullable=False))
    op.bulk_insert(
        sa.table("xent_schema_version", sa.column("version", sa.Integer)), [{"version": 1}]
    )
    op.create_table(
        "xent_batches",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
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
    )
    op.create_index("xent_batches_stream_time", "xent_batches", ["stream", "time"])
    op.create_table(
        "xent_flagged_items",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
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
    )
    op.create_index("xent_flagged_stream_id", "xent_flagged_items", ["stream", "id"])


def downgrade() -> None:
    raise NotImplementedError("the store upgrades only; restore a backup to go back")
