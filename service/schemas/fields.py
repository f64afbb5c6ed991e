"""Constrained scalar fields shared by the request models, and the one stream-name pattern.

``STREAM_PATTERN`` (defined in ``service.names``) is the only definition of a valid stream name:
the ``stream`` field of every request and the ``{name}`` path parameter of ``/v1/streams/{name}``
both use it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from service.names import STREAM_PATTERN

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "STREAM_PATTERN",
    "STRICT",
    "Id",
    "Int64",
    "StreamName",
    "Unit",
]

#: Requests: no unknown keys, no string-to-number or bool-to-int coercion, no NaN or infinity.
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
#: A number in [0, 1].
Unit = Annotated[float, Field(ge=0, le=1)]
Id = Annotated[str, Field(max_length=256)]
StreamName = Annotated[
    str,
    Field(
        pattern=STREAM_PATTERN,
        description="Monitoring stream to record the batch under (`[A-Za-z0-9_.:-]{1,128}`).",
        examples=["fraud-model:v3"],
    ),
]
