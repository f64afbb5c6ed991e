"""Readiness that writes, cheaper reads and writes of large values (schema version 3).

- ``xent_health``: one row that ``/readyz`` rewrites, so a store that can no longer write (a
  full disk, a read-only database) makes the service unready.
- ``xent_rollups_level_start``: an index on (level, start), so ``GET /v1/streams`` reads the
  lifetime totals (level 0) without scanning every rollup, and retention finds old rollups of
  every stream at once.
- PostgreSQL: ``xent_flagged.payload`` is stored uncompressed (``STORAGE EXTERNAL``): its
  float64 columns do not compress, and trying costs most of the write of a large batch.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "xent_health",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float(53), nullable=False),
    )
    assert table is not None
    op.bulk_insert(table, [{"id": 1, "at": 0.0}])
    op.create_index("xent_rollups_level_start", "xent_rollups", ["level", "start"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE xent_flagged ALTER COLUMN payload SET STORAGE EXTERNAL")
    op.execute("UPDATE xent_schema_version SET version = 3")


def downgrade() -> None:
    raise NotImplementedError("the store upgrades only; restore a backup to go back")
