"""TLS in the chart (`tls.enabled`): the production profile renders no plaintext listener (no
container port served without a certificate: Triton's are all on loopback, its metrics served again
by the generation service), one cert-manager Certificate per service and the operator whose names are
the ones the callers and Prometheus check, and TLS-capable probes; the rendered settings are then used
for real: a kit server and channel with certificates carrying exactly the Certificates' names, checked
by the rendered exec probe and a mutual-TLS call, and the loopback exec probes of Triton and the
operator run against a loopback HTTP server.

kubernetes-validate has no schema for cert-manager's Certificate: that kind alone is skipped when
the production profile is validated here; its fields are asserted instead."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest
import trustme
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
    profile_args,
    run_helm,
    template,
    template_error,
)

from subsecond.kit.server import ServiceDefinition, start_server
from subsecond.kit.settings import EnvReader, ServerSettings
from subsecond.kit.tls import channel_credentials
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc

SERVICES = ("router", "cache", "embedding", "generation")
# Every component with a certificate: the services, and the operator for its metrics endpoint.
CERTIFIED = (*SERVICES, "operator")
# The container ports each serves with it (the router's HTTP API too: services/subsecond/router/http_api.py).
TLS_PORTS = {service: {"grpc", "metrics"} for service in SERVICES} | {"operator": {"metrics"}}
TLS_PORTS["router"].add("http")
# Who calls each inner service; the router embeds for the HTTP API's /v1/embeddings (http.enabled, the default).
CALLERS_OF = {"cache": ("router",), "generation": ("router",), "embedding": ("cache", "router")}
TLS_DIRECTORY = "/etc/subsecond/tls"
CERT_MANAGER = ("cert-manager.io/",)


def service_container(manifests: list[Manifest], service: str) -> Manifest:
    """The container of a service (or of the operator) in its Deployment."""
    deployment = one(manifests, "Deployment", name_of(service))
    (container,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == service]
    return container


def triton_container(manifests: list[Manifest]) -> Manifest:
    generation = pod_spec(one(manifests, "Deployment", name_of("generation")))
    (container,) = [c for c in generation["containers"] if c["name"] == "triton"]
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
    ports (and the router's HTTP API) as above; the services' and the operator's metrics ports when
    the component has no certificate (the kit, and the operator's endpoints module, serve them over
    HTTPS with it) or its ServiceMonitor scrapes them in plaintext; and every other port of any
    container. Triton declares none: launch-triton binds all of its ports to loopback (tests/images)."""
    plaintext = plaintext_grpc_listeners(manifests)
    monitors = {monitor["metadata"]["name"]: monitor for monitor in find(manifests, "ServiceMonitor")}
    for component in CERTIFIED:
        prefix = f"SUBSECOND_{component.upper()}_"
        if not env_of(service_container(manifests, component)).get(prefix + "TLS_CERT_FILE"):
            plaintext.append(f"{component}: metrics without a certificate")
            continue
        (endpoint,) = [e for e in monitors[name_of(component)]["spec"]["endpoints"] if e["port"] == "metrics"]
        secret = one(manifests, "Certificate", name_of(component))["spec"]["secretName"]
        checked = {key: endpoint.get("tlsConfig", {}).get(key) for key in ("ca", "serverName")}
        if endpoint.get("scheme") != "https" or checked != {
            "ca": {"secret": {"name": secret, "key": "ca.crt"}},
            "serverName": name_of(component),
        }:
            plaintext.append(f"{component}: metrics scraped in plaintext")
    for deployment in find(manifests, "Deployment"):
        for container in pod_spec(deployment)["containers"]:
            for port in container.get("ports", []):
                if port["name"] not in TLS_PORTS.get(container["name"], set()):
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


def test_production_renders_zero_plaintext_listeners(rendered: dict[str, list[Manifest]]) -> None:
    """Issue 10's target: every container port of the production profile is served over TLS (the
    services' gRPC and metrics, the operator's metrics); Triton declares none and probes itself in its
    container; the operator's health endpoint is on loopback, probed the same way."""
    manifests = rendered["production-external"]
    assert plaintext_listeners(manifests) == []
    triton = triton_container(manifests)
    assert "ports" not in triton
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "exec" in triton[probe] and "httpGet" not in triton[probe]
    operator = service_container(manifests, "operator")
    assert [port["name"] for port in operator["ports"]] == ["metrics"]
    assert "exec" in operator["livenessProbe"]
    assert {"name": "tls", "mountPath": TLS_DIRECTORY, "readOnly": True} in operator["volumeMounts"]
    (volume,) = tls_volumes(manifests, "operator")
    assert volume["secret"]["secretName"] == one(manifests, "Certificate", name_of("operator"))["spec"]["secretName"]
    # No ServiceMonitor scrapes a port other than the components' TLS metrics ports.
    for monitor in find(manifests, "ServiceMonitor"):
        assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]
    # The check can fail: without tls.enabled every metrics port is plaintext, the operator's too.
    default_metrics = [entry for entry in plaintext_listeners(rendered["default"]) if "metrics" in entry]
    assert len(default_metrics) >= len(CERTIFIED)
    # And a port declared on a container that serves no certificate is counted.
    with_a_port = copy.deepcopy(manifests)
    triton_container(with_a_port)["ports"] = [{"name": "triton-http", "containerPort": 8000}]
    assert plaintext_listeners(with_a_port) == ["triton: triton-http"]


@pytest.fixture
def loopback_health() -> Iterator[tuple[dict[str, int], int]]:
    """A loopback HTTP server standing in for Triton's and kopf's health endpoints: the status each
    path answers (missing: 404), set by the test, and the server's port."""
    statuses: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield statuses, server.server_port
    server.shutdown()
    server.server_close()


def _run_probe(command: list[str], port: int, rendered_port: int) -> int:
    """Runs a rendered exec probe here, with this machine's Python and the stand-in's port for the
    one it names (the container's own is not free on a shared machine); its exit status."""
    rendered = f"127.0.0.1:{rendered_port}"
    assert rendered in command[-1]
    argv = [sys.executable, *[part.replace(rendered, f"127.0.0.1:{port}") for part in command[1:]]]
    return subprocess.run(argv, capture_output=True, timeout=60).returncode


@pytest.mark.parametrize(
    ("component", "probe", "path", "port"),
    [
        ("triton", "startupProbe", "/v2/health/ready", 8000),
        ("triton", "readinessProbe", "/v2/health/ready", 8000),
        ("triton", "livenessProbe", "/v2/health/live", 8000),
        ("operator", "livenessProbe", "/healthz", 8080),
    ],
)
def test_the_loopback_exec_probes_pass_only_on_200(
    rendered: dict[str, list[Manifest]],
    loopback_health: tuple[dict[str, int], int],
    component: str,
    probe: str,
    path: str,
    port: int,
) -> None:
    """Triton answers 400 while its models are not ready; a probe passes on 200 only, fails on an
    error status or no answer."""
    manifests = rendered["production-external"]
    container = triton_container(manifests) if component == "triton" else service_container(manifests, component)
    command = container[probe]["exec"]["command"]
    assert command[0] in ("python", "python3")
    assert container[probe]["timeoutSeconds"] >= 5
    statuses, stand_in = loopback_health
    statuses[path] = 200
    assert _run_probe(command, stand_in, port) == 0
    statuses[path] = 400
    assert _run_probe(command, stand_in, port) != 0
    with socket_closed() as closed:
        assert _run_probe(command, closed, port) != 0


@contextlib.contextmanager
def socket_closed() -> Iterator[int]:
    """A loopback port bound but not listening: a connection to it is refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


def test_inner_services_require_their_callers_certificates(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-external"]
    for service, callers in CALLERS_OF.items():
        env = env_of(service_container(manifests, service))
        prefix = f"SUBSECOND_{service.upper()}_"
        assert env[prefix + "TLS_CLIENT_CA_FILE"] == f"{TLS_DIRECTORY}/ca.crt"
        assert env[prefix + "ALLOWED_CALLERS"] == ",".join(name_of(caller) for caller in callers)
        for caller in callers:
            # The name checked is one the caller's certificate carries.
            assert name_of(caller) in one(manifests, "Certificate", name_of(caller))["spec"]["dnsNames"]
    # The router's public port: clients present API keys, not certificates.
    router = env_of(service_container(manifests, "router"))
    assert "SUBSECOND_ROUTER_TLS_CLIENT_CA_FILE" not in router
    assert "SUBSECOND_ROUTER_ALLOWED_CALLERS" not in router


def test_one_certificate_per_service_for_serving_and_calling(rendered: dict[str, list[Manifest]]) -> None:
    """The services', the operator's for its metrics endpoint, and the scraper's, which serves nothing."""
    manifests = rendered["production-external"]
    assert len(find(manifests, "Certificate")) == len(CERTIFIED) + 1
    scraper = one(manifests, "Certificate", name_of("scraper"))["spec"]
    assert scraper["dnsNames"] == [name_of("scraper")]
    assert "client auth" in scraper["usages"] and "server auth" not in scraper["usages"]
    for service in CERTIFIED:
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


def test_metrics_endpoints_serve_only_the_scraper_which_the_servicemonitors_present(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["production-external"]
    for component in CERTIFIED:
        env = env_of(service_container(manifests, component))
        assert env[f"SUBSECOND_{component.upper()}_METRICS_CLIENT_CA_FILE"] == f"{TLS_DIRECTORY}/ca.crt"
    monitors = find(manifests, "ServiceMonitor")
    assert {monitor["metadata"]["name"] for monitor in monitors} == {name_of(service) for service in CERTIFIED}
    scraper_secret = one(manifests, "Certificate", name_of("scraper"))["spec"]["secretName"]
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["tlsConfig"]["cert"] == {"secret": {"name": scraper_secret, "key": "tls.crt"}}
        assert endpoint["tlsConfig"]["keySecret"] == {"name": scraper_secret, "key": "tls.key"}
    # Switched off: server-authenticated only, as before.
    values = ["--set", "tls.scraperCertificate=false"]
    plain = template(*profile_args("production-external"), *values)
    assert "METRICS_CLIENT_CA_FILE" not in str(plain)
    assert all("cert" not in monitor["spec"]["endpoints"][0]["tlsConfig"] for monitor in find(plain, "ServiceMonitor"))


def test_existing_secrets_replace_cert_manager() -> None:
    secrets = [f"--set=tls.existingSecrets.{service}={service}-tls-mine" for service in CERTIFIED]
    manifests = template(*DEFAULT_ARGS, "--set", "tls.enabled=true", *secrets)
    assert not find(manifests, "Certificate")
    for service in CERTIFIED:
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
    for service in (*SERVICES, "scraper"):
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
        assert await embed_as("router") == grpc.StatusCode.OK  # the HTTP API's /v1/embeddings
        assert await embed_as("generation") == grpc.StatusCode.PERMISSION_DENIED

        # The metrics, as the ServiceMonitor scrapes them: the scraper's certificate, or no metrics.
        def scrape(certificate: str | None) -> str:
            context = ssl.create_default_context(cafile=str(mounts["scraper"] / "ca.crt"))
            if certificate is not None:
                context.load_cert_chain(mounts[certificate] / "tls.crt", mounts[certificate] / "tls.key")
            with (
                socket.create_connection(("127.0.0.1", running.metrics_port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=name_of("embedding")) as connection,
            ):
                connection.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                return b"".join(iter(lambda: connection.recv(65536), b"")).decode()

        assert "python_info" in await asyncio.to_thread(scrape, "scraper")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.to_thread(scrape, None)
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
