"""Array fields: JSON lists, binary ``TensorRef`` objects, and the unions that pick between them.

A field that takes several shapes (``predictions``: N or N x K numbers or a tensor; ``labels``:
numbers, class names, N x K targets or a tensor) is a union picked by a discriminator that looks
at the first element only, so a 1,000,000-number batch is validated once, in pydantic-core, with
an exact error location. The tags of those unions (``<N>``, ``<N x K>``, ...) never reach a
client: ``service.errors`` strips every tag in ``UNION_TAGS`` from error locations.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from service.schemas.fields import INT64_MAX, STRICT, Id, Int64

__all__ = [
    "TENSOR_DTYPES",
    "UNION_TAGS",
    "Ids",
    "Integers",
    "LabelArray",
    "Matrix",
    "OneId",
    "PosWeight",
    "Predictions",
    "Strings",
    "TensorDatatype",
    "TensorRef",
    "Vector",
    "VectorOrTensor",
]

# --- union tags (stripped from error locations by service.errors) ---------------------------
VECTOR, MATRIX, NAMES, STRINGS, INTEGERS, NUMBER, TENSOR = (
    "<N>",
    "<N x K>",
    "<names>",
    "<strings>",
    "<integers>",
    "<number>",
    "<tensor>",
)
UNION_TAGS = frozenset({VECTOR, MATRIX, NAMES, STRINGS, INTEGERS, NUMBER, TENSOR})

# fail_fast: a list of a million strings gives one error, not a million.
Vector = Annotated[list[float], Field(fail_fast=True)]
Matrix = Annotated[list[Vector], Field(fail_fast=True)]
Strings = Annotated[list[Id], Field(fail_fast=True)]
Integers = Annotated[list[Int64], Field(fail_fast=True)]

TensorDatatype = Literal["FP16", "FP32", "FP64", "INT32", "INT64"]
#: Each ``TensorRef.datatype`` and the numpy dtype of its bytes (little-endian).
TENSOR_DTYPES: dict[str, str] = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT32": "<i4",
    "INT64": "<i8",
}


class TensorRef(BaseModel):
    """An array sent as raw bytes after the JSON (KServe binary data; README, "Binary tensors").

    The request carries the header `Inference-Header-Content-Length: L`; the body is L bytes of
    JSON, then the bytes of every tensor, little-endian and row-major, in the order the fields
    appear in the JSON.
    """

    model_config = STRICT

    datatype: TensorDatatype
    shape: Annotated[
        list[Annotated[int, Field(ge=0, le=INT64_MAX)]], Field(min_length=1, max_length=2)
    ]
    binary_data_size: Annotated[int, Field(ge=0, le=INT64_MAX)]


# --- discriminators: each looks at the value's type or its first element only ----------------
def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def _vector_or_matrix(value: Any) -> str:
    """An object is a tensor; a list whose first element is a list is a matrix; else a vector."""
    if isinstance(value, dict):
        return TENSOR
    return MATRIX if isinstance(_first(value), list) else VECTOR


def _label_form(value: Any) -> str:
    """As ``_vector_or_matrix``, and a list whose first element is a string holds names."""
    if isinstance(value, dict):
        return TENSOR
    first = _first(value)
    if isinstance(first, list):
        return MATRIX
    return NAMES if isinstance(first, str) else VECTOR


def _ids_form(value: Any) -> str:
    return STRINGS if isinstance(_first(value), str) else INTEGERS


def _number_or_vector(value: Any) -> str:
    return VECTOR if isinstance(value, list) else NUMBER


def _id_form(value: Any) -> str:
    return STRINGS if isinstance(value, str) else INTEGERS


Predictions = Annotated[
    Annotated[Vector, Tag(VECTOR)]
    | Annotated[Matrix, Tag(MATRIX)]
    | Annotated[TensorRef, Tag(TENSOR)],
    Discriminator(_vector_or_matrix),
]
LabelArray = Annotated[
    Annotated[Vector, Tag(VECTOR)]
    | Annotated[Strings, Tag(NAMES)]
    | Annotated[Matrix, Tag(MATRIX)]
    | Annotated[TensorRef, Tag(TENSOR)],
    Discriminator(_label_form),
]
VectorOrTensor = Annotated[
    Annotated[Vector, Tag(VECTOR)] | Annotated[TensorRef, Tag(TENSOR)],
    Discriminator(_vector_or_matrix),
]
Ids = Annotated[
    Annotated[Strings, Tag(STRINGS)] | Annotated[Integers, Tag(INTEGERS)],
    Discriminator(_ids_form),
]
OneId = Annotated[
    Annotated[Id, Tag(STRINGS)] | Annotated[Int64, Tag(INTEGERS)], Discriminator(_id_form)
]
PosWeight = Annotated[
    Annotated[float, Field(ge=0), Tag(NUMBER)] | Annotated[Vector, Tag(VECTOR)],
    Discriminator(_number_or_vector),
]
