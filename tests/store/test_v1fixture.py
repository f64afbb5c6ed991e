"""The committed v1 store fixture: it loads on SQLite and PostgreSQL, both hold the same rows,
and those rows are bit for bit what the v1 store wrote (``fixtures/v1_rows.json``).

Only SQLAlchemy and ``tests.store.v1fixture``: nothing here imports ``service.store``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.store.v1fixture import (
    BATCH_COLUMNS,
    FIXTURES,
    FLAGGED_COLUMNS,
    TABLES,
    exact,
    expected_rows,
    load_v1,
    raw_rows,
    script_path,
    snapshot,
    split_statements,
)
from tests.support.postgres import pg_unavailable, private_schema

DIALECTS = ("sqlite", "postgresql")
_FLOAT_COLUMNS = {"time", "loss_sum", "weight_sum", "confidence_sum", "confidence", "loss"}


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    """The fixture loaded into a fresh SQLite file."""
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('v1') / 'v1.db'}")
    try:
        load_v1(engine)
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def postgresql_engine() -> Iterator[sa.Engine]:
    """The fixture loaded into a private PostgreSQL schema (dropped afterwards)."""
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with private_schema() as url:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            load_v1(engine)
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(params=DIALECTS)
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    loaded: sa.Engine = request.getfixturevalue(f"{request.param}_engine")
    return loaded


def _inserts(dialect: str) -> Counter[str]:
    """INSERT statements per table in a fixture script."""
    text = script_path(dialect).read_text(encoding="utf-8")
    return Counter(re.findall(r"^INSERT INTO (\w+) ", text, flags=re.MULTILINE))


def test_row_counts_match_the_script(engine: sa.Engine) -> None:
    want = _inserts(engine.dialect.name)
    with engine.connect() as conn:
        got = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    assert got == {t: want[t] for t in TABLES}
    assert got == {t: len(rows) for t, rows in expected_rows().items()}
    assert got["xent_schema_version"] == 1


def test_schema_version_is_1(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM xent_schema_version")).all() == [(1,)]


def test_rows_are_exactly_what_the_v1_store_wrote(engine: sa.Engine) -> None:
    got, want = raw_rows(engine), expected_rows()
    for table in TABLES:
        assert len(got[table]) == len(want[table]), table
        for row, expected in zip(got[table], want[table], strict=True):
            assert exact(row) == exact(expected), (table, row.get("id"))


def test_both_dialects_hold_identical_snapshots(
    sqlite_engine: sa.Engine, postgresql_engine: sa.Engine
) -> None:
    lite, pg = snapshot(sqlite_engine), snapshot(postgresql_engine)
    assert exact(lite) == exact(pg)
    assert lite == pg
    for table, columns in (
        ("xent_batches", BATCH_COLUMNS),
        ("xent_flagged_items", FLAGGED_COLUMNS),
    ):
        for row in pg[table]:
            for name in columns:
                value = row.get(name)
                if name in _FLOAT_COLUMNS and value is not None:
                    assert type(value) is float, (table, name)
                elif name in ("id", "batch_id", "item_index", "n_items", "flagged"):
                    assert type(value) is int, (table, name)
    batch = lite["xent_batches"][0]
    assert "bins" not in batch
    for key in ("bin_count", "bin_confidence_sum", "bin_correct_sum"):
        assert len(batch[key]) == 15 and all(type(v) is float for v in batch[key])


def test_schema_objects(engine: sa.Engine) -> None:
    inspector = sa.inspect(engine)
    assert set(TABLES) <= set(inspector.get_table_names())
    indexes = {
        ix["name"]: ix["column_names"]
        for t in TABLES
        for ix in inspector.get_indexes(t)
        if not ix.get("unique")
    }
    assert indexes["xent_batches_stream_time"] == ["stream", "time"]
    assert indexes["xent_flagged_stream_id"] == ["stream", "id"]
    unique = inspector.get_unique_constraints("xent_batches")
    assert [(u["name"], u["column_names"]) for u in unique] == [
        ("xent_batches_idem", ["stream", "idempotency_key"])
    ]
    (fk,) = inspector.get_foreign_keys("xent_flagged_items")
    assert (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]) == (
        ["batch_id"],
        "xent_batches",
        ["id"],
    )
    assert fk["options"].get("ondelete") == "CASCADE"
    assert [c["name"] for c in inspector.get_columns("xent_batches")] == list(BATCH_COLUMNS)
    assert [c["name"] for c in inspector.get_columns("xent_flagged_items")] == list(FLAGGED_COLUMNS)


def test_rows_inserted_after_loading_get_fresh_ids(engine: sa.Engine) -> None:
    """PostgreSQL's sequences were moved past the explicit ids (rolled back afterwards)."""
    scalars = ", ".join(BATCH_COLUMNS[5:-1])
    with engine.connect() as conn, conn.begin() as tx:
        last = conn.execute(sa.text("SELECT max(id) FROM xent_batches")).scalar_one()
        last_item = conn.execute(sa.text("SELECT max(id) FROM xent_flagged_items")).scalar_one()
        conn.execute(
            sa.text(
                f"INSERT INTO xent_batches (stream, time, task, {scalars}, bins) "
                f"VALUES ('probe', 0.5, 'binary', {', '.join(['0'] * 13)}, '[[],[],[]]')"
            )
        )
        new = conn.execute(sa.text("SELECT max(id) FROM xent_batches")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO xent_flagged_items (batch_id, stream, time, item_index, predicted, "
                "reasons) VALUES (:b, 'probe', 0.5, 0, '1', 'low_confidence')"
            ),
            {"b": new},
        )
        new_item = conn.execute(sa.text("SELECT max(id) FROM xent_flagged_items")).scalar_one()
        tx.rollback()
    assert (new, new_item) == (last + 1, last_item + 1)


def test_the_fixture_covers_what_v1_stores() -> None:
    rows = expected_rows()
    batches, items = rows["xent_batches"], rows["xent_flagged_items"]
    assert 60 <= len(batches) <= 120 and len(items) >= 200
    assert len({b["stream"] for b in batches}) >= 4
    assert {b["task"] for b in batches} == {"binary", "multiclass", "multilabel", "sequences"}
    assert any(b["n_scored"] == 0 for b in batches)
    assert any(0 < b["n_scored"] < b["n_items"] for b in batches)  # ignored items
    keys = [b["idempotency_key"] for b in batches]
    assert None in keys and len({k for k in keys if k}) >= 10

    def kinds(column: str) -> set[str]:
        return {
            "null" if f[column] is None else type(json.loads(f[column])).__name__ for f in items
        }

    assert kinds("item_id") == {"str", "int", "null"}
    assert kinds("label") == {"str", "int", "list", "null"}
    assert kinds("predicted") == {"str", "int", "list", "NoneType"}
    assert any(f["loss"] is None for f in items)
    ids = {json.loads(f["item_id"]) for f in items if f["item_id"] is not None}
    assert {"txn;DROP TABLE xent_batches;--", "O'Reilly's card", "", 2**63 - 1} <= ids

    times = [b["time"] for b in batches]
    days = {datetime.fromtimestamp(t, UTC).date().isoformat() for t in times}
    assert days == {f"2026-11-{d}" for d in range(20, 25)}
    assert any(t != int(t) for t in times) and any(t == int(t) for t in times)
    seconds = Counter(int(t) for t in times)
    assert any(n >= 2 for n in seconds.values())  # two batches in one second
    burst = [t for t in times if datetime.fromtimestamp(t, UTC).hour == 10]
    assert len({datetime.fromtimestamp(t, UTC).minute for t in burst}) >= 5
    for dialect in DIALECTS:
        assert script_path(dialect).stat().st_size < 300_000
    assert (FIXTURES / "v1_rows.json").stat().st_size < 300_000


def test_the_postgresql_script_names_no_schema() -> None:
    text = script_path("postgresql").read_text(encoding="utf-8")
    statements = split_statements(text)
    assert not [s for s in statements if re.search(r"\b(public|xt_\w+)\.", s)]
    assert not [s for s in statements if s.upper().startswith(("SET ", "CREATE SCHEMA"))]
    assert sum(s.startswith("SELECT setval(") for s in statements) == 2


def test_split_statements_keeps_quoted_semicolons_and_drops_comments() -> None:
    script = (
        "-- a comment; with a semicolon\n"
        'CREATE TABLE "t;1" (a TEXT);\n'
        "INSERT INTO \"t;1\" VALUES ('it''s; -- not a comment /* nor this */');\n"
        "/* block; comment */ INSERT INTO \"t;1\" VALUES ('x'); ;\n"
        "SELECT 1"
    )
    assert split_statements(script) == [
        'CREATE TABLE "t;1" (a TEXT)',
        "INSERT INTO \"t;1\" VALUES ('it''s; -- not a comment /* nor this */')",
        "INSERT INTO \"t;1\" VALUES ('x')",
        "SELECT 1",
    ]
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("INSERT INTO t VALUES ('open;")


def test_load_v1_refuses_a_database_that_has_the_tables(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'twice.db'}")
    try:
        load_v1(engine)
        with pytest.raises(RuntimeError, match="not an empty database"):
            load_v1(engine)
        assert len(raw_rows(engine)["xent_batches"]) == len(expected_rows()["xent_batches"])
    finally:
        engine.dispose()


def test_load_v1_knows_only_sqlite_and_postgresql() -> None:
    with pytest.raises(ValueError, match="no v1 fixture"):
        script_path("mysql")
