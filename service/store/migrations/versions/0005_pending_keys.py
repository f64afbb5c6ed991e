"""Kept items indexed off the request path (schema version 5, API.md section 9).

- ``xent_kept_pending``: the kept batches whose lookup keys (``xent_item_keys``) are not written
  yet. Recording a batch queues it here instead of inserting one key row per item in the
  request's transaction (on PostgreSQL that insert cost more than the rest of the write); the
  indexer (``service.indexing``) adds the keys and removes the batch from the queue, and a late
  label's lookup reads the ids of the queued batches of its stream meanwhile. A store upgraded
  from version 4 has every key already: the queue starts empty.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "xent_kept_pending",
        sa.Column("batch_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("stream", sa.String(128), nullable=False),
    )
    op.create_index("xent_kept_pending_stream", "xent_kept_pending", ["stream", "batch_id"])
    op.execute("UPDATE xent_schema_version SET version = 5")


def downgrade() -> None:
    raise NotImplementedError("the store upgrades only; restore a backup to go back")
