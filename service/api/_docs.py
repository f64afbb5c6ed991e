"""OpenAPI pieces shared by the routes: the documented request body and error responses.

The batch routes read their body themselves (see ``service.parsing``), so FastAPI does not
know their request model; ``request_body`` points the OpenAPI operation at it and
``service.openapi`` adds the model's schema to the document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.schemas import HTTPError, ValidationErrorResponse

__all__ = ["ERRORS", "request_body"]


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


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": HTTPError, "description": "Missing or invalid API key (`WWW-Authenticate`)."},
    408: {"model": HTTPError, "description": "The body did not arrive within the time limit."},
    413: {
        "model": HTTPError,
        "description": "Body over `XENT_MAX_BODY_BYTES`, or batch over "
        "`XENT_MAX_ITEMS` / `XENT_MAX_ELEMENTS`.",
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
