"""The dashboard's feedback figures in a real headless Chromium, against a real ``xent serve``:
the calibration set's ``labeled`` tiles, the labelled accuracy per bucket, and the review queue
(audited items without a label), refreshed by the page's own polling.

Needs Debian's ``chromium`` and the ``playwright`` package (see ``tests.support.browser``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import xentcore as xc
from service.store.sql import SqlStore
from tests.support.browser import CHROMIUM, FLAGS, playwright
from tests.support.server import xent_serve
from xentcore.summary import summarize

CLASSES = ["cat", "dog", "bird", "fish"]
#: An id a careless page would turn into markup.
HOSTILE = '<img src=x onerror="document.body.dataset.owned=1">'


def _seed_history(url: str) -> None:
    """Three hours of batches without kept items: buckets whose calibration set is empty."""
    store = SqlStore.from_url(url)
    rng = np.random.default_rng(5)
    now = time.time()
    for i in range(6):
        z = rng.standard_normal((32, 4))
        r = xc.score(z, rng.integers(0, 4, 32), input_type="logits")
        assert store.record(
            stream="vision", task="multiclass", summary=summarize(r), at=now - (6 - i) * 1800
        )
    store.close()


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{url}{path}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _score_with_feedback(url: str) -> list[Any]:
    """A labelled batch, an audited unlabelled one, late labels for five audited items, and a
    batch whose every item is audited (one with a hostile id). Returns the review queue the
    API should list, newest first."""
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.ones(4) * 0.7, 40)
    _post(url, "/v1/score", {
        "predictions": p.tolist(), "labels": [CLASSES[k] for k in rng.integers(0, 4, 40)],
        "class_names": CLASSES, "ids": [f"a{i}" for i in range(40)], "stream": "vision",
    })  # fmt: skip
    ids_b = [f"b{i}" for i in range(50)]
    b = _post(url, "/v1/score", {
        "predictions": rng.dirichlet(np.ones(4) * 0.7, 50).tolist(), "class_names": CLASSES,
        "ids": ids_b, "stream": "vision", "audit_rate": 0.6, "audit_seed": 3,
        "flag": {"min_confidence": 0.6},
    })  # fmt: skip
    audited: list[Any] = b["audit"]["ids"]
    assert len(audited) > 25
    late = audited[:5]
    labels = [CLASSES[k] for k in rng.integers(0, 4, 5)]
    assert _post(url, "/v1/streams/vision/labels", {"ids": late, "labels": labels})["matched"] == 5
    _post(url, "/v1/score", {
        "predictions": [[0.7, 0.1, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2]], "class_names": CLASSES,
        "ids": [HOSTILE, "c1"], "stream": "vision", "audit_rate": 1.0,
    })  # fmt: skip
    return ["c1", HOSTILE, *audited[5:][::-1]]


def _fmt(v: float | None) -> str:
    """The page's ``fmt`` for the figures here (in [1e-3, 1e4) or null)."""
    return "\N{EN DASH}" if v is None else f"{v:.4f}"


def test_review_queue_and_labelled_figures(tmp_path: Path) -> None:
    sync_playwright = playwright()
    (tmp_path / "data").mkdir()
    _seed_history(f"sqlite:///{tmp_path}/data/xent.db")
    with xent_serve(tmp_path) as server:
        queue = _score_with_feedback(server.url)
        api = httpx.get(f"{server.url}/v1/streams/vision/summary", params={"bucket": "15m"}).json()
        labelled = api["total"]["labeled"]
        assert labelled["n"] == 45
        labelled_buckets = sum(1 for bk in api["buckets"] if bk["labeled"]["n"] > 0)
        assert 1 <= labelled_buckets < len(api["buckets"])
        shots = Path(os.environ.get("XENT_TEST_SCREENSHOT_DIR", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        fetched: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                page.on(
                    "console",
                    lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
                )
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("request", lambda r: fetched.append(r.url))
                page.goto(f"{server.url}/dashboard/?stream=vision")
                page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                tiles = page.locator("#labeled div").all_inner_texts()
                caption = page.inner_text("#labeled .caption")
                totals = page.inner_text("#totals")
                rows = page.locator("#queue tr")
                shown = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
                injected = page.locator("#queue img").count()
                note = page.inner_text("#queue-note")
                marks = page.locator("#chart-accuracy circle.labelled")
                marks.first.wait_for(timeout=5000)
                n_marks = marks.count()
                mark_title = marks.first.locator("title").text_content()
                main_marks = page.locator("#chart-accuracy circle.main").count()
                page.screenshot(path=str(shots / "feedback-dashboard.png"), full_page=True)

                # a reviewer labels the rest: the next poll (every 10 s) empties the queue
                left = [r[1] for r in shown]
                rest = [qid for qid in queue if qid not in left] + left
                _post(server.url, "/v1/streams/vision/labels",
                      {"ids": rest, "labels": ["cat"] * len(rest)})  # fmt: skip
                page.locator("#queue td.empty").wait_for(timeout=15000)
                requested = list(fetched)  # the next poll is 10 s away
                empty = page.inner_text("#queue")
                tiles_after = page.locator("#labeled div").all_inner_texts()
                owned = page.locator("body[data-owned]").count()
            finally:
                browser.close()

    assert caption == "labelled (calibration set)"
    assert tiles == [
        "45\nlabelled",
        f"{_fmt(labelled['accuracy'])}\naccuracy",
        f"{_fmt(labelled['loss_mean'])}\nmean loss",
        f"{_fmt(labelled['ece'])}\nECE",
        f"{_fmt(labelled['accepted_error_rate'])}\naccepted error rate",
    ], tiles
    assert totals.startswith(f"{api['total']['n_items']}\nitems"), totals
    # the review queue: the 20 newest audited items without a label, as plain text
    assert [r[1] for r in shown] == queue[:20], shown
    assert injected == 0 and shown[1][1] == HOSTILE
    assert all(r[0].startswith("20") and r[2] in CLASSES for r in shown), shown
    assert all(r[4] == "no" or r[4] == "low_confidence" for r in shown), shown
    assert (shown[0][3], shown[0][4]) == ("0.3000", "low_confidence")  # c1, flagged
    assert (shown[1][3], shown[1][4]) == ("0.7000", "no")
    assert "more are waiting" in note  # more than 20 in the queue
    # the labelled accuracy per bucket, only where the calibration set is not empty
    assert n_marks == labelled_buckets and main_marks > n_marks
    assert mark_title is not None and "labelled accuracy" in mark_title
    assert "no audited item awaits a label" in empty
    assert tiles_after[0] == f"{45 + len(queue)}\nlabelled"
    assert owned == 0
    # one round per refresh: the queue comes with the summary and the flagged items
    count = {
        name: sum(f"/v1/streams/vision/{name}" in u for u in requested)
        for name in ("summary", "flagged", "items")
    }
    assert count["items"] >= 2 and count["summary"] == count["flagged"] == count["items"], count
    assert all("audit=true&labeled=false&limit=20" in u for u in requested if "/items" in u)
    assert not problems, problems
