"""The committed fixture of the version-1 monitoring store: load it, and read it back.

``fixtures/v1_sqlite.sql`` and ``fixtures/v1_postgresql.sql`` recreate one database written by
the v1 release (commit dd98582) through its own ``SqlStore.record``: the DDL exactly as v1 creates
it for that dialect, the ``xent_schema_version`` row ``1`` and every row of ``xent_batches`` and
``xent_flagged_items`` with explicit ids (floats as their shortest round-trip ``repr``).
``fixtures/v1_rows.json`` holds the same rows as the v1 store wrote them, floats as
``float.hex()``. ``fixtures/make_v1_fixture.py`` generates all three.

This module imports only SQLAlchemy and the standard library (never ``service.store``), so it
keeps describing version 1 whatever the current schema is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

__all__ = [
    "BATCH_COLUMNS",
    "FIXTURES",
    "FLAGGED_COLUMNS",
    "SCHEMA_VERSION",
    "TABLES",
    "exact",
    "expected_rows",
    "load_v1",
    "raw_rows",
    "script_path",
    "snapshot",
    "split_statements",
]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: The schema version the fixture holds.
SCHEMA_VERSION = 1
#: The v1 tables, parents first.
TABLES = ("xent_schema_version", "xent_batches", "xent_flagged_items")
#: The v1 columns of ``xent_batches``, in table order.
BATCH_COLUMNS = (
    "id",
    "stream",
    "time",
    "task",
    "idempotency_key",
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
    "bins",
)
#: The v1 columns of ``xent_flagged_items``, in table order.
FLAGGED_COLUMNS = (
    "id",
    "batch_id",
    "stream",
    "time",
    "item_id",
    "item_index",
    "confidence",
    "loss",
    "predicted",
    "label",
    "reasons",
)
_COLUMNS = {
    "xent_schema_version": ("version",),
    "xent_batches": BATCH_COLUMNS,
    "xent_flagged_items": FLAGGED_COLUMNS,
}
#: The three lists of the v1 ``bins`` JSON text, by their BatchSummary names.
_BIN_KEYS = ("bin_count", "bin_confidence_sum", "bin_correct_sum")

# One token of SQL: a quoted string ('' escapes a quote), a quoted identifier, a comment, a
# semicolon, or a run of anything else.
_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|;|[^'";/-]+|.""",
    re.DOTALL,
)


def script_path(dialect: str) -> Path:
    """The fixture script for a SQLAlchemy dialect name (``sqlite`` or ``postgresql``)."""
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"no v1 fixture for dialect {dialect!r}")
    return FIXTURES / f"v1_{dialect}.sql"


def split_statements(script: str) -> list[str]:
    """The statements of a SQL script, without their ``;`` and without comments.

    Semicolons inside quoted strings or identifiers do not end a statement; ``--`` and
    ``/* */`` comments outside them are dropped. Raises ValueError on an unterminated quote.
    """
    statements: list[str] = []
    current: list[str] = []
    for match in _TOKEN.finditer(script):
        token = match.group()
        if token == ";":
            text = "".join(current).strip()
            if text:
                statements.append(text)
            current = []
        elif token.startswith("--") or (token.startswith("/*") and token.endswith("*/")):
            current.append(" ")
        elif token in ("'", '"'):
            raise ValueError(f"unterminated quote at offset {match.start()}")
        else:
            current.append(token)
    if "".join(current).strip():
        statements.append("".join(current).strip())
    return statements


def load_v1(engine: sa.Engine) -> None:
    """Create the v1 fixture database in ``engine``'s empty database (or search_path schema).

    Runs ``script_path(engine.dialect.name)`` statement by statement on the raw DBAPI cursor
    (no parameter processing, so a ``%`` in the data is data) and commits. Raises RuntimeError
    when a v1 table already exists there.
    """
    statements = split_statements(script_path(engine.dialect.name).read_text(encoding="utf-8"))
    present = set(sa.inspect(engine).get_table_names()) & set(TABLES)
    if present:
        raise RuntimeError(f"not an empty database: {sorted(present)} already exist")
    with engine.begin() as conn:
        cursor = conn.connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()


def raw_rows(engine: sa.Engine, tables: Sequence[str] = TABLES) -> dict[str, list[dict[str, Any]]]:
    """Every row of v1 tables (all three by default), their v1 columns as the driver returns
    them. Batches and flagged items are ordered by id; ``bins`` stays its JSON text.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for table in tables:
            columns = _COLUMNS[table]
            names = ", ".join(f'"{c}"' for c in columns)
            order = "" if table == "xent_schema_version" else ' ORDER BY "id"'
            result = conn.execute(sa.text(f"SELECT {names} FROM {table}{order}"))
            out[table] = [dict(zip(columns, row, strict=True)) for row in result]
    return out


def snapshot(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``xent_batches`` and ``xent_flagged_items`` (the v1 columns), by id.

    Values are plain Python values (int, float, str, None); a batch's ``bins`` JSON text is
    parsed into its three lists ``bin_count``, ``bin_confidence_sum`` and ``bin_correct_sum``
    (lists of float) in place of the ``bins`` key. Compare two snapshots with ``==`` (floats are
    compared exactly; the fixture holds no NaN).
    """
    rows = raw_rows(engine, ("xent_batches", "xent_flagged_items"))
    batches = []
    for row in rows["xent_batches"]:
        parsed = dict(row)
        bins = json.loads(parsed.pop("bins"))
        if not (isinstance(bins, list) and len(bins) == len(_BIN_KEYS)):
            raise ValueError(f"batch {row['id']}: bins is not three lists")
        parsed.update(zip(_BIN_KEYS, bins, strict=True))
        batches.append(parsed)
    return {"xent_batches": batches, "xent_flagged_items": rows["xent_flagged_items"]}


def exact(value: Any) -> Any:
    """``value`` with every float (in dicts, lists and tuples too) as its ``float.hex()``:
    compare two of these to compare floats bit for bit (``0.0 == -0.0`` would pass)."""
    if isinstance(value, float):
        return float.hex(value)
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [exact(v) for v in value]
    return value


def expected_rows() -> dict[str, list[dict[str, Any]]]:
    """The rows the v1 store wrote (``fixtures/v1_rows.json``), shaped as :func:`raw_rows`:
    floats decoded from their ``float.hex()`` strings, so they are bit-exact."""
    data = json.loads((FIXTURES / "v1_rows.json").read_text(encoding="utf-8"))
    out: dict[str, list[dict[str, Any]]] = {}
    for table, kinds in data["columns"].items():
        names = list(kinds)
        decoded = []
        for values in data["rows"][table]:
            row = dict(zip(names, values, strict=True))
            for name, kind in kinds.items():
                if kind == "float" and row[name] is not None:
                    row[name] = float.fromhex(row[name])
            decoded.append(row)
        out[table] = decoded
    return out
