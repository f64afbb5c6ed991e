"""/dashboard: the page, its vendored assets, and the key (header or cookie) that guards it."""

from __future__ import annotations

from typing import Any

from service.api.dashboard import ASSETS
from service.middleware.auth import session_token


def test_page_and_assets_are_served(client: Any) -> None:
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/dashboard.js"' in page.text
    assert "https://" not in page.text  # nothing from a CDN
    for name in ASSETS:
        asset = client.get(f"/dashboard/static/{name}")
        assert asset.status_code == 200 and "https://" not in asset.text
    assert client.get("/dashboard/static/../app.py").status_code == 404
    assert client.get("/dashboard/static/secret.txt").status_code == 404


def test_key_guards_page_and_data(make_client: Any) -> None:
    client = make_client(api_keys=["k-123"])
    assert client.get("/dashboard/").status_code == 401
    html = client.get("/dashboard/", headers={"Accept": "text/html"})
    assert html.status_code == 401 and "API key" in html.text
    assert html.headers["www-authenticate"] == "Bearer"
    assert client.get("/dashboard/static/dashboard.js").status_code == 200  # assets are open
    assert client.get("/dashboard/", headers={"X-API-Key": "k-123"}).status_code == 200

    assert client.post("/dashboard/login", headers={"X-API-Key": "wrong"}).status_code == 401
    login = client.post("/dashboard/login", headers={"X-API-Key": "k-123"})
    assert login.status_code == 204
    cookie = login.headers["set-cookie"]
    token = session_token("k-123")
    assert f"xent_session={token}" in cookie and "k-123" not in cookie
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    client.cookies.clear()
    client.cookies.set("xent_session", token)
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/v1/streams").status_code == 200
    # the cookie never authorises scoring: only the read-only monitoring GETs
    body = {"predictions": [0.2, 0.9], "labels": [0, 1]}
    assert client.post("/v1/score", json=body).status_code == 401
    client.cookies.set("xent_session", "k-123")  # the raw key is not a session token
    assert client.get("/v1/streams").status_code == 401
