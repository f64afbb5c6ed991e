"""The monitoring store's tables (schema version 2), as SQLAlchemy Core metadata.

Alembic owns the schema (``service/store/migrations``); these tables are what its newest
revision creates, and the store's queries are written against them.

- ``xent_batches``: one row of sums per recorded batch (a :class:`~xentcore.summary.BatchSummary`,
  its 15 calibration bins in columns ``bin_n_*``, ``bin_conf_*``, ``bin_correct_*``), kept for
  ``XENT_RETENTION``; the edges of a window that do not fill a minute are summed from these.
- ``xent_flagged``: the flagged items of a batch, one row per batch holding them column by column
  (``service.store.payload``), so a batch with 100,000 flagged items is one insert.
- ``xent_rollups``: the same sums per stream, task and aligned period (``level`` = 60, 3600 or
  86400 seconds, ``start`` a multiple of it), plus ``level`` 0 (``start`` 0): the stream's
  lifetime totals. Every recorded batch adds itself to its four rows in the transaction that
  writes it (an additive UPSERT), so rollups equal the sums of the raw rows they cover.
- ``xent_health``: one row that ``/readyz`` rewrites, proving the store can still write.
- ``xent_kept`` (schema version 4): the kept items of a batch recorded with ids (API.md section 9),
  one columnar row per batch (``service.store.kept``), for ``XENT_ITEM_RETENTION``: ids,
  predictions, confidences, flags, audit state, the batch's labels and the kept rows;
  ``xent_item_keys`` finds the batch and position of an item by (stream, id), one small row per
  item, written off the request path (schema version 5): a kept batch is queued in
  ``xent_kept_pending`` until the indexer (``service.indexing``) has added its keys, and lookups
  read the ids of the queued batches themselves meanwhile; ``xent_item_labels`` holds the late
  labels (and their outcome), one row per labelled item.
- ``xent_label_batches`` / ``xent_label_rollups``: the label sums (``xentcore.feedback.LABEL_SUMS``)
  of each batch and of each stream, task and aligned period, as ``xent_batches`` / ``xent_rollups``
  hold the batch sums; labels sent with a batch add to them when it is recorded, late labels
  (with their replacements' differences) when they arrive, in the bucket where the item was
  scored.
- ``xent_fits`` (schema version 6): a stream's risk policies and calibrators (API.md section
  10), one row per fitted version, its request and figures as JSON.
- ``xent_schema_version``: the schema version, kept so that a release that predates Alembic
  (version 1) refuses a newer store instead of writing to it.
"""

from __future__ import annotations

import sqlalchemy as sa

from xentcore.feedback import LABEL_SCALARS, LABEL_SUMS
from xentcore.summary import COUNT_FIELDS, N_BINS, SUM_FIELDS

__all__ = [
    "BIN_COLUMNS",
    "COUNT_COLUMNS",
    "LEVELS",
    "SCHEMA_VERSION",
    "SUM_COLUMNS",
    "batches",
    "flagged",
    "health",
    "item_keys",
    "item_labels",
    "kept",
    "kept_pending",
    "fits",
    "label_batches",
    "label_rollups",
    "metadata",
    "rollups",
    "schema_version",
]

#: The schema version this code writes (``xent_schema_version``; Alembic revision ``0006``).
SCHEMA_VERSION = 6
#: Rollup periods in seconds, coarsest first (``level`` 0 = lifetime totals).
LEVELS = (86400, 3600, 60)
#: Integer sums of a BatchSummary, by column name (= field name).
COUNT_COLUMNS = COUNT_FIELDS
#: Float sums of a BatchSummary.
FLOAT_COLUMNS = SUM_FIELDS
#: The calibration bins: item count, confidence sum and correct count of each of the 15 bins.
BIN_COLUMNS = (
    tuple(f"bin_n_{b}" for b in range(N_BINS)),
    tuple(f"bin_conf_{b}" for b in range(N_BINS)),
    tuple(f"bin_correct_{b}" for b in range(N_BINS)),
)
#: Every summed column of a batch row and a rollup row, in a fixed order.
SUM_COLUMNS = (*COUNT_COLUMNS, *FLOAT_COLUMNS, *BIN_COLUMNS[0], *BIN_COLUMNS[1], *BIN_COLUMNS[2])
_FLOATS = frozenset((*FLOAT_COLUMNS, *BIN_COLUMNS[1], *BIN_COLUMNS[2]))

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY = rowid


def sum_columns() -> list[sa.Column[object]]:
    """Fresh Column objects for every summed field (a Column belongs to one table)."""
    return [
        sa.Column(
            name,
            sa.Float(53) if name in _FLOATS else sa.BigInteger,
            nullable=False,
            server_default=sa.text("0"),
        )
        for name in SUM_COLUMNS
    ]


#: Label sums that count items (integers); the others are float sums.
_LABEL_COUNTS = frozenset(
    (*(n for n in LABEL_SCALARS if n != "lab_loss_sum"), *(n for n in LABEL_SUMS if "bin_n" in n))
)


def label_columns() -> list[sa.Column[object]]:
    """Fresh Column objects for every label sum (``xentcore.feedback.LABEL_SUMS``)."""
    return [
        sa.Column(
            name,
            sa.BigInteger if name in _LABEL_COUNTS else sa.Float(53),
            nullable=False,
            server_default=sa.text("0"),
        )
        for name in LABEL_SUMS
    ]


metadata = sa.MetaData()
schema_version = sa.Table(
    "xent_schema_version", metadata, sa.Column("version", sa.Integer, nullable=False)
)
batches = sa.Table(
    "xent_batches",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("time", sa.Float(53), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    *sum_columns(),
    sa.UniqueConstraint("stream", "idempotency_key", name="xent_batches_idem"),
    sa.Index("xent_batches_stream_time", "stream", "time"),
    sa.Index("xent_batches_time", "time"),
)
flagged = sa.Table(
    "xent_flagged",
    metadata,
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
    sa.Index("xent_flagged_stream_batch", "stream", "batch_id"),
)
rollups = sa.Table(
    "xent_rollups",
    metadata,
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("n_batches", sa.BigInteger, nullable=False),
    sa.Column("time_min", sa.Float(53), nullable=False),
    sa.Column("time_max", sa.Float(53), nullable=False),
    *sum_columns(),
    sa.PrimaryKeyConstraint("stream", "level", "start", "task", name="xent_rollups_pk"),
    sa.Index("xent_rollups_level_start", "level", "start"),
    sqlite_with_rowid=False,
)
health = sa.Table(
    "xent_health",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float(53), nullable=False),
)
kept = sa.Table(
    "xent_kept",
    metadata,
    # its own id, never reused (SQLite AUTOINCREMENT): kept items outlive their raw batch row
    sa.Column("batch_id", _ID, primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("time", sa.Float(53), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Index("xent_kept_stream_batch", "stream", "batch_id"),
    sa.Index("xent_kept_time", "time"),
    sqlite_autoincrement=True,
)
item_keys = sa.Table(
    "xent_item_keys",
    metadata,
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("item_id", sa.Text, nullable=False),
    sa.Column("batch_id", sa.BigInteger, nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("stream", "item_id", "batch_id", "idx", name="xent_item_keys_pk"),
    sa.Index("xent_item_keys_batch", "batch_id"),
    sqlite_with_rowid=False,
)
kept_pending = sa.Table(
    "xent_kept_pending",
    metadata,
    # a kept batch whose lookup keys are not yet in xent_item_keys (service.indexing)
    sa.Column("batch_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Index("xent_kept_pending_stream", "stream", "batch_id"),
)
item_labels = sa.Table(
    "xent_item_labels",
    metadata,
    sa.Column("batch_id", sa.BigInteger, nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("label", sa.BigInteger, nullable=True),
    sa.Column("label_set", sa.LargeBinary, nullable=True),
    sa.Column("loss", sa.Float(53), nullable=True),
    sa.Column("correct", sa.SmallInteger, nullable=False),
    sa.PrimaryKeyConstraint("batch_id", "idx", name="xent_item_labels_pk"),
    sqlite_with_rowid=False,
)
label_batches = sa.Table(
    "xent_label_batches",
    metadata,
    sa.Column("batch_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("time", sa.Float(53), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    *label_columns(),
    sa.Index("xent_label_batches_stream_time", "stream", "time"),
    sa.Index("xent_label_batches_time", "time"),
)
label_rollups = sa.Table(
    "xent_label_rollups",
    metadata,
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    *label_columns(),
    sa.PrimaryKeyConstraint("stream", "level", "start", "task", name="xent_label_rollups_pk"),
    sa.Index("xent_label_rollups_level_start", "level", "start"),
    sqlite_with_rowid=False,
)
fits = sa.Table(
    "xent_fits",
    metadata,
    # a stream's fitted risk policies and calibrators (API.md section 10), one row per version
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("fitted_at", sa.Float(53), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("stream", "kind", "name", "version", name="xent_fits_pk"),
)
