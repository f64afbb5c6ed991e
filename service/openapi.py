"""The OpenAPI document, with the request models of the routes that parse their own body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.auth import document_security

__all__ = ["install_openapi"]


def install_openapi(
    app: FastAPI, models: Sequence[type[BaseModel]], *, metrics_key: bool = False
) -> None:
    """Make ``app.openapi()`` include ``models`` (and their sub-models) in ``components``,
    and the API-key schemes on the protected operations."""

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
