"""The operator's chart objects with the real `helm template`: objectives, capacity, ServiceMonitors on `auto`, and
the uninstall order, which must leave no LatencySLO behind a finalizer nobody removes."""

from __future__ import annotations

from chart_render import DEFAULT_ARGS, Manifest, find, one, template

MONITORING = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]
# Helm's uninstall order (releaseutil.UninstallOrder): the kinds it knows, in order; any other kind after them.
UNINSTALL_ORDER = [
    "APIService", "Ingress", "IngressClass", "Service", "CronJob", "Job", "StatefulSet", "HorizontalPodAutoscaler",
    "Deployment", "ReplicaSet", "ReplicationController", "Pod", "DaemonSet", "RoleBinding", "Role",
    "ClusterRoleBinding", "ClusterRole", "CustomResourceDefinition", "PersistentVolumeClaim", "PersistentVolume",
    "StorageClass", "ConfigMap", "SecretList", "Secret", "ServiceAccount", "PodDisruptionBudget", "PodSecurityPolicy",
    "LimitRange", "ResourceQuota", "NetworkPolicy", "Namespace",
]  # fmt: skip


def _name(component: str) -> str:
    return f"demo-subsecond-{component}"


def test_service_monitors_follow_the_cluster_on_auto() -> None:
    assert not find(template(*DEFAULT_ARGS), "ServiceMonitor")  # no Prometheus Operator: nothing it cannot apply
    monitors = find(template(*DEFAULT_ARGS, *MONITORING), "ServiceMonitor")
    services = {_name(s) for s in ("router", "cache", "embedding", "generation")}
    assert {m["metadata"]["name"] for m in monitors} >= services
    assert not find(template(*DEFAULT_ARGS, *MONITORING, "--set", "serviceMonitor.enabled=false"), "ServiceMonitor")


def test_objectives_measure_what_each_service_controls_with_its_concurrency() -> None:
    slos = {m["metadata"]["name"]: m["spec"] for m in find(template(*DEFAULT_ARGS), "LatencySLO")}
    router = slos[_name("router")]["objective"]
    assert router["selector"].endswith('served_by!="generated"')
    assert slos[_name("generation")]["objective"]["metric"] == "subsecond_generation_time_to_first_token_seconds"
    assert slos[_name("cache")]["objective"]["metric"] == "subsecond_cache_lookup_duration_seconds"
    assert slos[_name("embedding")]["objective"]["metric"] == "subsecond_embedding_request_duration_seconds"
    concurrency = {name: spec["capacity"]["concurrencyPerReplica"] for name, spec in slos.items()}
    assert concurrency[_name("generation")] == 64  # triton.engines.maxBatchSize
    assert all(value > 1 for value in concurrency.values())
    bigger = template(*DEFAULT_ARGS, "--set", "triton.engines.maxBatchSize=128")
    assert one(bigger, "LatencySLO", _name("generation"))["spec"]["capacity"]["concurrencyPerReplica"] == 128
    # The utilisation ceiling: the CRD's default unless set, then passed on as given.
    assert all("maxUtilization" not in spec["capacity"] for spec in slos.values())
    ceiling = template(*DEFAULT_ARGS, "--set-json", "cache.latencySLO.capacity.maxUtilization=0.5")
    assert one(ceiling, "LatencySLO", _name("cache"))["spec"]["capacity"]["maxUtilization"] == 0.5


def _uninstall(manifests: list[Manifest]) -> list[Manifest]:
    """What `helm uninstall` deletes, in its order: pre-delete hooks run first, then the release's objects by kind."""
    hooks = [m for m in manifests if (m["metadata"].get("annotations") or {}).get("helm.sh/hook") == "pre-delete"]
    objects = [m for m in manifests if m not in hooks]
    rank = {kind: i for i, kind in enumerate(UNINSTALL_ORDER)}
    return hooks + sorted(objects, key=lambda m: rank.get(m["kind"], len(UNINSTALL_ORDER)))


def test_uninstall_deletes_the_latencyslos_before_the_operator_goes() -> None:
    """Helm deletes the operator's Deployment and RBAC before LatencySLOs (a kind it does not know): without the
    hook, kopf's finalizer holds them in Terminating. The hook runs first, as the operator's ServiceAccount, whose
    Role may delete them, while the operator still runs to release its finalizer (tests/operator/test_predelete.py)."""
    manifests = template(*DEFAULT_ARGS)
    order = _uninstall(manifests)
    (hook,) = [m for m in order if m["metadata"]["name"] == _name("operator-predelete")]
    first_slo = min(i for i, m in enumerate(order) if m["kind"] == "LatencySLO")
    operator_gone = min(
        order.index(m) for m in order if m["metadata"]["name"] == _name("operator") and m["kind"] != "Service"
    )
    assert order.index(hook) == 0 and operator_gone < first_slo  # the stuck order, and the hook before it
    spec = hook["spec"]
    assert spec["serviceAccountName"] == _name("operator") and spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["args"] == ["python", "-m", "subsecond_operator.predelete"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SUBSECOND_PREDELETE_SELECTOR"] == "app.kubernetes.io/instance=demo"
    for slo in find(manifests, "LatencySLO"):
        assert slo["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
    role = one(manifests, "Role", _name("operator"))
    assert any("latencyslos" in r["resources"] and "delete" in r["verbs"] for r in role["rules"])
    # No operator, no LatencySLO and no hook.
    off = template(*DEFAULT_ARGS, "--set", "operator.enabled=false")
    assert not find(off, "LatencySLO") and not find(off, "Pod")
