"""The Kubernetes manifests of deploy/k8s: valid objects that reference each other, the image,
the settings and the service's routes correctly."""

from __future__ import annotations

import importlib
import importlib.util
import re
from typing import Any

import pytest

from service.settings import NOT_SETTINGS, Settings, unknown_variables
from tests.deploy.conftest import RunningApp, Scrape
from tests.deploy.deployfiles import K8S, Stage, load_yaml, require_tool, setting_env_names

Manifests = dict[tuple[str, str], dict[str, Any]]
#: Kinds that need a CRD (not in Kubernetes' own schemas), kept out of kustomization.yaml.
CRD_KINDS = {"ServiceMonitor"}
#: Files meant to be applied by hand, never by `kubectl apply -k`.
BY_HAND = {"secret.example.yaml", "servicemonitor.yaml"}


def _one(manifests: Manifests, kind: str) -> dict[str, Any]:
    (found,) = [doc for (k, _), doc in manifests.items() if k == kind]
    return found


def _pod(manifests: Manifests) -> dict[str, Any]:
    pod = _one(manifests, "Deployment")["spec"]["template"]
    assert isinstance(pod, dict)
    return pod


def _container(manifests: Manifests) -> dict[str, Any]:
    (container,) = _pod(manifests)["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _port_number(container: dict[str, Any], port: int | str) -> int:
    """A container port given by number or by name."""
    for entry in container["ports"]:
        if port in (entry["containerPort"], entry.get("name")):
            return int(entry["containerPort"])
    raise AssertionError(f"port {port!r} is not a port of container {container['name']}")


def test_manifests_are_valid_kubernetes_objects(manifests: Manifests) -> None:
    require_tool(
        "kubernetes_validate" if importlib.util.find_spec("kubernetes_validate") else None,
        "kubernetes-validate",
        "pip install kubernetes-validate",
    )
    # Optional test dependencies without type information: imported as modules (Any).
    kubernetes_validate = importlib.import_module("kubernetes_validate")
    schema_error = importlib.import_module("jsonschema").ValidationError  # what it raises

    version = kubernetes_validate.latest_version()
    for (kind, name), doc in manifests.items():
        if kind in CRD_KINDS or kind == "Kustomization":
            continue
        body = {k: v for k, v in doc.items() if k != "_file"}
        try:
            kubernetes_validate.validate(body, version, strict=True)
        except schema_error as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{doc['_file']}: {kind}/{name} at {path}: {exc.message}", pytrace=False)


def test_every_kind_is_there(manifests: Manifests) -> None:
    kinds = {kind for kind, _ in manifests}
    required = {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret"}
    assert required <= kinds
    assert _one(manifests, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def test_kustomization_lists_existing_files_and_no_example_secret(manifests: Manifests) -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    assert not set(resources) & BY_HAND
    listed = {doc["_file"] for doc in manifests.values()} - {"kustomization.yaml"}
    assert listed - set(resources) == BY_HAND, "every other manifest is applied by -k"
    image = _container(manifests)["image"].split(":")[0]
    assert [i["name"] for i in kustomization["images"]] == [image]


def test_selectors_and_names_reference_each_other(manifests: Manifests) -> None:
    deployment = _one(manifests, "Deployment")
    labels = _pod(manifests)["metadata"]["labels"]
    assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert _selects(_one(manifests, "Service")["spec"]["selector"], labels)
    if ("PodDisruptionBudget", "xentcore") in manifests:
        pdb = manifests[("PodDisruptionBudget", "xentcore")]
        assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    target = _one(manifests, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_service_and_probes_reach_the_container_port(
    manifests: Manifests, final_stage: Stage, running_app: RunningApp
) -> None:
    container = _container(manifests)
    port = Settings.model_fields["port"].default
    exposed = {int(p) for ins in final_stage.all("EXPOSE") for p in ins.args.split()}
    assert {p["containerPort"] for p in container["ports"]} == exposed == {port}
    for entry in _one(manifests, "Service")["spec"]["ports"]:
        assert _port_number(container, entry["targetPort"]) == port
    probes = {name: container[name]["httpGet"] for name in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    if "startupProbe" in container:
        probes["startupProbe"] = container["startupProbe"]["httpGet"]
    for probe in probes.values():
        assert _port_number(container, probe["port"]) == port
        running_app.assert_route(probe["path"])


def test_prometheus_can_find_every_pod(manifests: Manifests, running_app: RunningApp) -> None:
    annotations = _pod(manifests)["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert _port_number(_container(manifests), int(annotations["prometheus.io/port"]))
    running_app.assert_route(annotations["prometheus.io/path"])
    monitor = _one(manifests, "ServiceMonitor")
    service = _one(manifests, "Service")
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        running_app.assert_route(endpoint["path"])


def _env_sources(manifests: Manifests) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap and the Secret whose keys the container gets as variables."""
    sources = {
        ("ConfigMap" if "configMapRef" in ref else "Secret"): ref.get("configMapRef")
        or ref.get("secretRef")
        for ref in _container(manifests)["envFrom"]
    }
    configmap = manifests[("ConfigMap", sources["ConfigMap"]["name"])]
    secret = manifests[("Secret", sources["Secret"]["name"])]
    return configmap, secret


def test_settings_come_from_the_configmap_and_the_secret(
    manifests: Manifests, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _container(manifests)
    configmap, secret = _env_sources(manifests)
    assert secret["_file"] == "secret.example.yaml"
    keys = {"XENT_DATABASE_URL", "XENT_API_KEYS", "XENT_METRICS_TOKEN"}
    assert set(secret["stringData"]) == keys
    assert all("EXAMPLE" in value for value in secret["stringData"].values()), "marked examples"
    assert secret["stringData"]["XENT_DATABASE_URL"].startswith("postgresql://")
    env = {**configmap["data"], **secret["stringData"]}
    env |= {e["name"]: e["value"] for e in container.get("env", [])}
    xent = {k: v for k, v in env.items() if k.startswith("XENT_")}
    known = setting_env_names() | NOT_SETTINGS
    assert set(xent) <= known, set(xent) - known
    assert set(env) - set(xent) == {"PROMETHEUS_MULTIPROC_DIR"}
    assert unknown_variables(env) == [], "every variable is a setting, or reserved and right"
    for key, value in xent.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.host == "0.0.0.0" and settings.port == _port_number(container, "http")
    assert settings.api_keys and settings.metrics_public is False, "/metrics needs a key"
    assert set(configmap["data"]).isdisjoint(secret["stringData"])


def test_servicemonitor_sends_the_secrets_metrics_token(
    manifests: Manifests, scrape: Scrape
) -> None:
    configmap, secret = _env_sources(manifests)
    (endpoint,) = _one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    assert not {"bearerTokenSecret", "bearerTokenFile", "basicAuth", "oauth2"} & set(endpoint)
    authorization = endpoint["authorization"]
    assert authorization.get("type", "Bearer").lower() == "bearer"
    reference = authorization["credentials"]
    assert reference["name"] == secret["metadata"]["name"], "the Secret the pods read"
    assert not reference.get("optional"), "a missing key is an error, not an open scrape"
    token = secret["stringData"][reference["key"]]
    keys = secret["stringData"]["XENT_API_KEYS"].split(",")
    assert token in keys, "the token is one of the API keys: the service knows no other"
    env = {**configmap["data"], **secret["stringData"]}
    assert scrape(env, token) == 200
    assert scrape(env, None) == 401, "the pod annotations' scrape, without a key"
    assert scrape({**env, "XENT_METRICS_PUBLIC": "true"}, None) == 200


def test_annotation_scraping_is_documented_as_keyless() -> None:
    """prometheus.io/* annotations cannot carry a key: the files say what to do instead."""
    for name in ("deployment.yaml", "servicemonitor.yaml", "configmap.yaml"):
        assert "XENT_METRICS_PUBLIC" in (K8S / name).read_text(encoding="utf-8"), name


def test_every_xent_name_is_a_setting_or_reserved() -> None:
    """Comments included: the manifests name no retired or misspelt variable."""
    for path in sorted(K8S.glob("*.yaml")):
        names = set(re.findall(r"\bXENT_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
        unknown = names - setting_env_names() - NOT_SETTINGS
        assert not unknown, f"{path.name}: {sorted(unknown)}"


def test_pod_runs_non_root_on_a_read_only_filesystem(
    manifests: Manifests, final_stage: Stage
) -> None:
    pod, container = _pod(manifests)["spec"], _container(manifests)
    uid = int(final_stage.all("USER")[-1].args.split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]), "the HPA's CPU target needs a request"
    assert {"cpu", "memory"} <= set(resources["limits"])


def test_tmp_and_metrics_dir_are_writable_volumes(manifests: Manifests, final_stage: Stage) -> None:
    pod, container = _pod(manifests)["spec"], _container(manifests)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts.values()) == set(volumes), "every volume mounted, every mount declared"
    env = {e["name"]: e["value"] for e in container["env"]}
    multiproc = env["PROMETHEUS_MULTIPROC_DIR"]
    assert multiproc == final_stage.env()["PROMETHEUS_MULTIPROC_DIR"]
    for path in ("/tmp", multiproc):
        volume = volumes[mounts[path]]
        assert "emptyDir" in volume, f"{path}: an emptyDir"
    assert volumes[mounts[multiproc]]["emptyDir"].get("medium") == "Memory"
