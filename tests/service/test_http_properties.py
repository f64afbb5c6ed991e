"""Properties of the HTTP layer: nothing a client posts yields a 5xx, and refusals stay small.

Arbitrary JSON (including NaN / Infinity literals, huge integers and deep nesting), JSON objects
built from the request fields' own names, and arbitrary bytes are posted to every POST route of
an in-process app. Every answer is below 500; every 4xx is JSON with a ``detail`` and under
4 KB. Bounded by the hypothesis profile (derandomized under CI: tests/conftest.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import TestClient

ROUTES = [
    "/v1/score",
    "/v1/loss",
    "/v1/confidence",
    "/v1/flag",
    "/v1/calibration",
    "/v1/sequences/score",
]
FIELDS = [
    "predictions",
    "labels",
    "ids",
    "stream",
    "task",
    "flag",
    "per_item",
    "class_names",
    "sample_weights",
    "class_weights",
    "sequences",
    "token_logprobs",
    "logprobs",
    "content",
    "logprob",
    "token",
    "min_confidence",
    "max_loss",
    "datatype",
    "shape",
    "binary_data_size",
]
MAX_ERROR_BYTES = 4096
EXAMPLES = settings(max_examples=100)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, 0.5, 1.0, -0.1, 1e-300, 0, 1, 2, -1])
    | st.text(max_size=20)
)
keys = st.sampled_from(FIELDS) | st.text(max_size=10)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)
requests = st.dictionaries(keys, json_values, max_size=6)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("properties") / "data"
    app = create_app(Settings(data_dir=data_dir, max_items=1000, max_elements=100_000))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert len(response.content) < MAX_ERROR_BYTES
        assert "detail" in response.json()


def post(client: TestClient, route: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(route, content=body, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("route", ROUTES)
@EXAMPLES
@given(value=json_values)
def test_any_json_value_is_never_a_server_error(client: TestClient, route: str, value: Any) -> None:
    check(post(client, route, json.dumps(value).encode()))


@pytest.mark.parametrize("route", ROUTES)
@EXAMPLES
@given(value=requests)
def test_any_json_object_of_request_fields_is_never_a_server_error(
    client: TestClient, route: str, value: dict[str, Any]
) -> None:
    check(post(client, route, json.dumps(value).encode()))


@pytest.mark.parametrize("route", ROUTES)
@EXAMPLES
@given(body=st.binary(max_size=512), header=st.none() | st.from_regex(r"\A[0-9a-z+-]{0,6}\Z"))
def test_any_bytes_are_never_a_server_error(
    client: TestClient, route: str, body: bytes, header: str | None
) -> None:
    extra = {} if header is None else {"Inference-Header-Content-Length": header}
    check(post(client, route, body, **extra))
