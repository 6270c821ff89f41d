"""The operator end to end: kopf's KopfRunner against the kmock Kubernetes API mock, with latency from
a real Prometheus (Debian's ``prometheus``) scraping a real exporter whose histogram this test controls.

What kmock does not emulate, and so this test does not cover: resourceVersion conflicts (every patch
wins), a real status subresource (a /status or /scale patch is merged into the object itself, and the
CRD's schema, defaults and pruning are not applied), and a controller that makes new pods ready (the
test sets the Deployment's readyReplicas itself).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import kopf
import prometheus_client
import pytest
import yaml
from kopf.testing import KopfRunner
from prometheus_server import Prometheus
from slo_specs import base_spec

from subsecond.kit.metrics import REQUEST_SECONDS
from subsecond_operator.handlers import build_registry
from subsecond_operator.prometheus import PrometheusClient, Reading
from subsecond_operator.settings import OperatorSettings
from subsecond_operator.spec import SLOSpec

NAMESPACE, TARGET, SLO = "default", "subsecond-router", "router-p95"
DEPLOYMENTS = "apps/v1/deployments"
LATENCYSLOS = "subsecond.dev/v1alpha1/latencyslos"


class Exporter:
    """A router-like histogram served over HTTP, observed ~40 times a second at a latency the test sets."""

    def __init__(self) -> None:
        self.latency_seconds = 0.05
        self.registry = prometheus_client.CollectorRegistry()
        self.histogram = prometheus_client.Histogram(
            "subsecond_router_request_duration_seconds", "test", buckets=REQUEST_SECONDS, registry=self.registry
        )
        self.server, self._thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = self.server.server_port
        self._stop = threading.Event()
        self._load = threading.Thread(target=self._observe, daemon=True)
        self._load.start()

    def _observe(self) -> None:
        while not self._stop.wait(0.05):
            for _ in range(2):
                self.histogram.observe(self.latency_seconds)

    def close(self) -> None:
        self._stop.set()
        self._load.join()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    running = Exporter()
    yield running
    running.close()


@pytest.fixture
def prometheus(tmp_path: Path, exporter: Exporter) -> Iterator[Prometheus]:
    target = {"targets": [f"127.0.0.1:{exporter.port}"]}
    running = Prometheus(tmp_path, [{"job_name": "router", "static_configs": [target]}])
    yield running
    running.stop()


@pytest.fixture
def cluster(
    kmock: kmock.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> kmock.KubernetesEmulator:
    """kmock seeded with the LatencySLO resource, a Deployment and a LatencySLO; KUBECONFIG points at it."""
    kmock.resources[LATENCYSLOS] = kmock.ResourceInfo(
        kind="LatencySLO", singular="latencyslo", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "patch", "update"},
    )  # fmt: skip
    kmock.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"create"})
    # kopf's discovery waits for the CRD and namespace resources, as a real API server serves them.
    kmock.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "watch"}
    )
    kmock.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs={"list", "watch"})
    kmock.objects[(DEPLOYMENTS, NAMESPACE, TARGET)] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": TARGET, "namespace": NAMESPACE},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "readyReplicas": 2},
    }
    spec = base_spec(
        objective={"thresholdMs": 300, "metric": "subsecond_router_request_duration_seconds", "window": "5s"},
        maxReplicas=8,
        behavior={"scaleUp": {"cooldownSeconds": 0}},
    )
    kmock.objects[(LATENCYSLOS, NAMESPACE, SLO)] = {
        "apiVersion": "subsecond.dev/v1alpha1",
        "kind": "LatencySLO",
        "metadata": {"name": SLO, "namespace": NAMESPACE, "uid": "slo-uid", "generation": 1},
        "spec": spec,
    }
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test", "namespace": NAMESPACE}}],
        "current-context": "kmock",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    return kmock


def _status(cluster: kmock.KubernetesEmulator) -> dict[str, Any]:
    status: dict[str, Any] = cluster.objects[(LATENCYSLOS, NAMESPACE, SLO)].raw.get("status", {})
    return status


def _replicas(cluster: kmock.KubernetesEmulator) -> int:
    replicas: int = cluster.objects[(DEPLOYMENTS, NAMESPACE, TARGET)].raw["spec"]["replicas"]
    return replicas


def _events(cluster: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    return [request.data for request in cluster["post"] if request.url.path.endswith("/events")]


def _condition(cluster: kmock.KubernetesEmulator, kind: str) -> str | None:
    return next((c["status"] for c in _status(cluster).get("conditions", []) if c["type"] == kind), None)


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_scales_up_on_breach_records_it_and_holds_without_prometheus(
    cluster: kmock.KubernetesEmulator, exporter: Exporter, prometheus: Prometheus
) -> None:
    settings = OperatorSettings.from_env(
        {
            "SUBSECOND_OPERATOR_PROMETHEUS_URL": prometheus.url,
            "SUBSECOND_OPERATOR_NAMESPACE": NAMESPACE,
            "SUBSECOND_OPERATOR_INTERVAL_SECONDS": "1",
            "SUBSECOND_OPERATOR_RETRY_DELAY_SECONDS": "0.5",
        }
    )
    args = ["run", "--standalone", "--verbose", "--namespace", NAMESPACE]
    # kmock 0.8 cannot parse the path /api/v1/namespaces (it reads it as a namespace prefix), so kopf must not
    # list namespaces or watch CRDs here; with one exact namespace it needs neither (production keeps scanning).
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.scanning.disabled = True
    with KopfRunner(args, registry=build_registry(settings), settings=kopf_settings) as runner:
        # Fast and steady: the operator reads the numbers and holds (a new object never scales down).
        await _until(lambda: _status(cluster).get("observedLatencyMs") is not None, 20, "a first reading")
        assert _status(cluster)["observedLatencyMs"] < 100
        assert _replicas(cluster) == 2
        assert _condition(cluster, "Ready") == "True"
        # status.capacity: the spec's concurrency, used as is until the latency has climbed (a null in kopf's merge
        # patch removes the key: no fitted concurrency is no key).
        capacity = _status(cluster)["capacity"]
        assert capacity["concurrencyPerReplica"] == capacity["specConcurrencyPerReplica"] == 1
        assert "fittedConcurrencyPerReplica" not in capacity and capacity["latencyClimbed"] is False

        # Slow: the P95 goes over 300 ms; the operator scales up through /scale, says why in status and an Event.
        exporter.latency_seconds = 0.8
        await _until(lambda: _replicas(cluster) > 2, 30, "a scale-up")
        scaled = _replicas(cluster)
        await _until(lambda: _status(cluster).get("desiredReplicas") == scaled, 10, "the status of the scale-up")
        assert _status(cluster)["reason"] in {"ObjectiveBreached", "ReplicasStarting"}
        # kopf posts Events from a queue of its own, after the status patch.
        await _until(lambda: any(e["reason"] == "ObjectiveBreached" for e in _events(cluster)), 10, "its Event")
        breached = [e for e in _events(cluster) if e["reason"] == "ObjectiveBreached"]
        assert breached and f"scaling up 2 -> {scaled}" in breached[0]["message"], _events(cluster)
        assert "P95" in breached[0]["message"] and "req/s" in breached[0]["message"]
        assert breached[0]["involvedObject"]["name"] == SLO
        assert any(r.url.path.endswith(f"/deployments/{TARGET}/scale") for r in cluster["patch"])

        # New pods start: while they are not ready the operator holds.
        await _until(lambda: _status(cluster).get("reason") == "ReplicasStarting", 10, "holding for new pods")
        assert _replicas(cluster) == scaled

        # Prometheus gone: hold still, Degraded, and an Event saying so. (Stopped before the pods turn ready:
        # the other order leaves a tick that sees them ready and the breach still in the window, and scales again.)
        prometheus.stop()
        cluster.objects[(DEPLOYMENTS, NAMESPACE, TARGET)].patch({"status": {"readyReplicas": scaled}})
        await _until(lambda: _condition(cluster, "Degraded") == "True", 20, "Degraded")
        assert _status(cluster)["reason"] == "MetricsUnavailable"
        await _until(lambda: any(e["reason"] == "Degraded" for e in _events(cluster)), 10, "the Degraded Event")
        await asyncio.sleep(3)
        assert _replicas(cluster) == scaled
        assert _condition(cluster, "Ready") == "False"
        assert prometheus_client.REGISTRY.get_sample_value("subsecond_operator_errors_total", {"cause": "prometheus"})
    assert runner.exit_code == 0, runner.output


async def test_reads_the_percentile_mean_and_recent_rate_from_prometheus(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    """The five queries against a real Prometheus: each one valid PromQL, each one the number it names."""
    objective = SLOSpec.parse(
        base_spec(objective={"thresholdMs": 300, "metric": "subsecond_router_request_duration_seconds", "window": "1m"})
    ).objective
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(session, prometheus.url, 5.0)
        reading = Reading(None, None)
        deadline = time.monotonic() + 20
        while None in (
            reading.latency_seconds,
            reading.rate_rps,
            reading.mean_seconds,
            reading.recent_rps,
            reading.recent_mean_seconds,
        ):
            assert time.monotonic() < deadline, f"no full reading: {reading}"
            await asyncio.sleep(0.5)
            reading = await client.read(objective)
    # Every observation is 50 ms: the mean is exact, the P95 interpolated inside the bucket that holds 50 ms.
    assert reading.mean_seconds == pytest.approx(exporter.latency_seconds, rel=0.01)
    assert reading.recent_mean_seconds == pytest.approx(exporter.latency_seconds, rel=0.01)
    upper = min(b for b in REQUEST_SECONDS if b >= exporter.latency_seconds)
    lower = max(b for b in REQUEST_SECONDS if b < exporter.latency_seconds)
    assert reading.latency_seconds is not None and lower < reading.latency_seconds <= upper
    # Seconds into the run, both rate() windows are mostly empty: only that they count requests is stable.
    assert reading.rate_rps is not None and reading.rate_rps > 0.0
    assert reading.recent_rps is not None and reading.recent_rps > 0.0
