"""The dashboard in a real headless Chromium, against a real ``xent serve`` with real data.

Needs Debian's ``chromium`` and the ``playwright`` package (see ``tests.support.browser``).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import xentcore as xc
from service.recording import flagged_items
from service.store.sql import SqlStore
from tests.support.browser import CHROMIUM, FLAGS, playwright
from tests.support.postgres import pg_unavailable, private_schema
from tests.support.server import xent_serve
from xentcore.summary import summarize

CLASSES = ["cat", "dog", "bird", "fish"]
HH_MM = re.compile(r"^\d\d:\d\d$")
MM_DD = re.compile(r"^\d\d-\d\d$")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """The store's URL and the server environment that selects it."""
    if request.param == "sqlite":
        (tmp_path / "data").mkdir()
        yield f"sqlite:///{tmp_path}/data/xent.db", {}
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with private_schema() as url:
        yield url, {"XENT_DATABASE_URL": url}


def _seed_history(url: str) -> None:
    """Six hours of real scored batches for stream ``vision``, one every 30 minutes."""
    store = SqlStore.from_url(url)
    rng = np.random.default_rng(7)
    now = time.time()
    for i in range(12):
        z = rng.standard_normal((64, 5)) * (1.0 + i / 4)
        y = np.where(rng.random(64) < 0.7, z.argmax(axis=1), rng.integers(0, 5, 64))
        r = xc.score(z, y, input_type="logits", flag={"min_confidence": 0.6, "misclassified": True})
        store.record(
            stream="vision",
            task="multiclass",
            summary=summarize(r),
            flagged=flagged_items(r, [f"img-{i}-{j}" for j in range(64)]),
            at=now - (12 - i) * 1800,
        )
    # an older classifier stream, first by name: the page must still open on ``vision``
    r = xc.score(rng.standard_normal((8, 5)), rng.integers(0, 5, 8), input_type="logits")
    assert store.record(
        stream="archive", task="multiclass", summary=summarize(r), at=now - 3 * 86400
    )
    # multilabel items: the page lists classes as "a, c" and an empty set as "—"
    r = xc.score(
        [[0.9, 0.2, 0.8], [0.1, 0.2, 0.3]],
        [[1, 0, 1], [0, 0, 1]],
        task="multilabel",
        class_names=["a", "b", "c"],
        flag={"min_confidence": 0.99},
    )
    flagged = flagged_items(r, ["t0", "t1"])
    assert flagged is not None and flagged.predicted == [["a", "c"], []]
    assert store.record(
        stream="tags", task="multilabel", summary=summarize(r), flagged=flagged, at=now - 86400
    )
    store.close()


def _score_over_http(url: str, headers: dict[str, str]) -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        p = rng.dirichlet(np.ones(4) * 0.7, 50)
        body = {
            "predictions": p.tolist(),
            "labels": [CLASSES[k] for k in rng.integers(0, 4, 50)],
            "class_names": CLASSES,
            "ids": [f"req-{k}" for k in range(50)],
            "stream": "vision",
        }
        assert httpx.post(f"{url}/v1/score", json=body, headers=headers).json()["recorded"]
    llm = {"sequences": [{"id": "chat-1", "token_logprobs": [-0.1, -2.5, -0.3]}], "stream": "llm"}
    assert httpx.post(f"{url}/v1/sequences/score", json=llm, headers=headers).json()["recorded"]


def _cells(page: Any, row: int) -> list[str]:
    texts: list[str] = page.locator("#flagged tr").nth(row).locator("td").all_inner_texts()
    return texts


def _check_time_axis(page: Any, chart: str, pattern: re.Pattern[str]) -> list[str]:
    """The chart's x tick labels: at least 3, all like ``pattern``, inside the SVG, no overlap;
    its y ticks: at least 3 numbers; and a visible UTC unit at the end of the time axis."""
    svg = page.locator(chart).bounding_box()
    labels = page.locator(f"{chart} text.tick-x")
    texts: list[str] = labels.all_text_contents()  # SVG text has no innerText
    assert len(texts) >= 3 and all(pattern.match(t) for t in texts), texts
    unit = page.locator(f"{chart} text.unit")
    assert unit.text_content() == "UTC" and unit.is_visible()
    boxes = [labels.nth(k).bounding_box() for k in range(len(texts))]
    boxes.append(unit.bounding_box())
    for box in boxes:
        assert svg["x"] <= box["x"] and box["x"] + box["width"] <= svg["x"] + svg["width"], box
        assert svg["y"] <= box["y"] and box["y"] + box["height"] <= svg["y"] + svg["height"], box
    boxes.sort(key=lambda b: b["x"])
    for left, right in itertools.pairwise(boxes):
        assert left["x"] + left["width"] <= right["x"], (texts, boxes)
    y_ticks = page.locator(f"{chart} text.tick-y").all_text_contents()
    assert len(y_ticks) >= 3 and all(re.fullmatch(r"-?\d+(\.\d+)?", t) for t in y_ticks), y_ticks
    return texts


def test_dashboard_draws_real_data(tmp_path: Path, store_url: tuple[str, dict[str, str]]) -> None:
    sync_playwright = playwright()
    url, store_env = store_url
    _seed_history(url)
    key = "browser-key"
    with xent_serve(tmp_path, env={"XENT_API_KEYS": key, **store_env}) as server:
        _score_over_http(server.url, {"X-API-Key": key})
        shots = (
            Path(os.environ.get("XENT_TEST_SCREENSHOT_DIR", tmp_path)) / store_url[0].split(":")[0]
        )
        shots.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.on(
                    "console",
                    lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
                )
                page.on("pageerror", lambda e: problems.append(str(e)))
                # without the key: the login form; with it, the cookie opens the dashboard
                page.goto(f"{server.url}/dashboard/")
                page.fill("#key", key)
                page.click("button[type=submit]")
                page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                # not "archive" (first by name) nor "llm" (newest, but sequences only): the
                # newest stream with classifier data
                assert page.input_value("#stream") == "vision"
                assert page.input_value("#window") == "86400"
                # a locator wait, not wait_for_function: the page's CSP forbids eval
                page.locator("#chart-loss_mean circle").nth(9).wait_for(timeout=15000)
                points = page.locator("#chart-loss_mean circle").count()
                bars = page.locator("#reliability rect.bar").count()
                rows = page.locator("#flagged tr").count()
                totals = page.inner_text("#totals")
                flagged_text = page.inner_text("[data-testid=flagged]")
                newest = _cells(page, 0)
                day_ticks = _check_time_axis(page, "#chart-loss_mean", HH_MM)
                _check_time_axis(page, "#chart-accuracy", HH_MM)
                status = page.inner_text("#status")
                page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

                # choosing a window or a stream puts both in the URL (a link to this view)
                page.select_option("#window", "604800")
                page.wait_for_url(re.compile(r"[?&]window=604800"), timeout=5000)
                assert "stream=vision" in page.url
                page.locator("#chart-loss_mean text.tick-x", has_text=MM_DD).first.wait_for()
                week_ticks = _check_time_axis(page, "#chart-loss_mean", MM_DD)
                page.select_option("#stream", "archive")
                page.wait_for_url(re.compile(r"[?&]stream=archive"), timeout=5000)
                assert "window=604800" in page.url

                # ... and opening such a link shows that stream and window
                page.goto(f"{server.url}/dashboard/?stream=tags&window=3600")
                page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                linked = (page.input_value("#stream"), page.input_value("#window"))
                tags_rows = [_cells(page, 0), _cells(page, 1)]

                # an unknown stream or window in a link falls back to the defaults
                page.goto(f"{server.url}/dashboard/?stream=nope&window=12345")
                page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                fallback = (page.input_value("#stream"), page.input_value("#window"))
                fallback_status = page.inner_text("#status")
            finally:
                browser.close()
    # 12 seeded half-hour batches plus the HTTP batches of this minute: >= 10 buckets of 15 min
    assert points >= 10, points
    assert bars >= 3, bars
    assert rows == 20, rows  # the 20 latest flagged items
    assert "918" in totals  # 12 x 64 seeded + 3 x 50 scored over HTTP
    # class names as plain text, not JSON
    assert newest[0].startswith("20") and newest[1].startswith("req-")
    assert newest[5] in CLASSES and newest[6] in CLASSES, newest
    assert '"' not in flagged_text and "time (UTC)" in flagged_text
    assert status.startswith("updated ") and status.endswith(" UTC"), status
    assert day_ticks != week_ticks
    assert linked == ("tags", "3600")
    assert (tags_rows[0][5], tags_rows[0][6]) == ("—", "c")  # an empty set of classes
    assert (tags_rows[1][5], tags_rows[1][6]) == ("a, c", "a, c")
    assert fallback == ("vision", "86400")
    assert "unknown stream" in fallback_status, fallback_status
    # the login page's expected 401 is the only console message allowed
    assert all("401" in p for p in problems), problems
