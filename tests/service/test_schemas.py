"""service.schemas: one home for the literals, the stream-name pattern and the tensor dtypes."""

from __future__ import annotations

import re
import typing
from typing import Any

import pytest

from service.app import create_app
from service.schemas import (
    STREAM_PATTERN,
    TENSOR_DTYPES,
    BatchRequest,
    TensorDatatype,
    TensorRef,
)
from service.settings import Settings
from xentcore.types import CONFIDENCE_METHODS, DEFAULT_EPS, INPUT_TYPES, REASONS, TASKS


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("data")))
    return app.openapi()


def _enum(schema: dict[str, Any]) -> list[str]:
    for option in schema.get("anyOf", [schema]):
        if "enum" in option:
            return list(option["enum"])
    raise AssertionError(schema)


def test_literals_are_the_cores(doc: dict[str, Any]) -> None:
    components = doc["components"]["schemas"]
    props = components["BatchRequest"]["properties"]
    assert _enum(props["task"]) == list(TASKS)
    assert _enum(props["input_type"]) == list(INPUT_TYPES)
    assert _enum(props["confidence"]) == list(CONFIDENCE_METHODS)
    assert props["clip_eps"]["default"] == DEFAULT_EPS
    reasons = components["ScoreColumns"]["properties"]["reasons"]["items"]["items"]
    assert _enum(reasons) == list(REASONS)
    assert _enum(components["FlaggedItem"]["properties"]["reasons"]["items"]) == list(REASONS)


def test_one_stream_pattern_for_bodies_and_paths(doc: dict[str, Any]) -> None:
    stream = BatchRequest.model_json_schema()["properties"]["stream"]["anyOf"][0]
    assert stream["pattern"] == STREAM_PATTERN
    path_patterns = {
        param["schema"]["pattern"]
        for path, item in doc["paths"].items()
        if "{stream}" in path
        for operation in item.values()
        for param in operation.get("parameters", [])
        if param["in"] == "path" and param["name"] == "stream"
    }
    assert path_patterns == {STREAM_PATTERN}
    assert re.fullmatch(STREAM_PATTERN, "fraud-model:v3")
    assert not re.fullmatch(STREAM_PATTERN, "a/b") and not re.fullmatch(STREAM_PATTERN, "x" * 129)


def test_tensor_dtypes_cover_the_datatype_literal() -> None:
    assert set(TENSOR_DTYPES) == set(typing.get_args(TensorDatatype))
    assert TensorRef.model_json_schema()["properties"]["datatype"]["enum"] == list(TENSOR_DTYPES)
