"""The ``risk_policy`` flag reason (schema version 6, API.md section 10).

- ``xent_batches`` and ``xent_rollups`` gain the count of items flagged by a risk policy, 0 for
  every batch recorded before (no policy existed).
- ``xent_fits``: the stream's fitted risk policies and calibrators, one row per version (the
  request that fitted it and its figures as JSON).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("xent_batches", "xent_rollups"):
        op.add_column(
            table,
            sa.Column("risk_policy", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        )
    op.create_table(
        "xent_fits",
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("fitted_at", sa.Float(53), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("stream", "kind", "name", "version", name="xent_fits_pk"),
    )
    op.execute("UPDATE xent_schema_version SET version = 6")


def downgrade() -> None:
    raise NotImplementedError("the store upgrades only; restore a backup to go back")
