"""The dashboard in a real headless Chromium, against a real ``xent serve`` with real data.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright`` package (a test
extra; its own browser download is never used). Skips with a message where either is missing,
except under CI, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import xentcore as xc
from service.monitoring import flagged_rows
from service.store.sql import SqlStore
from tests.support.postgres import pg_unavailable, private_schema
from tests.support.server import xent_serve
from xentcore.summary import summarize

CHROMIUM = os.environ.get("XENT_TEST_CHROMIUM") or shutil.which("chromium") or ""
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _playwright() -> Any:
    missing = []
    if not CHROMIUM:
        missing.append("chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
        sync_playwright = None
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


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
            flagged=flagged_rows(r, [f"img-{i}-{j}" for j in range(64)]),
            at=now - (12 - i) * 1800,
        )
    store.close()


def _score_over_http(url: str, headers: dict[str, str]) -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        p = rng.dirichlet(np.ones(4) * 0.7, 50)
        body = {
            "predictions": p.tolist(),
            "labels": rng.integers(0, 4, 50).tolist(),
            "ids": [f"req-{k}" for k in range(50)],
            "stream": "vision",
        }
        assert httpx.post(f"{url}/v1/score", json=body, headers=headers).json()["recorded"]
    llm = {"sequences": [{"id": "chat-1", "token_logprobs": [-0.1, -2.5, -0.3]}], "stream": "llm"}
    assert httpx.post(f"{url}/v1/sequences/score", json=llm, headers=headers).json()["recorded"]


def test_dashboard_draws_real_data(tmp_path: Path, store_url: tuple[str, dict[str, str]]) -> None:
    sync_playwright = _playwright()
    url, store_env = store_url
    _seed_history(url)
    key = "browser-key"
    with xent_serve(tmp_path, env={"XENT_API_KEYS": key, **store_env}) as server:
        _score_over_http(server.url, {"X-API-Key": key})
        shots = Path(os.environ.get("XENT_SCREENSHOT_DIR", tmp_path)) / store_url[0].split(":")[0]
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
                assert page.input_value("#stream") == "llm"  # first stream by name
                page.select_option("#stream", "vision")
                # a locator wait, not wait_for_function: the page's CSP forbids eval
                page.locator("#chart-loss_mean circle").nth(9).wait_for(timeout=15000)
                points = page.locator("#chart-loss_mean circle").count()
                bars = page.locator("#reliability rect.bar").count()
                rows = page.locator("#flagged tr").count()
                totals = page.inner_text("#totals")
                page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
            finally:
                browser.close()
    # 12 seeded half-hour batches plus the HTTP batches of this minute: >= 10 buckets of 15 min
    assert points >= 10, points
    assert bars >= 3, bars
    assert rows == 20, rows  # the 20 latest flagged items
    assert "918" in totals  # 12 x 64 seeded + 3 x 50 scored over HTTP
    # the login page's expected 401 is the only console message allowed
    assert all("401" in p for p in problems), problems
