"""docker-compose.yml, the Prometheus config and the Grafana provisioning and dashboard: every
file, port, variable, volume and route they name exists and agrees with the service."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.settings import NOT_SETTINGS, Settings
from tests.deploy.conftest import RunningApp, Scrape
from tests.deploy.deployfiles import (
    COMPOSE,
    ROOT,
    Stage,
    exec_form,
    interpolate,
    load_yaml,
    promql_names,
    require_tool,
    setting_env_names,
)

#: Series Prometheus makes itself for every scrape target.
PROMETHEUS_SERIES = {"up"}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service = compose["services"][name]
    assert isinstance(service, dict)
    return service


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes in compose's long syntax, whichever syntax the file uses."""
    out = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            out.append(entry)
            continue
        source, _, rest = entry.partition(":")
        target, _, mode = rest.partition(":")
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append({"type": kind, "source": source, "target": target, "read_only": mode == "ro"})
    return out


def _mount(service: dict[str, Any], target: str) -> dict[str, Any]:
    (found,) = [v for v in _volumes(service) if v["target"] == target]
    return found


def _container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _dashboard() -> dict[str, Any]:
    data = json.loads((ROOT / "deploy/grafana/dashboards/xentcore.json").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels of collapsed rows
    return out


def _queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text.strip())
            assert match, f"variable {variable['name']}: {text}"
            exprs.append(f"count by ({match[2]}) ({match[1]})")
    return exprs


def test_compose_file_matches_the_compose_spec() -> None:
    require_tool(
        "check_jsonschema" if importlib.util.find_spec("check_jsonschema") else None,
        "check-jsonschema",
        "pip install check-jsonschema",
    )
    schema = ["--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_plain_up_is_the_service_and_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == {"xent", "postgres"}
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]


def test_service_is_built_from_the_repo(compose: dict[str, Any]) -> None:
    xent = _service(compose, "xent")
    context = (COMPOSE.parent / xent["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / xent["build"].get("dockerfile", "Dockerfile")).is_file()
    assert "container_name" not in xent, "a fixed name would stop `--scale`"


def test_service_runs_hardened_with_limits(compose: dict[str, Any]) -> None:
    xent = _service(compose, "xent")
    assert xent["restart"] in {"always", "unless-stopped", "on-failure"}
    assert xent["read_only"] is True
    assert xent["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in xent["security_opt"]
    resources = xent["deploy"]["resources"]
    assert {"cpus", "memory"} <= set(resources["limits"])
    assert {"cpus", "memory"} <= set(resources["reservations"])


def test_service_writes_only_to_its_data_volume_and_tmpfs(
    compose: dict[str, Any], final_stage: Stage
) -> None:
    xent = _service(compose, "xent")
    env = _environment(xent)
    data_dir = final_stage.env()["XENT_DATA_DIR"]
    assert env.get("XENT_DATA_DIR", data_dir) == data_dir
    data = _mount(xent, data_dir)
    assert data["type"] == "volume" and not data.get("read_only")
    tmpfs = {entry.split(":")[0] for entry in xent["tmpfs"]}
    assert {"/tmp", env["PROMETHEUS_MULTIPROC_DIR"]} <= tmpfs
    assert env["PROMETHEUS_MULTIPROC_DIR"] == final_stage.env()["PROMETHEUS_MULTIPROC_DIR"]


def test_ports_match_the_image_and_the_settings(
    compose: dict[str, Any], final_stage: Stage
) -> None:
    xent = _service(compose, "xent")
    port = Settings.model_fields["port"].default
    exposed = {int(p) for ins in final_stage.all("EXPOSE") for p in ins.args.split()}
    assert _container_ports(xent) == exposed == {port}
    assert int(_environment(xent)["XENT_PORT"]) == port
    for service in compose["services"].values():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{mapping}: published on loopback"


def test_service_environment_is_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _environment(_service(compose, "xent"))
    xent = {k: v for k, v in env.items() if k.startswith("XENT_")}
    assert set(xent) <= setting_env_names(), set(xent) - setting_env_names()
    assert set(env) - set(xent) == {"PROMETHEUS_MULTIPROC_DIR"}
    for key, value in xent.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.host == "0.0.0.0" and settings.workers >= 2
    assert settings.api_keys == [], "open by default, for local use; README says to set keys"
    assert settings.metrics_public is False, "with keys set, /metrics needs one too"


@pytest.mark.parametrize("password", [None, "s3cret-Pass"])
def test_database_url_names_the_postgres_service(
    compose_raw: dict[str, Any], password: str | None
) -> None:
    compose = interpolate(compose_raw, {"POSTGRES_PASSWORD": password} if password else {})
    url = urlsplit(_environment(_service(compose, "xent"))["XENT_DATABASE_URL"])
    postgres = _environment(_service(compose, "postgres"))
    assert url.scheme == "postgresql"
    assert url.hostname == "postgres" and url.hostname in compose["services"]
    assert url.port == 5432
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"] == (password or "xent-local-only")
    assert url.path == "/" + postgres["POSTGRES_DB"]


def test_service_waits_for_a_healthy_postgres(compose: dict[str, Any]) -> None:
    xent, postgres = _service(compose, "xent"), _service(compose, "postgres")
    assert xent["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert re.fullmatch(r"postgres:\d+[\w.-]*", postgres["image"]), "the official image, by tag"
    check = " ".join(postgres["healthcheck"]["test"])
    assert "pg_isready" in check and "-h 127.0.0.1" in check
    store = _mount(postgres, "/var/lib/postgresql/data")
    assert store["type"] == "volume" and store["source"] in compose["volumes"]
    assert "ports" not in postgres, "PostgreSQL is reachable on the compose network only"


def test_service_healthcheck_is_the_images(
    compose: dict[str, Any], final_stage: Stage, running_app: RunningApp
) -> None:
    check = _service(compose, "xent")["healthcheck"]
    (image_check,) = final_stage.all("HEALTHCHECK")
    argv = exec_form(image_check.args.partition("CMD ")[2].strip())
    assert check["test"] == ["CMD", *(argv or [])]
    assert {"interval", "timeout", "retries"} <= set(check)
    running_app.assert_route("/healthz")


def test_volumes_are_declared_and_bind_sources_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in _volumes(service):
            if volume["type"] == "volume":
                assert volume["source"] in declared, f"{name}: volume {volume['source']}"
                used.add(volume["source"])
            elif volume["type"] == "bind":
                source = COMPOSE.parent / volume["source"]
                assert source.exists(), f"{name}: {volume['source']} does not exist"
                assert volume.get("read_only"), f"{name}: mount the repo's files read-only"
    assert used == declared, f"declared but unused: {declared - used}"


def _xentcore_job(compose: dict[str, Any]) -> dict[str, Any]:
    """The scrape job of the service in the Prometheus config the compose file mounts."""
    prometheus = _service(compose, "prometheus")
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    mount = _mount(prometheus, config_arg.partition("=")[2])
    config = load_yaml(COMPOSE.parent / mount["source"])
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "xentcore"]
    assert isinstance(job, dict)
    return job


def _secrets(service: dict[str, Any]) -> dict[str, str]:
    """A service's secrets: path in its container -> the top-level secret's name."""
    out = {}
    for entry in service.get("secrets", []):
        entry = {"source": entry} if isinstance(entry, str) else entry
        target = str(entry.get("target", entry["source"]))
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = entry["source"]
    return out


def _token_file(compose: dict[str, Any]) -> Path:
    """The host file compose mounts where Prometheus reads its key for /metrics."""
    credentials = _xentcore_job(compose)["authorization"]["credentials_file"]
    secret = compose["secrets"][_secrets(_service(compose, "prometheus"))[credentials]]
    return COMPOSE.parent / str(secret["file"])


def test_prometheus_scrapes_every_service_replica(
    compose: dict[str, Any], running_app: RunningApp
) -> None:
    job = _xentcore_job(compose)
    running_app.assert_route(job.get("metrics_path", "/metrics"))
    (discovery,) = job["dns_sd_configs"]
    assert discovery["type"] == "A", "one address per replica (docker compose --scale)"
    assert discovery["names"] == ["xent"] and "xent" in compose["services"]
    assert discovery["port"] in _container_ports(_service(compose, "xent"))


def test_prometheus_sends_a_key_from_a_mounted_file(
    compose_raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    authorization = _xentcore_job(compose)["authorization"]
    assert authorization.get("type", "Bearer").lower() == "bearer"
    assert set(authorization) <= {"type", "credentials_file"}, "never a key in the config"
    mounted = _secrets(_service(compose, "prometheus"))
    assert authorization["credentials_file"] in mounted, "the file is a secret of the container"
    (name,) = mounted.values()
    for other, service in compose["services"].items():
        if other != "prometheus":
            assert name not in _secrets(service).values(), f"{other} gets Prometheus' key"
    default = _token_file(compose)
    assert default.is_file(), f"{default}: the default must exist for `--profile monitoring`"
    assert default.read_text(encoding="utf-8").strip() == "", "the repository holds no key"
    chosen = interpolate(compose_raw, {"XENT_METRICS_TOKEN_FILE": "/etc/xent/prometheus-key"})
    assert _token_file(chosen) == Path("/etc/xent/prometheus-key")


@pytest.mark.parametrize(
    ("variables", "token", "status"),
    [
        ({}, None, 200),  # the defaults: no keys, the repository's empty file
        ({"XENT_API_KEYS": "client-key,prometheus-key"}, "prometheus-key\n", 200),
        ({"XENT_API_KEYS": "client-key,prometheus-key"}, None, 401),  # no file given
        ({"XENT_API_KEYS": "client-key,prometheus-key"}, "other-key", 401),
        ({"XENT_API_KEYS": "client-key", "XENT_METRICS_PUBLIC": "true"}, None, 200),
    ],
)
def test_prometheus_scrapes_the_service_as_configured(
    compose_raw: dict[str, Any],
    scrape: Scrape,
    tmp_path: Path,
    variables: dict[str, str],
    token: str | None,
    status: int,
) -> None:
    """The compose file's xent settings and Prometheus' key file, as the operator sets them."""
    if token is not None:
        (tmp_path / "key").write_text(token, encoding="utf-8")
        variables = {**variables, "XENT_METRICS_TOKEN_FILE": str(tmp_path / "key")}
    compose = interpolate(compose_raw, variables)
    env = _environment(_service(compose, "xent"))
    xent = {k: v for k, v in env.items() if k.startswith("XENT_") and k != "XENT_DATABASE_URL"}
    sent = _token_file(compose).read_text(encoding="utf-8")
    assert scrape(xent, sent) == status


def test_every_xent_name_is_a_setting_or_reserved() -> None:
    """Comments included: the files name no retired or misspelt variable."""
    for path in (COMPOSE, ROOT / "deploy/prometheus/prometheus.yml"):
        names = set(re.findall(r"\bXENT_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
        unknown = names - setting_env_names() - NOT_SETTINGS
        assert not unknown, f"{path.name}: {sorted(unknown)}"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(
    compose: dict[str, Any],
) -> None:
    grafana = _service(compose, "grafana")
    provisioning = COMPOSE.parent / _mount(grafana, "/etc/grafana/provisioning")["source"]
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.hostname in compose["services"]
    assert url.port in _container_ports(_service(compose, "prometheus"))
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True

    (provider,) = load_yaml(provisioning / "dashboards" / "xentcore.yml")["providers"]
    dashboards = COMPOSE.parent / _mount(grafana, provider["options"]["path"])["source"]
    assert (dashboards / "xentcore.json").is_file()
    home = Path(_environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (dashboards / home.relative_to(provider["options"]["path"])).is_file()

    uids = {
        ref["uid"]
        for panel in _panels(_dashboard())
        for ref in [
            panel.get("datasource"),
            *[t.get("datasource") for t in panel.get("targets", [])],
        ]
        if ref
    }
    assert uids == {datasource["uid"]}, "every panel queries the provisioned datasource"


def test_dashboard_queries_only_exported_series(running_app: RunningApp) -> None:
    used_metrics: set[str] = set()
    used_labels: set[str] = set()
    for expr in _queries(_dashboard()):
        metrics, labels = promql_names(expr)
        assert metrics, f"no metric found in {expr!r}"
        used_metrics |= metrics
        used_labels |= labels
    unknown = used_metrics - running_app.metric_names - PROMETHEUS_SERIES
    assert not unknown, f"not exported by the service: {sorted(unknown)}"
    unknown_labels = used_labels - running_app.label_names - TARGET_LABELS
    assert not unknown_labels, f"labels the service does not export: {sorted(unknown_labels)}"
    assert {
        "xent_stream_items_scored_total",
        "xent_stream_items_flagged_total",
        "xent_stream_item_loss_bucket",
        "xent_stream_item_confidence_bucket",
        "xent_http_requests_total",
        "xent_http_request_duration_seconds_bucket",
    } <= used_metrics


def test_dashboard_shows_the_per_stream_series() -> None:
    exprs = _queries(_dashboard())
    flagged = [e for e in exprs if "xent_stream_items_flagged_total" in e]
    assert any(re.search(r"by \([^)]*\breason\b", e) for e in flagged), "flags by reason"
    for histogram in ("xent_stream_item_loss_bucket", "xent_stream_item_confidence_bucket"):
        quantiles = [e for e in exprs if histogram in e and "histogram_quantile" in e]
        assert quantiles and all(re.search(r"by \(le, stream\)", e) for e in quantiles)
    assert any("histogram_quantile" in e and "xent_http_request_duration" in e for e in exprs)
    jobs = {job for e in exprs for job in re.findall(r'job="([^"]+)"', e)}
    config = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")
    assert jobs <= {j["job_name"] for j in config["scrape_configs"]}


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = _dashboard()
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    assert dashboard["uid"] == "xentcore"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"panel {panel['title']!r}: duplicate refId"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} overflows the grid"
