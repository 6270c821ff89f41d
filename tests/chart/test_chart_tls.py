"""TLS in the chart (`tls.enabled`): the production profile renders no plaintext gRPC listener, one
cert-manager Certificate per service whose names are the ones the callers check, and TLS-capable
probes; the rendered settings are then used for real: a kit server and channel with certificates
carrying exactly the Certificates' names, checked by the rendered exec probe and a mutual-TLS call.

kubernetes-validate has no schema for cert-manager's Certificate: that kind alone is skipped when
the production profile is validated here; its fields are asserted instead."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import trustme
import yaml
from chart_render import (
    CHART,
    DEFAULT_ARGS,
    NAMESPACE,
    RELEASE,
    Manifest,
    env_of,
    find,
    name_of,
    one,
    pod_spec,
    profile_values,
    run_helm,
    template,
    template_error,
)

from subsecond.kit.server import ServiceDefinition, start_server
from subsecond.kit.settings import EnvReader, ServerSettings
from subsecond.kit.tls import channel_credentials
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc

SERVICES = ("router", "cache", "embedding", "generation")
CALLER_OF = {"cache": "router", "generation": "router", "embedding": "cache"}
TLS_DIRECTORY = "/etc/subsecond/tls"
CERT_MANAGER = ("cert-manager.io/",)


def service_container(manifests: list[Manifest], service: str) -> Manifest:
    deployment = one(manifests, "Deployment", name_of(service))
    (container,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == service]
    return container


def tls_volumes(manifests: list[Manifest], service: str) -> list[Manifest]:
    return [v for v in pod_spec(one(manifests, "Deployment", name_of(service)))["volumes"] if v["name"] == "tls"]


def plaintext_grpc_listeners(manifests: list[Manifest]) -> list[str]:
    """The services' gRPC ports served without a certificate: each Deployment's `grpc` port whose
    container has no TLS_CERT_FILE/TLS_KEY_FILE, or whose probes would need plaintext."""
    plaintext = []
    for service in SERVICES:
        container = service_container(manifests, service)
        env = env_of(container)
        prefix = f"SUBSECOND_{service.upper()}_"
        if not (env.get(prefix + "TLS_CERT_FILE") and env.get(prefix + "TLS_KEY_FILE")):
            plaintext.append(f"{service}: no certificate")
        if any("grpc" in container[probe] for probe in ("startupProbe", "readinessProbe", "livenessProbe")):
            plaintext.append(f"{service}: a native gRPC probe (plaintext)")
    return plaintext


def plaintext_listeners(manifests: list[Manifest]) -> list[str]:
    """Every container port of the rendered Deployments served in plaintext: the services' gRPC
    ports as above, their metrics ports when the service has no certificate (the kit serves them over
    HTTPS with it) or its ServiceMonitor scrapes them in plaintext, and every other container's port
    but Triton's gRPC (launch-triton binds it to loopback: tests/images)."""
    plaintext = plaintext_grpc_listeners(manifests)
    monitors = {monitor["metadata"]["name"]: monitor for monitor in find(manifests, "ServiceMonitor")}
    for service in SERVICES:
        prefix = f"SUBSECOND_{service.upper()}_"
        if not env_of(service_container(manifests, service)).get(prefix + "TLS_CERT_FILE"):
            plaintext.append(f"{service}: metrics without a certificate")
            continue
        (endpoint,) = [e for e in monitors[name_of(service)]["spec"]["endpoints"] if e["port"] == "metrics"]
        secret = one(manifests, "Certificate", name_of(service))["spec"]["secretName"]
        if endpoint.get("scheme") != "https" or endpoint["tlsConfig"] != {
            "ca": {"secret": {"name": secret, "key": "ca.crt"}},
            "serverName": name_of(service),
        }:
            plaintext.append(f"{service}: metrics scraped in plaintext")
    for deployment in find(manifests, "Deployment"):
        for container in pod_spec(deployment)["containers"]:
            if container["name"] in SERVICES:
                continue
            for port in container.get("ports", []):
                if port["name"] != "triton-grpc":
                    plaintext.append(f"{container['name']}: {port['name']}")
    return plaintext


def test_the_default_profile_has_no_tls_and_native_probes(rendered: dict[str, list[Manifest]]) -> None:
    """The check above can fail: without `tls.enabled` every service counts as plaintext."""
    assert len(plaintext_grpc_listeners(rendered["default"])) == 2 * len(SERVICES)
    assert not find(rendered["default"], "Certificate")


def test_production_renders_zero_plaintext_grpc_listeners(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-external"]
    assert plaintext_grpc_listeners(manifests) == []
    for service in SERVICES:
        container = service_container(manifests, service)
        env = env_of(container)
        prefix = f"SUBSECOND_{service.upper()}_"
        assert env[prefix + "TLS_CERT_FILE"] == f"{TLS_DIRECTORY}/tls.crt"
        assert env[prefix + "TLS_KEY_FILE"] == f"{TLS_DIRECTORY}/tls.key"
        # Every channel verifies the server it calls.
        assert env[prefix + "TLS_CA_FILE"] == f"{TLS_DIRECTORY}/ca.crt"
        assert env[prefix + "IDENTITY"] == name_of(service)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["exec"]["command"] == ["python", "-m", "subsecond.kit.health_probe", service]
            assert container[probe]["timeoutSeconds"] >= 5
        assert {"name": "tls", "mountPath": TLS_DIRECTORY, "readOnly": True} in container["volumeMounts"]
        (volume,) = tls_volumes(manifests, service)
        certificate = one(manifests, "Certificate", name_of(service))
        assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]


def test_production_serves_every_services_port_over_tls_metrics_included(rendered: dict[str, list[Manifest]]) -> None:
    """The four services' gRPC and metrics ports are all TLS. What is left in plaintext is Triton's
    HTTP port (the kubelet's readiness probe; no NetworkPolicy admits a peer to it), Triton's metrics
    and the operator's ports: none of them is a subsecond service's, and the metrics are admitted only
    from networkPolicy.metricsFrom."""
    manifests = rendered["production-external"]
    remaining = plaintext_listeners(manifests)
    assert remaining == ["triton: triton-http", "triton: triton-metrics", "operator: metrics", "operator: health"]
    # The profile keeps the chart's default metricsFrom (the monitoring namespace).
    assert "metricsFrom" not in profile_values("production-external")["networkPolicy"]
    metrics_from = yaml.safe_load((CHART / "values.yaml").read_text())["networkPolicy"]["metricsFrom"]
    policy = one(manifests, "NetworkPolicy", name_of("generation"))["spec"]["ingress"]
    admitting_8000 = [rule for rule in policy if {"port": 8000, "protocol": "TCP"} in rule.get("ports", [])]
    assert admitting_8000 == []
    (triton_metrics,) = [rule for rule in policy if {"port": 8002, "protocol": "TCP"} in rule.get("ports", [])]
    assert triton_metrics["from"] == metrics_from
    # The check can fail: without tls.enabled every service port is plaintext.
    assert len([entry for entry in plaintext_listeners(rendered["default"]) if "metrics" in entry]) >= len(SERVICES)


def test_inner_services_require_their_callers_certificates(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-external"]
    for service, caller in CALLER_OF.items():
        env = env_of(service_container(manifests, service))
        prefix = f"SUBSECOND_{service.upper()}_"
        assert env[prefix + "TLS_CLIENT_CA_FILE"] == f"{TLS_DIRECTORY}/ca.crt"
        assert env[prefix + "ALLOWED_CALLERS"] == name_of(caller)
        # The name checked is one the caller's certificate carries.
        assert name_of(caller) in one(manifests, "Certificate", name_of(caller))["spec"]["dnsNames"]
    # The router's public port: clients present API keys, not certificates.
    router = env_of(service_container(manifests, "router"))
    assert "SUBSECOND_ROUTER_TLS_CLIENT_CA_FILE" not in router
    assert "SUBSECOND_ROUTER_ALLOWED_CALLERS" not in router


def test_one_certificate_per_service_for_serving_and_calling(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-external"]
    assert len(find(manifests, "Certificate")) == len(SERVICES)
    for service in SERVICES:
        spec = one(manifests, "Certificate", name_of(service))["spec"]
        name = name_of(service)
        namespaced = f"{name}.{NAMESPACE}"
        assert spec["dnsNames"][:4] == [name, namespaced, f"{namespaced}.svc", f"{namespaced}.svc.cluster.local"]
        assert {"server auth", "client auth"} <= set(spec["usages"])
        issuer = {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "subsecond-internal-ca"}
        assert spec["issuerRef"] == issuer
        assert spec["privateKey"]["rotationPolicy"] == "Always"
    assert "llm.internal.example.com" in one(manifests, "Certificate", name_of("router"))["spec"]["dnsNames"]


def test_production_backends_are_external_over_tls(rendered: dict[str, list[Manifest]]) -> None:
    """Redis's URL comes whole from its Secret (rediss:// is the operator's to write there, see the
    chart README); Qdrant's is https with its key from a Secret; neither runs in the release."""
    manifests = rendered["production-external"]
    cache = env_of(service_container(manifests, "cache"))
    assert cache["SUBSECOND_CACHE_REDIS_URL"] == {"secretKeyRef": {"name": "subsecond-redis", "key": "redis-url"}}
    assert cache["SUBSECOND_CACHE_VECTOR_URL"].startswith("https://")
    assert not find(manifests, "StatefulSet")


def test_production_validates_strictly_but_cert_managers_kind(rendered: dict[str, list[Manifest]]) -> None:
    checked = 0
    for manifest in rendered["production-external"]:
        if manifest["apiVersion"].startswith(("monitoring.coreos.com/", "subsecond.dev/", *CERT_MANAGER)):
            continue
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)
        checked += 1
    assert checked >= 10


def test_existing_secrets_replace_cert_manager() -> None:
    secrets = [f"--set=tls.existingSecrets.{service}={service}-tls-mine" for service in SERVICES]
    manifests = template(*DEFAULT_ARGS, "--set", "tls.enabled=true", *secrets)
    assert not find(manifests, "Certificate")
    for service in SERVICES:
        (volume,) = tls_volumes(manifests, service)
        assert volume["secret"]["secretName"] == f"{service}-tls-mine"
    assert plaintext_grpc_listeners(manifests) == []


def test_tls_without_an_issuer_or_a_secret_is_refused() -> None:
    error = template_error(*DEFAULT_ARGS, "--set", "tls.enabled=true")
    assert "tls.certManager.issuerRef.name or tls.existingSecrets.router" in error


class _OneVectorEmbedder(embedding_pb2_grpc.EmbedderServicer):
    """Stands in for the embedding model: what is under test is the TLS around it."""

    async def Embed(self, request: Any, context: grpc.aio.ServicerContext) -> embedding_pb2.EmbedResponse:
        return embedding_pb2.EmbedResponse(embeddings=[embedding_pb2.Embedding(values=[1.0])], model="one")


def _embedder() -> ServiceDefinition:
    return ServiceDefinition.for_servicer(
        embedding_pb2.DESCRIPTOR.services_by_name["Embedder"],
        embedding_pb2_grpc.add_EmbedderServicer_to_server,
        _OneVectorEmbedder(),
    )


def _certificates_as_cert_manager_would_issue(manifests: list[Manifest], directory: Path) -> dict[str, Path]:
    """Each service's Secret volume as a directory: tls.crt/tls.key carrying exactly the rendered
    Certificate's dnsNames, and ca.crt, from one throwaway CA standing in for the issuer."""
    authority = trustme.CA()
    mounts = {}
    for service in SERVICES:
        issued = authority.issue_cert(*one(manifests, "Certificate", name_of(service))["spec"]["dnsNames"])
        mount = directory / service
        mount.mkdir()
        issued.cert_chain_pems[0].write_to_path(str(mount / "tls.crt"))
        issued.private_key_pem.write_to_path(str(mount / "tls.key"))
        authority.cert_pem.write_to_path(str(mount / "ca.crt"))
        mounts[service] = mount
    return mounts


def _rendered_environment(manifests: list[Manifest], service: str, mount: Path) -> dict[str, str]:
    """The container's plain-valued settings, with the Secret volume's path replaced by ``mount``."""
    env: dict[str, Any] = env_of(service_container(manifests, service))
    return {
        name: str(value).replace(TLS_DIRECTORY, str(mount))
        for name, value in env.items()
        if isinstance(value, str) and name.startswith(f"SUBSECOND_{service.upper()}_")
    }


async def test_the_rendered_settings_serve_mutual_tls_to_the_rendered_caller_and_its_probe(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    manifests = rendered["production-external"]
    mounts = _certificates_as_cert_manager_would_issue(manifests, tmp_path)
    embedding_env = _rendered_environment(manifests, "embedding", mounts["embedding"])
    embedding_env |= {"SUBSECOND_EMBEDDING_HOST": "127.0.0.1", "SUBSECOND_EMBEDDING_PORT": "0"}
    reader = EnvReader(embedding_env, "SUBSECOND_EMBEDDING_")
    settings = ServerSettings.read(reader, default_port=0, default_metrics_port=0)
    reader.done()
    running = await start_server(dataclasses.replace(settings, metrics_port=0), _embedder())
    try:
        # The kubelet's exec probe: the container's own environment, the bound port.
        probe_env = {**os.environ, **embedding_env, "SUBSECOND_EMBEDDING_PORT": str(running.port)}
        command = service_container(manifests, "embedding")["readinessProbe"]["exec"]["command"]
        probe = await asyncio.to_thread(
            subprocess.run, [sys.executable, *command[1:]], env=probe_env, capture_output=True, text=True, timeout=60
        )
        assert probe.returncode == 0, probe.stderr

        async def embed_as(caller: str) -> grpc.StatusCode:
            caller_env = _rendered_environment(manifests, caller, mounts[caller])
            caller_reader = EnvReader(caller_env, f"SUBSECOND_{caller.upper()}_")
            caller_settings = ServerSettings.read(caller_reader, default_port=0, default_metrics_port=0)
            caller_reader.done()
            credentials = channel_credentials(caller_settings.tls)
            assert credentials is not None
            # The caller dials the embedding Service's name; loopback stands in for its DNS.
            options = [("grpc.ssl_target_name_override", name_of("embedding"))]
            async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", credentials, options=options) as channel:
                try:
                    stub = embedding_pb2_grpc.EmbedderStub(channel)
                    await stub.Embed(embedding_pb2.EmbedRequest(texts=["a"]), timeout=5)
                except grpc.aio.AioRpcError as error:
                    return error.code()
            return grpc.StatusCode.OK

        assert await embed_as("cache") == grpc.StatusCode.OK
        assert await embed_as("router") == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await running.stop(0)


def test_notes_show_how_to_call_the_tls_router() -> None:
    production = ["-f", str(CHART / "ci" / "production-external-values.yaml")]
    result = run_helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *production)
    assert result.returncode == 0, result.stderr
    notes = result.stdout[result.stdout.index("NOTES:") :]
    assert "grpcurl -plaintext" not in notes
    assert f"grpcurl -cacert ca.crt -authority {name_of('router')} " in notes
    assert f"get secret {name_of('router')}-tls " in notes
