"""The pre-delete hook against the kmock API mock, which keeps an object with finalizers until they are
removed (what a real API server does, and what leaves a LatencySLO stuck in Terminating): with the operator
running under KopfRunner it releases its own finalizer; with no operator the hook removes kopf's, and only kopf's."""

# ruff: noqa: F811 (the fixtures imported from test_operator_kopf are parameters below)

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import kmock
import kopf
from kopf.testing import KopfRunner

# The kmock cluster, exporter and Prometheus fixtures of the operator's end-to-end test, imported to be used here.
from test_operator_kopf import LATENCYSLOS, NAMESPACE, SLO, Prometheus, cluster, exporter, prometheus  # noqa: F401

from subsecond_operator.handlers import build_registry
from subsecond_operator.kube import KubernetesClient
from subsecond_operator.predelete import FINALIZER, remove_latencyslos
from subsecond_operator.settings import OperatorSettings

SELECTOR = "app.kubernetes.io/instance=demo"


def _client() -> KubernetesClient:
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    return KubernetesClient(info)


def _label(cluster: kmock.KubernetesEmulator, finalizers: list[str] | None = None) -> None:
    # kopf's finalizer patch tests the resourceVersion, which a real API server always sets.
    labels = {"labels": {"app.kubernetes.io/instance": "demo"}, "resourceVersion": "1"}
    cluster.objects[(LATENCYSLOS, NAMESPACE, SLO)].patch(
        {"metadata": labels if finalizers is None else {**labels, "finalizers": finalizers}}
    )


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _present(cluster: kmock.KubernetesEmulator) -> bool:
    return (LATENCYSLOS, NAMESPACE, SLO) in cluster.objects


async def test_the_running_operator_releases_what_the_hook_deletes(
    cluster: kmock.KubernetesEmulator, prometheus: Prometheus
) -> None:
    _label(cluster)
    settings = OperatorSettings.from_env(
        {"SUBSECOND_OPERATOR_PROMETHEUS_URL": prometheus.url, "SUBSECOND_OPERATOR_INTERVAL_SECONDS": "1"}
    )
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.scanning.disabled = True
    args = ["run", "--standalone", "--namespace", NAMESPACE]
    with KopfRunner(args, registry=build_registry(settings), settings=kopf_settings) as runner:
        finalizers = lambda: cluster.objects[(LATENCYSLOS, NAMESPACE, SLO)].raw["metadata"].get("finalizers") or []  # noqa: E731
        await _until(lambda: FINALIZER in finalizers(), 20, "kopf's finalizer")
        client = _client()
        try:
            outcome = await remove_latencyslos(client, NAMESPACE, SELECTOR, grace_seconds=20)
        finally:
            await client.close()
        assert outcome.deleted == (SLO,) and not outcome.released and not outcome.remaining
        assert not _present(cluster)
    assert runner.exit_code == 0, runner.output


async def test_without_the_operator_the_hook_removes_only_kopfs_finalizer(cluster: kmock.KubernetesEmulator) -> None:
    _label(cluster, [FINALIZER, "example.com/other"])
    client = _client()
    try:
        outcome = await remove_latencyslos(client, NAMESPACE, SELECTOR, grace_seconds=1, settle_seconds=1)
    finally:
        await client.close()
    # Another controller's finalizer is not ours to remove: the object waits for it, and the hook says so.
    assert outcome.remaining == (SLO,)
    assert cluster.objects[(LATENCYSLOS, NAMESPACE, SLO)].raw["metadata"]["finalizers"] == ["example.com/other"]

    _label(cluster, [FINALIZER])
    client = _client()
    try:
        outcome = await remove_latencyslos(client, NAMESPACE, SELECTOR, grace_seconds=1, settle_seconds=2)
    finally:
        await client.close()
    assert outcome.released == (SLO,) and not outcome.remaining
    assert not _present(cluster)

