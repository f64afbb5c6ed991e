"""What the routes of fitted things share (API.md section 10): policies
(``service.api.policies``) and calibrators (``service.api.calibrators``) are fitted on a
stream's calibration set, stored in versions, read back and listed the same way."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from fastapi import HTTPException, Path, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from service.api.streams import _ERRORS, _query_error, _read, iso, parse_time
from service.schemas.fields import STREAM_PATTERN
from service.settings import Settings
from service.store import Store
from service.store.calset import CalibrationSet
from service.store.fits import Kind

__all__ = [
    "PUT_ERRORS",
    "FitName",
    "SharedPathRoute",
    "body_error",
    "calibration_of",
    "listed",
    "put",
    "stored",
    "window",
]


class SharedPathRoute(APIRoute):
    """A route whose path other routes share with other methods (``PUT`` and ``GET`` of a
    policy): a 405 lists every method of the path in ``Allow``, not only this route's."""

    #: The methods of every path made of these routes.
    methods_of: ClassVar[dict[str, set[str]]] = {}

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        SharedPathRoute.methods_of.setdefault(self.path, set()).update(self.methods or ())

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = SharedPathRoute.methods_of.get(self.path, self.methods)
            response = JSONResponse(
                {"detail": "Method Not Allowed"},
                status_code=405,
                headers={"Allow": ", ".join(sorted(allowed))},
            )
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)


#: The answers of a PUT besides its 200: the read errors, and those of its body.
PUT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"description": "The body is not JSON"},
    413: {"description": "Body over XENT_MAX_BODY_BYTES"},
    415: {"description": "Content type is not JSON"},
}

FitName = Annotated[str, Path(pattern=STREAM_PATTERN, description="The fit's name")]


def window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise _query_error("until", "must be after since")
    return t0, t1


def calibration_of(
    request: Request, stream: str, confidence: str, t0: float | None, t1: float | None
) -> CalibrationSet:
    settings: Settings = request.app.state.settings

    def read(store: Store) -> CalibrationSet | None:
        if not store.has_stream(stream):
            return None
        return store.calibration_set(
            stream, confidence=confidence, since=t0, until=t1, limit=settings.max_calibration_items
        )

    found = _read(request, read)
    if found is None:
        raise HTTPException(404, f"no batch recorded under stream {stream!r}")
    return found


def body_error(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


def shown(stream: str, name: str, fit: dict[str, Any]) -> dict[str, Any]:
    """A stored fit as the API shows it: its name and stream first, its time in ISO 8601."""
    return {"name": name, "stream": stream, **fit, "fitted_at": iso(fit["fitted_at"])}


def put(
    request: Request, stream: str, kind: Kind, name: str, figures: dict[str, Any]
) -> dict[str, Any]:
    """Store ``figures`` as the name's next version; the stored fit as shown."""
    fit = _read(request, lambda store: store.put_fit(stream, kind, name, figures))
    return shown(stream, name, fit)


def stored(
    request: Request, stream: str, kind: Kind, name: str, version: int | None
) -> dict[str, Any]:
    """The newest version of a fit (or ``version``) as shown; 404 when there is none."""
    found = _read(request, lambda store: store.get_fit(stream, kind, name, version))
    if found is None:
        what = "policy" if kind == "policy" else "calibrator"
        raise HTTPException(404, f"no {what} {name!r} in stream {stream!r}")
    return shown(stream, name, found)


def listed(request: Request, stream: str, kind: Kind) -> list[dict[str, Any]]:
    """The newest version of each fit of ``kind``, by name, as shown."""
    rows = _read(request, lambda store: store.list_fits(stream, kind))
    return [shown(stream, str(row.pop("name")), row) for row in rows]
