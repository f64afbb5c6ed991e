"""Fixtures of the deployment tests: the parsed deployment files, and a running app to check
them against (its routes, and the metric names its /metrics exports after real scoring).

The ``network`` marker (registered in pyproject.toml) marks the test that installs from PyPI;
``-m "not network"`` deselects it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from tests.deploy.deployfiles import (
    COMPOSE,
    DOCKERFILE,
    K8S,
    Stage,
    interpolate,
    load_yaml,
    load_yaml_all,
    parse_dockerfile,
)

with warnings.catch_warnings():
    # starlette asks for the httpx2 package; the TestClient works the same with httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@dataclass
class RunningApp:
    """A started app of ``create_app()``: a client, its route paths, and what /metrics shows."""

    client: TestClient
    routes: set[str]
    metric_names: set[str]
    label_names: set[str]
    metrics_text: str

    def assert_route(self, path: str) -> None:
        """``path`` is a route of the app and answers GET with 200."""
        assert path in self.routes, f"{path} is not a route of service.app.create_app()"
        status = self.client.get(path).status_code
        assert status == 200, f"GET {path} answered {status}"


@pytest.fixture(scope="session")
def stages() -> list[Stage]:
    """The Dockerfile's stages, in order."""
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def final_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    """docker-compose.yml as written."""
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.yml as `docker compose` sees it with no variable set: the defaults."""
    resolved = interpolate(compose_raw, {})
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="session")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s, by (kind, name); its file under ``_file``."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_all(path):
            name = doc.get("metadata", {}).get("name", path.stem)
            key = (doc["kind"], name)
            assert key not in out, f"{path.name}: {key} defined twice"
            out[key] = {**doc, "_file": path.name}
    return out


def _score_with_streams(client: TestClient) -> None:
    """Batches that touch every per-stream series: scored, flagged for each reason, losses."""
    body = {
        "predictions": [0.9, 0.2, 0.55, 0.05, 0.7],
        "labels": [1, 1, 0, 0, 1],
        "flag": {"min_confidence": 0.6, "max_loss": 1.0, "misclassified": True},
        "stream": "deploy-check",
    }
    assert client.post("/v1/score", json=body).status_code == 200
    multiclass = {
        "predictions": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]],
        "labels": [0, 1],
        "stream": "deploy-check",
    }
    assert client.post("/v1/score", json=multiclass).status_code == 200
    sequences = {
        "sequences": [{"id": "s1", "token_logprobs": [-0.1, -2.5, -0.3]}],
        "flag": {"min_confidence": 0.9, "min_token_probability": 0.5},
        "stream": "deploy-llm",
    }
    assert client.post("/v1/sequences/score", json=sequences).status_code == 200


@pytest.fixture(scope="session")
def running_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """``create_app()`` with a temporary SQLite store, after scoring batches under streams."""
    data = tmp_path_factory.mktemp("deploy-app")
    with TestClient(create_app(Settings(data_dir=data))) as client:
        _score_with_streams(client)
        response = client.get("/metrics")
        assert response.status_code == 200
        text = response.text
        names: set[str] = set()
        labels: set[str] = set()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                names.add(sample.name)
                labels |= set(sample.labels)
        routes = set(client.app.openapi()["paths"])  # type: ignore[attr-defined]
        yield RunningApp(client, routes, names, labels, text)


#: ``scrape(env, token)``: see the fixture.
Scrape = Callable[[Mapping[str, str], str | None], int]


@pytest.fixture
def scrape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scrape:
    """``scrape(env, token)``: the status of GET /metrics from an app configured by the
    ``XENT_*`` variables ``env`` alone, sent as Prometheus sends it: ``Authorization: Bearer
    <token>`` with the token trimmed (``credentials_file``), or no header when ``token`` is None.
    """

    def run(env: Mapping[str, str], token: str | None) -> int:
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.upper().startswith("XENT_")]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            settings = Settings(data_dir=tmp_path / "data")
        headers = {} if token is None else {"Authorization": f"Bearer {token.strip()}"}
        return int(TestClient(create_app(settings)).get("/metrics", headers=headers).status_code)

    return run


@pytest.fixture(scope="session")
def exported(running_app: RunningApp) -> set[str]:
    """Every sample name the service's /metrics shows (``*_total``, ``*_bucket``, ...)."""
    return running_app.metric_names
