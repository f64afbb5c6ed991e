"""``GET /dashboard/``: the monitoring page, served from files vendored in the package.

The page is plain HTML, CSS and JavaScript (no build step, no CDN); it reads the monitoring API
(``/v1/streams...``) from the browser and refreshes itself every 10 seconds. With
``XENT_API_KEYS`` set, the page and its data need a key like ``/v1``: a browser gets a small
form that trades the key for a session cookie (``POST /dashboard/login`` with the key in
``X-API-Key``; see ``service.middleware.auth``), accepted for GET requests of the dashboard and the
monitoring API only, never for scoring.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from service.middleware.auth import SESSION_COOKIE, given_key, session_token

__all__ = ["router"]

router = APIRouter(tags=["dashboard"], include_in_schema=False)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
#: The only files served: a fixed list, so no path from a request reaches the file system.
ASSETS = ("dashboard.css", "dashboard.js", "login.js")
_CACHE = "no-cache"
_SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": _CACHE,
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
}


def asset(name: str) -> bytes:
    """The bytes of a vendored file under ``service/static``."""
    return resources.files("service").joinpath("static", name).read_bytes()


def _file(name: str) -> Response:
    suffix = name[name.rfind(".") :]
    return Response(asset(name), media_type=_TYPES[suffix], headers=_SECURITY)


@router.get("/dashboard")
def dashboard_redirect() -> RedirectResponse:
    """The page lives at ``/dashboard/`` so its relative links resolve."""
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard/")
def dashboard_page() -> Response:
    """The dashboard page."""
    return _file("dashboard.html")


@router.get("/dashboard/static/{name}")
def dashboard_asset(name: str) -> Response:
    """A vendored script or stylesheet (open: they hold no data)."""
    if name not in ASSETS:
        raise HTTPException(404, "not found")
    return _file(name)


@router.post("/dashboard/login")
def dashboard_login(request: Request) -> Response:
    """Set the session cookie from a valid key (the auth middleware has checked it)."""
    response = Response(status_code=204)
    key = given_key(request.scope)
    if key is not None and request.app.state.settings.api_keys:
        response.set_cookie(
            SESSION_COOKIE,
            session_token(key),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response
