"""Edges of the monitoring read API: times at the limits of the calendar, bucket widths that
overflow, forged page cursors, and the trailing-slash redirect.

Each hostile value is a 422 naming its query parameter (never a 500, never a 503), on SQLite and
on PostgreSQL; the values just inside the bounds are read and printed (README, "Errors"). The
bounds: ``since`` / ``until`` within 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z once their
offset is applied, ``bucket`` at most ``10000w``, ``cursor`` a ``next_cursor`` as handed out.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.settings import Settings
from service.store.base import encode_cursor
from tests.service.conftest import MakeClient, TestClient
from tests.support.postgres import pg_unavailable, private_schema
from xentcore.summary import BatchSummary

STREAM = "edges"
FLAGGED_BATCH = {
    "predictions": [[0.4, 0.6], [0.5, 0.5], [0.9, 0.1]],
    "labels": [0, 1, 0],
    "flag": {"min_confidence": 0.7},
    "stream": STREAM,
}
#: 9999-12-31T23:59:59Z, the last second a time of the API may name.
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One app per backend for the whole module, with one flagged batch under ``STREAM``; 500s
    come back as responses (not raised) so that a case can show its status."""
    data_dir = tmp_path_factory.mktemp("edges") / "data"
    if request.param == "postgresql":
        reason = pg_unavailable()
        if reason:
            pytest.skip(reason)
        with private_schema() as url:
            yield from _client(Settings(data_dir=data_dir, database_url=url))
    else:
        yield from _client(Settings(data_dir=data_dir))


def _client(settings: Settings) -> Iterator[Any]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.post("/v1/score", json=FLAGGED_BATCH).json()["recorded"] is True
        yield client


def check_422(response: Any, name: str) -> None:
    """A 422 whose one error names the query parameter ``name``."""
    assert response.status_code == 422, (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert len(detail) == 1 and detail[0]["loc"] == ["query", name], detail
    assert len(response.content) < 1024


# --- since / until ---------------------------------------------------------------------------

OUT_OF_RANGE_TIMES = [
    "0001-01-01T00:00:00+01:00",  # year 0 once the offset is applied
    "0001-01-01T00:59:59+01:00",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00Z",  # representable, but before the epoch
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00-23:59",
    "1900-01-01",
    "1969-12-31T23:59:59Z",
    "1969-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00+00:01",  # 1969-12-31T23:59:00Z
    "1970-01-01T00:59:59.999999+01:00",
    "9999-12-31T23:59:59-14:00",  # year 10000 once the offset is applied
    "9999-12-31T23:59:59-00:01",
    "9999-12-31T10:00:00-14:00",
    "9999-12-31T23:59:59.999999+00:00",  # rounds to year 10000 as a float
    "9999-12-31T23:59:59.5Z",
]
NOT_TIMES = [
    "",
    " ",
    "yesterday",
    "nan",
    "inf",
    "-1",
    "253402300800",
    "10000-01-01T00:00:00Z",
    "+10000-01-01",
    "0000-12-31T23:00:00Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00-99:00",
    "2026-02-30",
    "2026-01-01T24:00:01",
    "2026-01-01T00:00:00\x00",
    "2026-01-01T00:00:00\u0660Z",  # an Arabic-Indic digit
    "\uff12\uff10\uff12\uff16-01-01",  # full-width digits
    "2026-01-01T00:00:00Z" * 200,
]


def _route(route: str) -> str:
    return f"/v1/streams/{STREAM}/{route}"


@pytest.mark.parametrize("value", OUT_OF_RANGE_TIMES + NOT_TIMES)
@pytest.mark.parametrize(
    ("route", "name"), [("summary", "since"), ("summary", "until"), ("flagged", "since")]
)
def test_a_time_outside_the_range_is_a_422(client: Any, route: str, name: str, value: str) -> None:
    check_422(client.get(_route(route), params={name: value}), name)


@pytest.mark.parametrize("bucket", [None, "1d", "52w", "10000w"])
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", OUT_OF_RANGE_TIMES[:4] + OUT_OF_RANGE_TIMES[-4:])
def test_a_time_outside_the_range_is_a_422_with_any_bucket(
    client: Any, name: str, value: str, bucket: str | None
) -> None:
    params = {name: value} | ({"bucket": bucket} if bucket else {})
    check_422(client.get(_route("summary"), params=params), name)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00Z"),
        ("1969-12-31T14:00:00-10:00", "1970-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59Z"),
        ("9999-12-31T09:59:59-14:00", "9999-12-31T23:59:59Z"),
        ("9999-12-31", "9999-12-31T00:00:00Z"),
    ],
)
def test_the_edges_of_the_range_are_read_and_shown(client: Any, value: str, shown: str) -> None:
    if shown.startswith("1970"):
        window = {"since": value, "until": "9999-12-31T23:59:59Z"}
        out = client.get(_route("summary"), params=window)
        assert out.status_code == 200, out.text
        assert out.json()["since"] == shown and out.json()["total"]["n_items"] == 3
        flagged = client.get(_route("flagged"), params={"since": value}).json()
        assert len(flagged["items"]) == 2
    else:
        out = client.get(_route("summary"), params={"until": value})
        assert out.status_code == 200, out.text
        assert out.json()["until"] == shown and out.json()["total"]["n_items"] == 3
        late = client.get(_route("summary"), params={"since": value}).json()
        assert late["total"]["n_items"] == 0 and late["since"] == shown
        assert client.get(_route("flagged"), params={"since": value}).json()["items"] == []


def test_until_must_follow_since_at_the_edges(client: Any) -> None:
    same = {"since": "9999-12-31T23:59:59Z", "until": "9999-12-31T09:59:59-14:00"}
    check_422(client.get(_route("summary"), params=same), "until")


# --- bucket ------------------------------------------------------------------------------------

HOSTILE_BUCKETS = [
    "999999999w",
    "999999999d",
    "999999999h",
    "999999999m",
    "100000w",
    "10001w",
    "70001d",
    "1680001h",
    "100800001m",
    "6048000001s",  # ten digits: not a duration at all
    "0w",
    "-1w",
    "1.5w",
    "1y",
    "1W",
    "1 w 1",
    "\u0661w",  # an Arabic-Indic digit
    "\uff11w",
    "1" * 5000 + "w",
]


@pytest.mark.parametrize("bucket", HOSTILE_BUCKETS)
@pytest.mark.parametrize(
    "window",
    [
        {},
        {"since": "1970-01-01T00:00:00Z"},
        {"until": "9999-12-31T23:59:59Z"},
        {"since": "1970-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
        {"since": "9999-12-31T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
    ],
    ids=["no-window", "since-epoch", "until-9999", "whole-range", "last-day"],
)
def test_a_bucket_width_that_overflows_is_a_422(
    client: Any, bucket: str, window: dict[str, str]
) -> None:
    check_422(client.get(_route("summary"), params={"bucket": bucket, **window}), "bucket")


@pytest.mark.parametrize("bucket", ["10000w", "70000d", "1680000h", "100800000m", "52w", "1d"])
@pytest.mark.parametrize(
    "window",
    [{}, {"since": "1970-01-01T00:00:00Z"}, {"until": "9999-12-31T23:59:59Z"}],
    ids=["no-window", "since-epoch", "until-9999"],
)
def test_the_widest_buckets_are_read_and_shown(
    client: Any, bucket: str, window: dict[str, str]
) -> None:
    out = client.get(_route("summary"), params={"bucket": bucket, **window})
    if out.status_code == 422:  # only for too many buckets, never for the width itself
        assert "buckets" in out.json()["detail"][0]["msg"] and bucket in ("52w", "1d")
        return
    assert out.status_code == 200, out.text
    buckets = out.json()["buckets"]
    assert sum(b["n_items"] for b in buckets) == 3
    for b in buckets:
        start, end = datetime.fromisoformat(b["start"]), datetime.fromisoformat(b["end"])
        assert start < end and start.year >= 1970 and end.year <= 9999


def test_a_batch_near_year_10000_is_a_422_not_a_500(make_client: MakeClient) -> None:
    """A bucket holding a batch whose bucket would end past 9999-12-31T23:59:59Z (a batch the
    API cannot record: only a store written by other means) is refused, not a 500."""
    client: Any = make_client(raise_server_exceptions=False)
    store = client.app.state.store
    summary = BatchSummary(n_items=1)
    assert store.record(stream="far", task="binary", summary=summary, at=LAST - 2 * 86400)
    assert store.record(stream="far", task="binary", summary=summary, at=LAST - 10)
    last_hours = {"since": "9999-12-31T20:00:00Z", "until": "9999-12-31T23:59:59Z"}
    for bucket in ("30s", "1m", "1h", "1d", "10000w"):  # the batch's bucket ends in year 10000
        params = {**last_hours, "bucket": bucket}
        check_422(client.get("/v1/streams/far/summary", params=params), "bucket")
    early = {"since": "9999-12-01T00:00:00Z", "until": "9999-12-30T00:00:00Z"}
    out = client.get("/v1/streams/far/summary", params={**early, "bucket": "1d"})
    assert out.status_code == 200, out.text
    assert [b["start"] for b in out.json()["buckets"]] == ["9999-12-29T00:00:00Z"]
    # 10000w: bucket 41 holds 9999-12-29 and ends in year 10019
    check_422(client.get("/v1/streams/far/summary", params={**early, "bucket": "10000w"}), "bucket")
    whole = {"since": "9999-12-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"}
    out = client.get("/v1/streams/far/summary", params=whole)
    assert out.status_code == 200, out.text
    assert out.json()["total"]["n_items"] == 2 and out.json()["until"] == "9999-12-31T23:59:59Z"


# --- cursor ------------------------------------------------------------------------------------


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED_CURSORS = {
    "empty": "",
    "65-chars": "A" * 65,
    "10k-chars": "A" * 10_000,
    "64-chars": "A" * 64,
    "not-base64-chars": "!!",
    "padding-only": "====",
    "padded": b64("1.0") + "=",
    "percent-nul": "%00",
    "one-char": "A",
    "two-chars": "AB",
    "three-chars": "ABC",
    "dashes": "-_-_",
    "text": "not-a-cursor",
    "1.2.3": b64("1.2.3"),
    "one-part": b64("7"),
    "empty-parts": b64("."),
    "huge": b64("9" * 40 + ".0"),
    "2^63": b64(f"{2**63}.0"),
    "2^63-skip": b64(f"1.{2**63}"),
    "zero-batch": b64("0.0"),
    "negative": b64("-1.0"),
    "negative-skip": b64("1.-1"),
    "plus": b64("+1.0"),
    "leading-zero": b64("01.0"),
    "long-zeros": b64("1." + "0" * 30),
    "exponent": b64("1e5.0"),
    "underscore": b64("1_0.0"),
    "space": b64(" 1.0"),
    "newline": b64("1.0\n"),
    "float": b64("1.5.0"),
    "non-ascii": b64("é.1"),
    "arabic-digits": b64("\u0661.\u0662"),
    "full-width-digits": b64("\uff11.\uff12"),
    "superscript": b64("².0"),
    "invalid-utf8": b64(b"\xff\xfe"),
    "nul": b64("1\x00.0"),
    "json": b64('{"id": 1}'),
}


@pytest.mark.parametrize("name", list(FORGED_CURSORS))
def test_a_forged_cursor_is_a_422(client: Any, name: str) -> None:
    check_422(client.get(_route("flagged"), params={"cursor": FORGED_CURSORS[name]}), "cursor")


def test_cursors_handed_out_are_taken(client: Any) -> None:
    first = client.get(_route("flagged"), params={"limit": 1}).json()
    assert first["next_cursor"] is not None
    second = client.get(_route("flagged"), params={"limit": 1, "cursor": first["next_cursor"]})
    assert second.status_code == 200 and len(second.json()["items"]) == 1
    # a well-formed position the store never handed out is still a page (empty or not)
    for cursor in (encode_cursor(1, 0), encode_cursor(2**63 - 1, 2**63 - 1)):
        assert client.get(_route("flagged"), params={"cursor": cursor}).status_code == 200


def test_a_forged_cursor_is_refused_before_the_read_slots(make_client: MakeClient) -> None:
    """With every read slot taken (or the store down) a forged cursor is still the client's
    422: it is checked before the store is asked."""
    client: Any = make_client(max_store_reads=1)
    assert client.get("/v1/streams").status_code == 200  # makes the read slots
    slots = client.app.state.store_reads
    assert slots.acquire(timeout=1)
    try:
        for cursor in FORGED_CURSORS.values():
            check_422(client.get(_route("flagged"), params={"cursor": cursor}), "cursor")
        busy = client.get(_route("flagged"), params={"cursor": encode_cursor(1, 0)})
        assert busy.status_code == 503
    finally:
        slots.release()


def test_a_forged_cursor_is_refused_while_the_store_is_down(
    make_client: MakeClient, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    client = make_client(database_url=f"sqlite:///{blocker}/xent.db")
    for cursor in FORGED_CURSORS.values():
        check_422(client.get(_route("flagged"), params={"cursor": cursor}), "cursor")


# --- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/score/"),
        ("POST", "/v1/score/"),
        ("GET", "/healthz/"),
        ("GET", "/readyz/"),
        ("GET", "/metrics/"),
        ("GET", "/docs/"),
        ("GET", "/openapi.json/"),
        ("GET", "/v1/streams/"),
        ("GET", f"/v1/streams/{STREAM}/summary/"),
        ("GET", "/dashboard/static/dashboard.js/"),
    ],
)
def test_a_trailing_slash_is_a_404_that_reflects_no_host(
    make_client: MakeClient, method: str, path: str
) -> None:
    client = make_client()
    response = client.request(
        method, path, headers={"Host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text


def test_the_dashboard_redirect_stays_relative(make_client: MakeClient) -> None:
    client = make_client()
    response = client.get("/dashboard", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/dashboard/"
