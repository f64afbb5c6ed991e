"""Schemathesis against the app's own ``/openapi.json``, in process (ASGI), with every check.

The scoring routes parse their bodies themselves but declare them through ``openapi_extra``, so
schemathesis generates full request bodies for them from the same pydantic models. Bounded
and derandomized: the same examples on every run.

``positive_data_acceptance`` ("a schema-valid request gets a 2xx") runs only on the operations
whose document says everything the server checks. It cannot hold for the scoring routes: their
value rules (rows summing to 1, labels within [0, K), lengths that match) are not expressible in
JSON Schema, and the KServe binary framing of their ``application/octet-stream`` form is not
either. Nor for the ``/v1/streams/{stream}/...`` queries, whose ``since``, ``until`` and
``cursor`` are declared as free strings (a known gap: ``test_stream_times_declare_a_format``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import create_app
from service.settings import Settings

KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FULLY_DOCUMENTED = ("/healthz", "/readyz", "/metrics", "/v1/streams")
BOUNDED = settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


#: The app's store directory: the schema is loaded at import (not from a fixture), because
#: schemathesis's lazy ``from_fixture`` loader writes pytest's private ``Function._nodeid``,
#: which pytest 9.2 removed. The app's lifespan (which opens the store) does not run here, so
#: the directory stays empty; it is removed when the module's tests end.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="xent-schemathesis-"))
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(data_dir=_DATA_DIR / "data", api_keys=[KEY]))
)


@pytest.fixture(scope="module", autouse=True)
def _remove_data_dir() -> Iterator[None]:
    yield
    shutil.rmtree(_DATA_DIR, ignore_errors=True)


def _documented_precisely(case: Any) -> bool:
    return str(case.operation.path) in FULLY_DOCUMENTED


@schema.parametrize()
@BOUNDED
def test_api_conforms_to_its_schema(case: Any) -> None:
    excluded = [] if _documented_precisely(case) else [positive_data_acceptance]
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)


def test_stream_times_declare_a_format(tmp_path: Path) -> None:
    document = create_app(Settings(data_dir=tmp_path / "data")).openapi()
    for route in ("summary", "flagged"):
        operation = document["paths"][f"/v1/streams/{{stream}}/{route}"]["get"]
        for param in operation["parameters"]:
            if param["name"] in ("since", "until"):
                assert "date-time" in str(param["schema"]), (route, param["name"])
