"""The rendered chart: lint, Kubernetes schemas, CRD schema, and the properties users rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_render import (
    ALL_PROFILES,
    CHART,
    DEFAULT_ARGS,
    GPU_PROFILES,
    NAMESPACE,
    PROFILES,
    Manifest,
    containers,
    env_of,
    find,
    name_of,
    one,
    pod_spec,
    profile_args,
    profile_values,
    run_helm,
    template,
)

SERVICES = ["router", "cache", "embedding", "generation"]
GRPC_PORTS = {"router": 50051, "cache": 50052, "embedding": 50053, "generation": 50054}
# Oldest and newest Kubernetes the chart supports (Chart.yaml kubeVersion >=1.28).
KUBERNETES_VERSIONS = ["1.28.0", "1.37.0"]
# Kinds outside the Kubernetes API schemas: checked structurally below.
CUSTOM_GROUPS = ("monitoring.coreos.com/", "subsecond.dev/", "cert-manager.io/")


def test_the_required_profiles_exist() -> None:
    assert {"minimal-cpu", "production-external", "gpu-4", "everything-off"} <= set(PROFILES)
    assert set(GPU_PROFILES.values()) == {1, 2, 4, 8}


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_helm_lint_strict(profile: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *profile_args(profile))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_builtin_kinds_validate_strictly(rendered: dict[str, list[Manifest]], profile: str, version: str) -> None:
    checked = 0
    for manifest in rendered[profile]:
        if manifest["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']} on {version}: {error.message}")
        checked += 1
    assert checked >= 5


@pytest.fixture(scope="module")
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CHART / "crds" / "latencyslos.yaml").read_text())
    assert crd["spec"]["group"] == "subsecond.dev"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_latencyslos_match_the_crd(
    rendered: dict[str, list[Manifest]], crd_schema: dict[str, Any], profile: str
) -> None:
    validator = jsonschema.Draft4Validator(crd_schema)  # the CRD's `exclusiveMinimum: true` is draft-4 style
    for slo in find(rendered[profile], "LatencySLO"):
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(slo)]
        assert not errors, f"{slo['metadata']['name']}: {errors}"
        spec = slo["spec"]
        assert spec["maxReplicas"] >= spec.get("minReplicas", 1)  # the CRD's CEL rule
        target = one(rendered[profile], "Deployment", spec["scaleTargetRef"]["name"])
        assert target["metadata"]["name"] in spec["objective"]["selector"]
        assert f'namespace="{NAMESPACE}"' in spec["objective"]["selector"]


def test_defaults_carry_one_latencyslo_per_service(rendered: dict[str, list[Manifest]]) -> None:
    slos = {m["metadata"]["name"]: m["spec"] for m in find(rendered["default"], "LatencySLO")}
    assert set(slos) == {name_of(s) for s in SERVICES}
    assert slos[name_of("router")]["objective"]["metric"] == "subsecond_router_request_duration_seconds"
    assert slos[name_of("generation")]["objective"]["latency"] == "TimeToFirstChunk"
    assert slos[name_of("generation")]["objective"]["metric"] == "subsecond_generation_time_to_first_token_seconds"


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_replicas_are_left_to_the_operator_and_no_hpa_competes(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    manifests = rendered[profile]
    scaled = {m["spec"]["scaleTargetRef"]["name"] for m in find(manifests, "LatencySLO")}
    for deployment in find(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        if name in scaled:
            assert "replicas" not in deployment["spec"], f"{name} is scaled by the operator but sets replicas"
        else:
            assert isinstance(deployment["spec"].get("replicas"), int), f"{name} has no LatencySLO and no replicas"
    hpa_targets = {m["spec"]["scaleTargetRef"]["name"] for m in find(manifests, "HorizontalPodAutoscaler")}
    assert not hpa_targets & scaled


def test_everything_off_sets_fixed_replicas(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["everything-off"]
    assert not find(manifests, "LatencySLO")
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in find(manifests, "Deployment")} == {
        name_of("router"): 2,
        name_of("cache"): 2,
        name_of("embedding"): 2,
        name_of("generation"): 1,
    }
    kinds = {m["kind"] for m in manifests}
    assert kinds == {"ServiceAccount", "Deployment", "Service"}


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_service_probes_are_grpc_health_checks(rendered: dict[str, list[Manifest]], profile: str) -> None:
    """Native gRPC probes; with TLS (which they cannot speak) the kit's health probe over TLS instead."""
    tls = profile != "default" and profile_values(profile).get("tls", {}).get("enabled", False)
    for service in SERVICES:
        deployment = one(rendered[profile], "Deployment", name_of(service))
        (container,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == service]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if tls:
                assert container[probe]["exec"]["command"] == ["python", "-m", "subsecond.kit.health_probe", service]
            else:
                assert container[probe]["grpc"] == {"port": GRPC_PORTS[service]}, (service, probe)
        assert container["args"] == ["python", "-m", f"subsecond.{service}"]


def _selectors(manifest: Manifest) -> list[dict[str, str]]:
    """Every label selector in a manifest."""
    spec = manifest.get("spec", {})
    found: list[dict[str, str]] = []
    if manifest["kind"] == "Service":
        found.append(spec.get("selector", {}))
    elif manifest["kind"] == "NetworkPolicy":
        found.append(spec["podSelector"]["matchLabels"])
        for rule in spec.get("ingress", []):
            found += [peer["podSelector"]["matchLabels"] for peer in rule.get("from", []) if "podSelector" in peer]
    elif "selector" in spec:
        found.append(spec["selector"]["matchLabels"])
    template = spec.get("template", {}).get("spec", {})
    found += [c["labelSelector"]["matchLabels"] for c in template.get("topologySpreadConstraints", [])]
    return found


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_selectors_never_carry_the_chart_version(rendered: dict[str, list[Manifest]], profile: str) -> None:
    seen = 0
    for manifest in rendered[profile]:
        for selector in _selectors(manifest):
            seen += 1
            assert selector, f"{manifest['kind']} {manifest['metadata']['name']} has an empty selector"
            assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(selector), manifest["metadata"]["name"]
        if manifest["kind"] in {"Deployment", "StatefulSet"}:
            labels = manifest["spec"]["template"]["metadata"]["labels"]
            assert manifest["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert seen > 0


@pytest.mark.parametrize(("profile", "gpus"), GPU_PROFILES.items())
def test_gpu_count_is_the_tensor_parallel_size(rendered: dict[str, list[Manifest]], profile: str, gpus: int) -> None:
    manifests = rendered[profile]
    pods = [pod_spec(one(manifests, "Deployment", name_of("generation")))]
    pods += [pod_spec(job) for job in find(manifests, "Job")]
    assert len(pods) == 2, "the profile builds its engines with a Job"
    for spec in pods:
        (triton,) = [c for c in spec["containers"] if c["name"] == "triton"]
        assert triton["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert triton["resources"]["requests"]["nvidia.com/gpu"] == gpus
        assert env_of(triton)["TP_SIZE"] == str(gpus)
        (shm,) = [v for v in spec["volumes"] if v["name"] == "dshm"]
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in triton["volumeMounts"]
        (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        assert term["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
    serving = pods[0]
    (triton,) = [c for c in serving["containers"] if c["name"] == "triton"]
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1200, "engine load needs a long startup probe"
    # Triton's metrics (on loopback) come with the generation service's own, on its one metrics port.
    service = one(manifests, "Service", name_of("generation"))
    assert {port["name"] for port in service["spec"]["ports"]} == {"grpc", "metrics"}
    generation = [c for c in serving["containers"] if c["name"] == "generation"]
    assert env_of(generation[0])["SUBSECOND_GENERATION_TRITON_METRICS_URL"] == "http://127.0.0.1:8002/metrics"
    monitors = rendered["production-external"]
    endpoints = one(monitors, "ServiceMonitor", name_of("generation"))["spec"]["endpoints"]
    assert {e["port"] for e in endpoints} == {"metrics"}


def test_cpu_trial_asks_for_no_gpu(rendered: dict[str, list[Manifest]]) -> None:
    spec = pod_spec(one(rendered["minimal-cpu"], "Deployment", name_of("generation")))
    (triton,) = [c for c in spec["containers"] if c["name"] == "triton"]
    assert "nvidia.com/gpu" not in triton["resources"]["limits"]
    assert "affinity" not in spec
    assert not [v for v in spec["volumes"] if v["name"] == "engines"]


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_pods_run_unprivileged_with_limits(rendered: dict[str, list[Manifest]], profile: str) -> None:
    for workload in [m for m in rendered[profile] if m["kind"] in {"Deployment", "StatefulSet", "Job"}]:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(spec):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context.get("runAsUser", spec["securityContext"].get("runAsUser", 0)) > 0, where
            assert {"requests", "limits"} <= set(container["resources"]), where
            assert "cpu" in container["resources"]["requests"] and "memory" in container["resources"]["limits"], where


def _peers(rule: Manifest) -> set[str]:
    """A rule's sources as names: a component of this release, `metrics` (the metricsFrom peers), or `any`."""
    if "from" not in rule:
        return {"any"}
    names = set()
    for peer in rule["from"]:
        if "podSelector" in peer:
            names.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
        elif peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}:
            names.add("metrics")
        else:
            names.add(repr(peer))
    return names


def test_network_policies_allow_what_they_must_and_nothing_more(rendered: dict[str, list[Manifest]]) -> None:
    policies = {}
    for policy in find(rendered["default"], "NetworkPolicy"):
        component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]  # egress: test_chart_backends_locked.py
        policies[component] = {
            (port["port"], frozenset(_peers(rule))) for rule in policy["spec"]["ingress"] for port in rule["ports"]
        }
    assert policies == {
        # The HTTP API (http.enabled, the default) on 8080 from the router's callers; its /v1/embeddings
        # makes the router a caller of the embedding service.
        "router": {(50051, frozenset({"any"})), (8080, frozenset({"any"})), (9461, frozenset({"metrics"}))},
        "cache": {(50052, frozenset({"router"})), (9462, frozenset({"metrics"}))},
        "embedding": {(50053, frozenset({"cache", "router"})), (9463, frozenset({"metrics"}))},
        "generation": {(50054, frozenset({"router"})), (9464, frozenset({"metrics"}))},
        "redis": {(6379, frozenset({"cache", "embedding"}))},
        "qdrant": {(6333, frozenset({"cache"}))},
        "operator": {(9465, frozenset({"metrics"}))},
    }
    # Every pod of the release is covered by a policy.
    covered = set(policies)
    workloads = {
        m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for m in rendered["default"]
        if m["kind"] in {"Deployment", "StatefulSet"}
    }
    assert workloads <= covered


def test_router_clients_can_be_restricted(rendered: dict[str, list[Manifest]]) -> None:
    policy = one(rendered["production-external"], "NetworkPolicy", name_of("router"))
    (grpc_rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 50051]
    assert grpc_rule["from"] == [{"namespaceSelector": {"matchLabels": {"subsecond.dev/client": "true"}}}]


def test_external_backends_come_from_secrets(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-external"]
    assert not find(manifests, "StatefulSet")
    cache = env_of(pod_spec(one(manifests, "Deployment", name_of("cache")))["containers"][0])
    assert cache["SUBSECOND_CACHE_REDIS_URL"] == {"secretKeyRef": {"name": "subsecond-redis", "key": "redis-url"}}
    assert cache["SUBSECOND_CACHE_VECTOR_URL"] == "https://qdrant.data.svc:6333"
    assert cache["SUBSECOND_CACHE_VECTOR_API_KEY"] == {"secretKeyRef": {"name": "subsecond-qdrant", "key": "api-key"}}
    embedding = env_of(pod_spec(one(manifests, "Deployment", name_of("embedding")))["containers"][0])
    assert embedding["SUBSECOND_EMBEDDING_REDIS_URL"] == cache["SUBSECOND_CACHE_REDIS_URL"]
    router = env_of(pod_spec(one(manifests, "Deployment", name_of("router")))["containers"][0])
    assert router["SUBSECOND_ROUTER_API_KEYS"] == {"secretKeyRef": {"name": "subsecond-api-keys", "key": "api-keys"}}
    assert router["SUBSECOND_ROUTER_TIERS"] == "large,small"
    assert router["SUBSECOND_ROUTER_TENANT_MAX_STREAMS"] == "32"


def test_in_chart_backends_are_wired(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    assert {s["metadata"]["name"] for s in find(manifests, "StatefulSet")} == {name_of("redis"), name_of("qdrant")}
    cache = env_of(pod_spec(one(manifests, "Deployment", name_of("cache")))["containers"][0])
    # The password is the kubelet's expansion of REDIS_PASSWORD (from the generated Secret).
    assert cache["SUBSECOND_CACHE_REDIS_URL"] == f"redis://:$(REDIS_PASSWORD)@{name_of('redis')}:6379/0"
    assert cache["SUBSECOND_CACHE_VECTOR_URL"] == f"http://{name_of('qdrant')}:6333"
    assert cache["SUBSECOND_CACHE_EMBEDDING_URL"] == f"{name_of('embedding')}:50053"
    generation = env_of(pod_spec(one(manifests, "Deployment", name_of("generation")))["containers"][0])
    assert generation["SUBSECOND_GENERATION_MODELS"] == "small=smollm2"
    assert generation["SUBSECOND_GENERATION_TRITON_URL"] == "127.0.0.1:8001"


def test_static_routes_only_when_configured(rendered: dict[str, list[Manifest]], tmp_path: Path) -> None:
    router = pod_spec(one(rendered["default"], "Deployment", name_of("router")))
    assert "SUBSECOND_ROUTER_STATIC_ROUTES_FILE" not in env_of(router["containers"][0])
    assert not find(rendered["default"], "ConfigMap")
    rules = [{"name": "greeting", "match": "^hello$", "answer": "Hello!"}]
    values = tmp_path / "routes.yaml"
    values.write_text(yaml.safe_dump({"router": {"staticRoutes": rules}}))
    manifests = template(*DEFAULT_ARGS, "-f", str(values))
    config = one(manifests, "ConfigMap", f"{name_of('router')}-static-routes")
    assert yaml.safe_load(config["data"]["routes.yaml"]) == rules
    spec = pod_spec(one(manifests, "Deployment", name_of("router")))
    container = spec["containers"][0]
    assert env_of(container)["SUBSECOND_ROUTER_STATIC_ROUTES_FILE"] == "/etc/subsecond/static-routes/routes.yaml"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "static-routes"]
    assert mount == {"name": "static-routes", "mountPath": "/etc/subsecond/static-routes", "readOnly": True}


def test_operator_has_the_least_rbac(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    (cluster_role,) = find(manifests, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    ]
    role = one(manifests, "Role", name_of("operator"))
    rules = {(r["apiGroups"][0], tuple(r["resources"])): r["verbs"] for r in role["rules"]}
    assert rules == {
        ("subsecond.dev", ("latencyslos",)): ["get", "list", "watch", "patch", "delete"],
        ("subsecond.dev", ("latencyslos/status",)): ["get", "patch", "update"],
        ("apps", ("deployments", "statefulsets")): ["get", "list", "watch"],
        ("apps", ("deployments/scale", "statefulsets/scale")): ["get", "patch", "update"],
        ("", ("events",)): ["create", "patch"],
        ("events.k8s.io", ("events",)): ["create", "patch"],
    }
    binding = one(manifests, "RoleBinding", name_of("operator"))
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name_of("operator"), "namespace": NAMESPACE}]
    operator = pod_spec(one(manifests, "Deployment", name_of("operator")))
    assert operator["serviceAccountName"] == name_of("operator")
    assert env_of(operator["containers"][0])["SUBSECOND_OPERATOR_NAMESPACE"] == NAMESPACE
    # The services themselves get no API token.
    for service in SERVICES:
        assert pod_spec(one(manifests, "Deployment", name_of(service)))["automountServiceAccountToken"] is False


def test_prometheus_operator_objects(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-external"]
    services = {s["metadata"]["name"]: s for s in find(manifests, "Service")}
    monitors = find(manifests, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {name_of(c) for c in [*SERVICES, "operator"]}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        service = services[monitor["metadata"]["name"]]
        assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    (rule,) = find(manifests, "PrometheusRule")
    source = yaml.safe_load((CHART / "files" / "prometheus" / "subsecond-rules.yaml").read_text())
    assert rule["spec"] == source
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}
    assert {
        "SubsecondLatencyBudgetBurn",
        "SubsecondErrorBudgetBurn",
        "SubsecondCacheBypassed",
        "SubsecondTritonDown",
    } <= alerts
    (dashboard,) = find(manifests, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["subsecond-slo.json"].strip() == (
        (CHART / "files" / "grafana" / "subsecond-slo.json").read_text().strip()
    )
    assert not find(rendered["default"], "ServiceMonitor") and not find(rendered["default"], "PrometheusRule")


def test_pod_disruption_budgets_cover_each_workload(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in find(manifests, "PodDisruptionBudget")
    }
    assert budgets == {*SERVICES, "redis", "qdrant"}
    assert not find(rendered["minimal-cpu"], "PodDisruptionBudget")


@pytest.mark.parametrize("profile", ["default", "production-external"])
def test_inner_services_are_headless_so_the_router_spreads_over_their_pods(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    services = {s["metadata"]["name"]: s["spec"] for s in find(rendered[profile], "Service")}
    assert services[name_of("router")].get("clusterIP") != "None"
    for inner in ("cache", "embedding", "generation"):
        assert services[name_of(inner)]["clusterIP"] == "None", inner
