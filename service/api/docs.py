"""``GET /docs`` (Swagger UI) and ``GET /redoc`` (ReDoc), with every asset served from here.

FastAPI's own pages load Swagger UI, ReDoc, a favicon and Google fonts from CDNs, so they are
blank without internet. These pages are FastAPI's (``get_swagger_ui_html``, ``get_redoc_html``)
pointed at copies of the same assets that the ``fastapi-offline`` package ships (Swagger UI 5,
Apache-2.0; ReDoc 2, MIT), served under ``/docs/static/``. Swagger UI's validator badge, which
would call an outside validator, is off; ReDoc gets no Google fonts. Nothing the pages need
leaves the service, so they work air-gapped, and a Content-Security-Policy keeps them from
trying: the one outside address left in ReDoc's bundle, its "API docs by Redocly" logo on a
CDN, is blocked by the browser (the link stays, as text) instead of hanging on a closed network.

Paths are built on the request's ``root_path``, so the pages work behind a proxy that mounts
the service under a prefix.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response

__all__ = ["ASSETS", "router"]

router = APIRouter(include_in_schema=False)

STATIC = "/docs/static"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
#: The only files served, with their media types: no path from a request reaches the disk.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
#: The assets change only with the installed package: let browsers keep them for a day.
_CACHE = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
#: The pages may load from the service only. Both start from an inline script and style, and
#: ReDoc's search runs in a worker made from a blob.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}


@cache
def asset(name: str) -> bytes:
    """The bytes of one of :data:`ASSETS`, read once from the ``fastapi_offline`` package."""
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """The interactive API page (Swagger UI)."""
    root = _root(request)
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC}/favicon.png",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers.update(_PAGE_HEADERS)
    return page


@router.get(OAUTH2_REDIRECT)
def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page (as FastAPI serves it)."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """The reference page (ReDoc)."""
    root = _root(request)
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{STATIC}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{STATIC}/favicon.png",
        with_google_fonts=False,
    )
    page.headers.update(_PAGE_HEADERS)
    return page


@router.get(STATIC + "/{name}")
def docs_asset(name: str) -> Response:
    """A Swagger UI or ReDoc asset."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, "not found")
    return Response(asset(name), media_type=media_type, headers=_CACHE)
