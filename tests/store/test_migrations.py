"""Schema migrations: a store made by the first release upgrades in place, its data kept exactly.

The committed fixture (``tests/store/fixtures``, made by the first release's own write path)
is loaded into a fresh SQLite file and a fresh PostgreSQL schema, then opened by today's store,
which runs the Alembic migrations. Every batch's sums, every flagged item and its order must
come back bit for bit; the new rollups must hold the sums of the old rows.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from service.store.migrate import (
    VERSION_TABLE,
    SchemaTooNew,
    current_revision,
    head_revision,
    upgrade,
)
from service.store.schema import LEVELS, SCHEMA_VERSION, rollups
from service.store.sql import SqlStore, engine_for, summary_of
from tests.store.v1fixture import exact, load_v1, snapshot
from tests.support.postgres import pg_unavailable, private_schema
from xentcore.summary import BatchSummary


@pytest.fixture(params=["sqlite", "postgresql"])
def v1_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A database as the first release left it: the v1 fixture, loaded."""
    if request.param == "sqlite":
        engine = engine_for(f"sqlite:///{tmp_path}/v1.db")
        load_v1(engine)
        yield engine
        engine.dispose()
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with private_schema() as url:
        engine = engine_for(url)
        load_v1(engine)
        yield engine
        engine.dispose()


def _summary_of_v1(row: dict[str, Any]) -> BatchSummary:
    fields = {k: v for k, v in row.items() if k in BatchSummary.__dataclass_fields__}
    return BatchSummary(**fields)


def test_a_v1_store_upgrades_in_place_with_its_data_exact(v1_engine: sa.Engine) -> None:
    before = snapshot(v1_engine)
    store = SqlStore(v1_engine)  # opening the store runs the migrations
    with v1_engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        version = conn.execute(sa.text("SELECT max(version) FROM xent_schema_version")).scalar()
        assert version == SCHEMA_VERSION
        tables = set(sa.inspect(conn).get_table_names())
    assert "xent_flagged_items" not in tables and {"xent_rollups", "xent_flagged"} <= tables

    streams = sorted({r["stream"] for r in before["xent_batches"]})
    for stream in streams:
        old = sorted(
            (r for r in before["xent_batches"] if r["stream"] == stream),
            key=lambda r: (r["time"], r["id"]),
        )
        new = store.batches_in(stream)
        assert [b.time for b in new] == [r["time"] for r in old]
        assert [b.task for b in new] == [r["task"] for r in old]
        # every sum and every bin, bit for bit (bin counts come back as floats, as v1 kept them)
        assert exact([b.summary for b in new]) == exact([_summary_of_v1(r) for r in old])
        _assert_flagged_pages_equal(store, stream, before["xent_flagged_items"])
    _assert_rollups_sum_the_rows(store, before["xent_batches"])
    store.close()


def _assert_flagged_pages_equal(store: SqlStore, stream: str, old_items: list[Any]) -> None:
    """The new pages, followed to the end, are the v1 rows of the stream newest first."""
    expected = [
        {
            "time": r["time"],
            "id": None if r["item_id"] is None else orjson.loads(r["item_id"]),
            "index": r["item_index"],
            "confidence": r["confidence"],
            "loss": r["loss"],
            "predicted": orjson.loads(r["predicted"]),
            "label": None if r["label"] is None else orjson.loads(r["label"]),
            "reasons": [x for x in r["reasons"].split(",") if x],
        }
        for r in sorted(old_items, key=lambda r: r["id"], reverse=True)
        if r["stream"] == stream
    ]
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = store.flagged(stream, limit=7, cursor=cursor)
        got.extend(page)
        if cursor is None:
            break
    assert exact(got) == exact(expected)


def _assert_rollups_sum_the_rows(store: SqlStore, rows: list[dict[str, Any]]) -> None:
    """Each rollup row: exact counts and times; float sums equal to rounding (SQL adds them in
    its own order)."""
    for level in (0, *LEVELS):
        groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for r in rows:
            start = 0 if level == 0 else math.floor(r["time"] / level) * level
            groups.setdefault((r["stream"], r["task"], start), []).append(r)
        with store.engine.connect() as conn:
            found = {
                (r["stream"], r["task"], int(r["start"])): r
                for r in conn.execute(sa.select(rollups).where(rollups.c.level == level)).mappings()
            }
        assert set(found) == set(groups), level
        for key, members in groups.items():
            row = found[key]
            assert row["n_batches"] == len(members)
            assert row["time_min"] == min(m["time"] for m in members)
            assert row["time_max"] == max(m["time"] for m in members)
            got = summary_of(row)
            want = sum((_summary_of_v1(m) for m in members), BatchSummary())
            for name in BatchSummary.__dataclass_fields__:
                a, b = getattr(got, name), getattr(want, name)
                assert a == pytest.approx(b, rel=1e-12, abs=1e-12), (key, name)


def test_a_migrated_store_keeps_working(v1_engine: sa.Engine) -> None:
    before = snapshot(v1_engine)
    store = SqlStore(v1_engine)
    keyed = next(r for r in before["xent_batches"] if r["idempotency_key"])
    summary = _summary_of_v1(keyed)
    # a retry of a batch the first release recorded is still recognised
    assert not store.record(
        stream=keyed["stream"],
        task=keyed["task"],
        summary=summary,
        idempotency_key=keyed["idempotency_key"],
    )
    n = len(store.batches_in(keyed["stream"]))
    assert store.record(stream=keyed["stream"], task=keyed["task"], summary=summary)
    assert len(store.batches_in(keyed["stream"])) == n + 1
    totals = {i.stream: i.n_batches for i in store.streams().infos}
    assert totals[keyed["stream"]] == n + 1
    store.close()
    assert upgrade(v1_engine) is False  # nothing pending: opening again changes nothing


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path}/x.db")
    SqlStore(engine).close()
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(SchemaTooNew, match="newer than this service"):
        SqlStore(engine)
    engine.dispose()


def _open(url: str, start: float) -> None:
    while time.time() < start:  # every process opens the old store at the same moment
        time.sleep(0.001)
    SqlStore.from_url(url).close()


def test_processes_upgrading_one_v1_store_at_once(v1_engine: sa.Engine) -> None:
    url = v1_engine.url.render_as_string(hide_password=False)
    before = snapshot(v1_engine)
    ctx = mp.get_context("spawn")
    start = time.time() + 2.0
    procs = [ctx.Process(target=_open, args=(url, start)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = SqlStore(v1_engine)
    n = sum(i.n_batches for i in store.streams().infos)
    assert n == len(before["xent_batches"])  # migrated once: rollups not doubled
    store.close()
