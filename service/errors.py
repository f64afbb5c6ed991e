"""Every client error in FastAPI's 422 shape, short and without the submitted input.

``{"detail": [{"loc": ["body", field, index...], "msg": ..., "type": ...}]}`` for invalid input,
whether pydantic (structure, types, NaN / Infinity) or ``xentcore.InputError`` (values, shapes,
row sums) found it. pydantic's ``input``, ``ctx`` and ``url`` are dropped (FastAPI echoes the
whole input back by default), messages and location parts are truncated, and at most
``MAX_ERRORS`` entries are returned, so an error body stays a few hundred bytes whatever was sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from service.schemas import UNION_TAGS
from xentcore import InputError

__all__ = [
    "MAX_ERRORS",
    "RequestInvalid",
    "error_item",
    "input_error_details",
    "install_error_handlers",
    "pydantic_details",
]

MAX_ERRORS = 10
_MAX_MSG = 240
_MAX_PART = 64


class RequestInvalid(Exception):
    """A 422 with ready-made ``detail`` entries (raised in a worker thread, answered here)."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(details[0]["msg"] if details else "invalid request")
        self.details = details


def _part(part: Any) -> str | int:
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    text = str(part)
    return text if len(text) <= _MAX_PART else text[: _MAX_PART - 3] + "..."


def error_item(loc: Iterable[Any], msg: str, kind: str) -> dict[str, Any]:
    """One ``detail`` entry, with ``body`` in front of the location and everything truncated."""
    text = msg if len(msg) <= _MAX_MSG else msg[: _MAX_MSG - 3] + "..."
    return {"loc": ["body", *(_part(p) for p in loc)], "msg": text, "type": kind}


def _clean_loc(loc: Sequence[Any], kind: str) -> list[Any]:
    """The location without union tags (an unknown key named like a tag stays: it is last)."""
    keep_last = kind == "extra_forbidden"
    head = loc[:-1] if keep_last else loc
    out = [p for p in head if p not in UNION_TAGS]
    return [*out, loc[-1]] if keep_last and loc else out


def pydantic_details(
    errors: Iterable[Any], prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """pydantic error dicts -> ``detail`` entries (deduplicated by location, capped)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for err in errors:
        loc = (*prefix, *_clean_loc(tuple(err["loc"]), err["type"]))
        if loc in seen:  # one entry per place: a union reports each member's failure
            continue
        seen.add(loc)
        out.append(error_item(loc, str(err["msg"]), str(err["type"])))
        if len(out) == MAX_ERRORS:
            break
    return out


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """A pydantic ``ValidationError`` of a request body -> ``detail`` entries."""
    return pydantic_details(
        exc.errors(include_url=False, include_input=False, include_context=False)
    )


def input_error_details(exc: InputError) -> list[dict[str, Any]]:
    """A core ``InputError`` -> one ``detail`` entry at its location."""
    return [error_item(exc.location, exc.reason, exc.kind)]


def _unprocessable(details: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": details}, status_code=422)


async def _on_input_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    return _unprocessable(input_error_details(exc))


async def _on_request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestInvalid)
    return _unprocessable(exc.details)


async def _on_fastapi_validation(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own parameter validation (query, path): same shape, input stripped."""
    assert isinstance(exc, RequestValidationError)
    out: list[dict[str, Any]] = []
    for err in exc.errors()[:MAX_ERRORS]:
        loc = [_part(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid"))[:_MAX_MSG]
        out.append({"loc": loc, "msg": msg, "type": str(err.get("type", "value_error"))})
    return _unprocessable(out)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str | list) else str(exc.detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above (unexpected errors are answered by
    ``service.middleware.context``)."""
    app.add_exception_handler(InputError, _on_input_error)
    app.add_exception_handler(RequestInvalid, _on_request_invalid)
    app.add_exception_handler(RequestValidationError, _on_fastapi_validation)
    app.add_exception_handler(HTTPException, _on_http_error)
