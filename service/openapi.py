"""Every OpenAPI customisation: the documented request bodies, the shared error responses and
the document itself.

The batch routes read their body themselves (see ``service.parsing``), so FastAPI does not know
their request model: a route passes ``openapi_extra=request_body(Model)`` to point its operation
at the model, and ``install_openapi`` adds the model's schema (and its sub-models) to
``components``, plus the API-key security schemes. ``ERRORS`` documents the error answers every
batch route may give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.middleware.auth import document_security
from service.schemas import HTTPError, ValidationErrorResponse

__all__ = ["ERRORS", "install_openapi", "request_body"]


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON request body (and the binary form)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ref},
                "application/octet-stream": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "Binary tensors (see the README): the header "
                        "`Inference-Header-Content-Length: L`, L bytes of the JSON request "
                        "whose arrays may be `TensorRef` objects, then their raw "
                        "little-endian bytes in order.",
                    }
                },
            },
        }
    }


#: The error answers of the batch routes, for their ``responses=``.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": HTTPError, "description": "Missing or invalid API key (`WWW-Authenticate`)."},
    408: {"model": HTTPError, "description": "The body did not arrive within the time limit."},
    413: {
        "model": HTTPError,
        "description": "Body over `XENT_MAX_BODY_BYTES`, or batch over "
        "`XENT_MAX_ITEMS` / `XENT_MAX_ELEMENTS`.",
    },
    404: {
        "model": HTTPError,
        "description": "`flag.policy` or `calibrator` names nothing the request's `stream` has.",
    },
    415: {"model": HTTPError, "description": "Content type is not JSON."},
    422: {
        "model": ValidationErrorResponse,
        "description": "Invalid input: each entry names the "
        "field and index (`loc`), never the submitted value.",
    },
    500: {"model": HTTPError, "description": "Unexpected error; quote `request_id`."},
    503: {
        "model": HTTPError,
        "description": "Too many requests in flight: retry after `Retry-After` seconds.",
    },
}


def install_openapi(
    app: FastAPI, models: Sequence[type[BaseModel]], *, metrics_key: bool = True
) -> None:
    """Make ``app.openapi()`` include ``models`` (and their sub-models) in ``components``,
    and the API-key schemes on the protected operations (``/metrics`` among them when
    ``metrics_key``: unless ``XENT_METRICS_PUBLIC``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                own = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(own.pop("$defs", {}))
                components[model.__name__] = own
            document_security(schema, metrics_too=metrics_key)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
