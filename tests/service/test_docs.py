"""``/docs`` and ``/redoc`` work offline: every asset they reference is served by the service.

In process, the pages are parsed and each referenced URL fetched from the app itself; in a real
headless Chromium, with every request that leaves the service's host aborted, both pages render
the API (so nothing they need comes from a CDN or a font service).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.api.docs import ASSETS
from tests.support.browser import CHROMIUM, FLAGS, playwright
from tests.support.server import xent_serve

PAGES = ("/docs", "/redoc")


class _Refs(HTMLParser):
    """Every ``src`` and ``href`` of a page, and the quoted URLs of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        self._script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script:
            self.urls += re.findall(r"""["'`]((?:https?:)?//[^"'`]+|/[\w./-]+)["'`]""", data)


def references(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
def test_page_references_only_the_service_itself(client: Any, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = references(response.text)
    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from outside"
        fetched = client.get(url)
        assert fetched.status_code == 200, (page, url, fetched.status_code)
        assert len(fetched.content) > 0
    assert "fonts.googleapis" not in response.text
    assert "cdn.jsdelivr" not in response.text and "tiangolo" not in response.text


def test_swagger_ui_asks_no_outside_validator(client: Any) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_assets_are_served_with_their_type_and_cache_headers(client: Any, name: str) -> None:
    response = client.get(f"/docs/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSETS[name]
    assert "max-age" in response.headers["cache-control"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(response.content) > 1000


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapp.py", "swagger-ui-bundle.js.map"])
def test_only_the_listed_assets_are_served(client: Any, name: str) -> None:
    assert client.get(f"/docs/static/{name}").status_code == 404


def test_pages_follow_the_root_path_of_a_proxy(make_client: Any) -> None:
    client = make_client()
    client.app.root_path = "/xent"  # what `uvicorn --root-path /xent` sets on every request
    html = client.get("/docs").text
    assert "/xent/docs/static/swagger-ui-bundle.js" in html and "/xent/openapi.json" in html


def test_docs_stay_open_with_api_keys(make_client: Any) -> None:
    client = make_client(api_keys=["k"])
    for path in (*PAGES, "/docs/static/swagger-ui-bundle.js", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 200, path


def test_docs_render_in_a_browser_without_internet(tmp_path: Path) -> None:
    sync_playwright = playwright()
    with xent_serve(tmp_path) as server, sync_playwright() as pw:
        host = urlsplit(server.url).netloc
        outside: list[str] = []
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def only_the_service(route: Any) -> None:
                if urlsplit(route.request.url).netloc == host:
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_service)
            page.goto(f"{server.url}/docs")
            page.wait_for_selector('[data-path="/v1/score"]', timeout=20_000)
            assert page.locator(".swagger-ui .opblock").count() > 5
            page.goto(f"{server.url}/redoc")
            page.wait_for_selector("text=Cross-entropy loss", timeout=20_000)
            assert page.locator("[data-section-id]").count() > 5
            page.screenshot(path=str(tmp_path / "redoc.png"))
            assert errors == [], errors
        finally:
            browser.close()
    assert outside == [], f"the pages asked for outside resources: {outside}"
