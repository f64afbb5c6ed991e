"""The dashboard's policy view in a real headless Chromium, against a real ``xent serve``: the
stream's policies (threshold, guarantee, feasibility), the realized accepted error rate per bucket
against the selected policy's alpha, and the risk-coverage curve with the policy's operating point
(API.md section 10). A stream without policies shows how to fit one; a 404 from the policy
endpoints leaves the rest of the page alone.

Needs Debian's ``chromium`` and the ``playwright`` package (see ``tests.support.browser``).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import xentcore as xc
from service.recording import kept_batch
from service.store.sql import SqlStore
from tests.support.browser import CHROMIUM, FLAGS, playwright
from tests.support.server import xent_serve
from xentcore.summary import summarize
from xentcore.types import ScoreOptions
from xentcore.validate import check_batch

CLASSES = ["cat", "dog", "bird", "fish"]
BUCKET = 900  # the page's bucket over its default window (24 hours)


def _calibrated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of an underconfident model: its top class is right with
    probability max(p) + 0.1, so a policy at alpha 0.2 accepts about 60% of the items."""
    p = rng.dirichlet(np.ones(4) * 0.5, n)
    top = p.argmax(axis=1)
    wrong = rng.random(n) > np.minimum(1, p.max(axis=1) + 0.1)
    return p, np.where(wrong, (top + rng.integers(1, 4, n)) % 4, top)


def _seed_history(url: str) -> None:
    """Labelled kept batches in 15-minute buckets b, b+1, b+3, b+4 (five hours ago), and a batch
    without labels in b+2: two runs of the accepted error rate with a gap between them."""
    store = SqlStore.from_url(url)
    rng = np.random.default_rng(16)
    start = (time.time() - 5 * 3600) // BUCKET * BUCKET + 60
    for k in range(5):
        p, y = _calibrated(rng, 80)
        labels = None if k == 2 else y
        r = xc.score(p, labels, flag={"min_confidence": 0.45})
        kept = kept_batch(
            check_batch(p, labels, ScoreOptions()),
            r,
            [f"h{k}-{i}" for i in range(80)],
            audit=None,
            audit_rate=None,
            max_classes=1024,
        )
        at = start + k * BUCKET
        assert store.record(
            stream="vision", task="multiclass", summary=summarize(r), kept=kept, at=at
        )
    store.close()


def _call(method: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.request(method, url, json=body, timeout=30)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _score_and_fit(url: str) -> None:
    """Labelled batches now, three policies (the newest, ``gate``, is the one selected at first), a
    labelled batch flagged by ``gate``, and a stream ``fresh`` without labels or policies."""
    rng = np.random.default_rng(3)
    for k in range(2):
        p, y = _calibrated(rng, 150)
        _call("POST", f"{url}/v1/score", {
            "predictions": p.tolist(), "labels": [CLASSES[c] for c in y], "class_names": CLASSES,
            "ids": [f"n{k}-{i}" for i in range(150)], "stream": "vision", "per_item": False,
        })  # fmt: skip
    policies = f"{url}/v1/streams/vision/policies"
    assert not _call("PUT", f"{policies}/strict", {"alpha": 0.001})["feasible"]
    per_class = {"alpha": 0.25, "per_class": True, "min_calibration": 20}
    assert _call("PUT", f"{policies}/pc", per_class)["feasible"]
    assert _call("PUT", f"{policies}/gate", {"alpha": 0.2, "delta": 0.1})["feasible"]
    p, y = _calibrated(rng, 60)
    r = _call("POST", f"{url}/v1/score", {
        "predictions": p.tolist(), "labels": [CLASSES[c] for c in y], "class_names": CLASSES,
        "ids": [f"g{i}" for i in range(60)], "stream": "vision", "flag": {"policy": "gate"},
        "per_item": False,
    })  # fmt: skip
    assert r["policy"]["name"] == "gate" and r["flagged"]["count"] > 0
    _call("POST", f"{url}/v1/score", {"predictions": [[0.6, 0.4]], "stream": "fresh"})


def _fmt(v: float | None) -> str:
    """The page's ``fmt`` for the figures here (in [1e-3, 1e4), integers, or null): a whole
    number (in JavaScript, 0.0 is 0) as is."""
    if v is None:
        return "\N{EN DASH}"
    return str(int(v)) if float(v).is_integer() else f"{v:.4f}"


def _row(p: dict[str, Any]) -> list[str]:
    """A policy's row as the page should show it."""
    if not p["feasible"]:
        threshold = "none"
    elif p.get("thresholds") is not None:
        ks = sorted(p["thresholds"], key=int)
        threshold = ", ".join(
            f"{k}: {'always flagged' if p['thresholds'][k] is None else _fmt(p['thresholds'][k])}"
            for k in ks
        )
    else:
        threshold = _fmt(p["threshold"])
    fitted = datetime.fromisoformat(p["fitted_at"].replace("Z", "+00:00"))
    return [
        p["name"], str(p["version"]), fitted.strftime("%Y-%m-%d %H:%M:%S"), threshold,
        repr(p["alpha"]), repr(p["delta"]), "yes" if p["feasible"] else "no: flags everything",
        _fmt(p["coverage"]), str(p["n_calibration"]), _fmt(p["risk_upper_bound"]),
    ]  # fmt: skip


def _scale(page: Any, svg: str, axis: str) -> Any:
    """The chart's value -> px map on ``axis``, read off its tick labels (a tick label sits at
    x = sx(v), or at y = sy(v) + 3.5)."""
    labels = page.locator(f"{svg} text.tick-{axis}")
    ticks = [
        (float(labels.nth(i).text_content()), float(labels.nth(i).get_attribute(axis)))
        for i in range(labels.count())
    ]
    (v0, p0), (v1, p1) = ticks[0], ticks[-1]
    shift = 3.5 if axis == "y" else 0.0
    return lambda v: p0 - shift + (v - v0) * (p1 - p0) / (v1 - v0)


def _runs(buckets: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Buckets with an accepted error rate, split where a bucket between has none."""
    out: list[list[dict[str, Any]]] = []
    for b in buckets:
        if b["labeled"]["n"] > 0 and b["labeled"]["accepted_error_rate"] is not None:
            if out and out[-1][-1]["end"] == b["start"]:
                out[-1].append(b)
            else:
                out.append([b])
    return out


def _polyline(page: Any, selector: str) -> list[tuple[float, float]]:
    points: str = page.get_attribute(selector, "points")
    return [(float(x), float(y)) for x, y in (pt.split(",") for pt in points.split())]


def test_policy_view(tmp_path: Path) -> None:
    sync_playwright = playwright()
    (tmp_path / "data").mkdir()
    _seed_history(f"sqlite:///{tmp_path}/data/xent.db")
    with xent_serve(tmp_path) as server:
        _score_and_fit(server.url)
        base = f"{server.url}/v1/streams/vision"
        policies = {p["name"]: p for p in httpx.get(f"{base}/policies").json()["policies"]}
        gate, strict = policies["gate"], policies["strict"]
        api = httpx.get(f"{base}/summary", params={"bucket": "15m"}).json()
        curve = httpx.get(f"{base}/risk-coverage").json()
        runs = _runs(api["buckets"])
        assert len(runs) == 3, runs  # two seeded runs around an unlabelled bucket, and now
        labelled = [b for run in runs for b in run]
        assert api["total"]["risk_policy"] > 0
        shots = Path(os.environ.get("XENT_TEST_SCREENSHOT_DIR", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        fetched: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1800})
                page.on(
                    "console",
                    lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
                )
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("request", lambda r: fetched.append(r.url))
                page.goto(f"{server.url}/dashboard/?stream=vision")
                page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                rows = page.locator("#policies tr")
                shown = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
                classes = {s[0]: rows.nth(i).get_attribute("class") for i, s in enumerate(shown)}
                checked = page.locator("#policies input:checked").get_attribute("value")

                # the realized accepted error rate per bucket, against gate's alpha
                acc = "#chart-accepted"
                sy = _scale(page, acc, "y")
                alpha_y = float(page.get_attribute(f"{acc} line.alpha", "y1"))
                alpha_label = page.locator(f"{acc} text.alpha-label").text_content()
                marks = page.locator(f"{acc} circle.accepted")
                cys = sorted(
                    (
                        float(marks.nth(i).get_attribute("cx")),
                        float(marks.nth(i).get_attribute("cy")),
                    )
                    for i in range(marks.count())
                )
                over = page.locator(f"{acc} circle.over").count()
                first_title = marks.first.locator("title").text_content()
                segments = page.locator(f"{acc} polyline.accepted").count()
                legend = page.inner_text("#alpha")
                accepted_total = page.inner_text("#accepted-total")

                # the risk-coverage curve, its AURC, and gate's operating point
                rc = "#risk-coverage"
                rx, ry = _scale(page, rc, "x"), _scale(page, rc, "y")
                risk = _polyline(page, f"{rc} polyline.risk")
                bound = _polyline(page, f"{rc} polyline.bound")
                aurc = page.inner_text("#aurc")
                op = page.locator(f"{rc} circle.operating")
                op_xy = (float(op.get_attribute("cx")), float(op.get_attribute("cy")))
                op_title = op.locator("title").text_content()
                rc_alpha = float(page.get_attribute(f"{rc} line.alpha", "y1"))
                page.screenshot(path=str(shots / "policy-dashboard.png"), full_page=True)

                # choosing the infeasible policy: its alpha, no operating point, a note
                page.check("#policies input[value=strict]")
                page.wait_for_url(re.compile(r"[?&]policy=strict"), timeout=5000)
                page.locator("#alpha", has_text="strict").wait_for(timeout=5000)
                strict_alpha = float(page.get_attribute(f"{acc} line.alpha", "y1"))
                strict_sy = _scale(page, acc, "y")
                strict_note = page.locator(f"{rc} text.note").text_content()
                strict_ops = page.locator(f"{rc} circle.operating").count()
                strict_row = page.locator("#policies tr.selected td").first.inner_text()
                curve_requests = sum("/v1/streams/vision/risk-coverage" in u for u in fetched)

                # a stream without policies: how to fit one, not an error
                page.goto(f"{server.url}/dashboard/?stream=fresh")
                page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                hint = page.inner_text("#policies")
                fresh_status = page.inner_text("#status")
                fresh_charts = [page.text_content(f"{c} text.empty") for c in (acc, rc)]
                assert not problems, problems

                # 404s from the policy endpoints: the rest of the page is drawn all the same
                page.route(re.compile(r"/(policies|risk-coverage)(\?|$)"), lambda r: r.fulfill(
                    status=404, content_type="application/json", body='{"detail": "Not Found"}'
                ))  # fmt: skip
                page.goto(f"{server.url}/dashboard/?stream=vision&policy=gate")
                page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                broken = page.inner_text("#policies")
                broken_status = page.inner_text("#status")
                broken_rc = page.text_content(f"{rc} text.empty")
                broken_totals = page.inner_text("#totals")
                broken_points = page.locator(f"{acc} circle.accepted").count()
            finally:
                browser.close()

    # the table: every policy with its figures; gate (the newest) selected, strict infeasible
    assert sorted(shown) == sorted(_row(p) for p in policies.values()), shown
    assert checked == "gate" and "selected" in (classes["gate"] or "")
    assert "infeasible" in (classes["strict"] or "") and "infeasible" not in (classes["gate"] or "")
    assert ", " in _row(policies["pc"])[3]  # per class: one threshold per predicted class
    # the alpha line at gate's alpha, one point per bucket with labelled items, gaps between runs
    assert abs(alpha_y - sy(gate["alpha"])) < 0.5, (alpha_y, sy(gate["alpha"]))
    assert (
        alpha_label == "\N{GREEK SMALL LETTER ALPHA} 0.2" and legend == f"{alpha_label} (gate v1)"
    )
    assert len(cys) == len(labelled) and segments == len(runs) == 3
    for (_, cy), b in zip(cys, labelled, strict=True):
        assert abs(cy - sy(b["labeled"]["accepted_error_rate"])) < 0.5, (cy, b["labeled"])
    assert over == sum(b["labeled"]["accepted_error_rate"] > gate["alpha"] for b in labelled)
    assert first_title is not None and "accepted error rate" in first_title
    assert f"{labelled[0]['labeled']['n']} labelled" in first_title
    assert accepted_total == _fmt(api["total"]["labeled"]["accepted_error_rate"])
    # the curve: every point of the API at its coverage and risk, its bound, and the AURC
    assert aurc == _fmt(curve["aurc"]) and len(risk) == len(bound) == len(curve["points"])
    for (x, y), pt in zip(risk, curve["points"], strict=True):
        assert abs(x - rx(pt["coverage"])) < 0.5 and abs(y - ry(pt["risk"])) < 0.5, (x, y, pt)
    gate_risk = gate["errors"] / gate["n_accepted"]
    assert abs(op_xy[0] - rx(gate["coverage"])) < 0.5 and abs(op_xy[1] - ry(gate_risk)) < 0.5
    assert op_title is not None and f"coverage {_fmt(gate['coverage'])}" in op_title
    assert f"upper bound {_fmt(gate['risk_upper_bound'])}" in op_title
    assert abs(rc_alpha - ry(gate["alpha"])) < 0.5
    # the infeasible policy
    assert abs(strict_alpha - strict_sy(strict["alpha"])) < 0.5
    assert strict_note == "policy strict is infeasible: it flags everything" and strict_ops == 0
    assert strict_row == "strict"
    # the curve reads the whole calibration set: not asked again for the same confidence and delta
    assert curve_requests == 1, curve_requests
    # no policies: the PUT that fits one
    assert "no policy yet" in hint and "PUT /v1/streams/fresh/policies/{name}" in hint, hint
    assert fresh_status.startswith("updated "), fresh_status
    assert fresh_charts == ["no labelled items", "no labelled items in this window"]
    # 404s: said where the policy view is, and nothing else is lost
    assert "policies unavailable" in broken and "HTTP 404" in broken, broken
    assert broken_status.startswith("updated "), broken_status
    assert broken_rc == "risk-coverage unavailable"
    assert broken_totals.startswith(f"{api['total']['n_items']}\nitems"), broken_totals
    assert broken_points == len(labelled)
