"""How clients reach the router in the chart: the HTTP API's port on the router's pods and Service,
an Ingress (HTTP, and gRPC through nginx's GRPC(S) backend protocol), Gateway API routes, and the
NetworkPolicy each exposure mode needs (the controller's or the Gateway's namespace, the load
balancer's client ranges), rendered with the real helm and validated as the other manifests are; and
the services' trace export (`tracing.*`)."""

from __future__ import annotations

import ipaddress

import kubernetes_validate
import pytest
from chart_render import (
    DEFAULT_ARGS,
    Manifest,
    env_of,
    find,
    name_of,
    one,
    pod_spec,
    template,
    template_error,
)

from subsecond.router.settings import RouterSettings

KUBERNETES_VERSION = "1.32"
INGRESS = [*DEFAULT_ARGS, "--set", "ingress.enabled=true", "--set", "ingress.host=llm.example.com"]
GATEWAY = [
    *DEFAULT_ARGS,
    "--set", "ingress.gateway.enabled=true",
    "--set", "ingress.gateway.parentRefs[0].name=public",
    "--set", "ingress.gateway.parentRefs[0].namespace=gateways",
    "--set", "ingress.gateway.namespace=gateways",
    "--set", "ingress.gateway.hostnames[0]=llm.example.com",
]  # fmt: skip


def validated(manifests: list[Manifest]) -> list[Manifest]:
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return manifests


def exposure_peers(manifests: list[Manifest]) -> tuple[set[int], list[Manifest]]:
    """The ports and peers of the router's exposure policy (validated)."""
    policy = one(manifests, "NetworkPolicy", name_of("router") + "-exposure")
    validated([policy])
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "router"
    (rule,) = policy["spec"]["ingress"]
    return {port["port"] for port in rule["ports"]}, rule["from"]


def test_the_router_serves_its_http_api_by_default_on_its_own_port() -> None:
    manifests = template(*DEFAULT_ARGS)
    deployment = one(manifests, "Deployment", name_of("router"))
    (container,) = pod_spec(deployment)["containers"]
    assert {"name": "http", "containerPort": 8080} in container["ports"]
    env = env_of(container)
    assert env["SUBSECOND_ROUTER_HTTP_PORT"] == "8080"
    assert env["SUBSECOND_ROUTER_EMBEDDING_URL"] == f"{name_of('embedding')}:50053"
    service = one(manifests, "Service", name_of("router"))
    assert {"name": "http", "port": 8080, "targetPort": "http"} in service["spec"]["ports"]
    # What the router does with that environment.
    settings = RouterSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert settings.http_port == 8080
    # No exposure mode: nothing is added to the router's own policy.
    assert find(manifests, "NetworkPolicy", name_of("router") + "-exposure") == []


def test_the_http_api_can_be_switched_off() -> None:
    manifests = template(*DEFAULT_ARGS, "--set", "http.enabled=false")
    (container,) = pod_spec(one(manifests, "Deployment", name_of("router")))["containers"]
    assert "SUBSECOND_ROUTER_HTTP_PORT" not in env_of(container)
    assert [port["name"] for port in container["ports"]] == ["grpc", "metrics"]


def test_an_ingress_routes_the_http_api_and_admits_the_controller() -> None:
    manifests = template(*INGRESS)
    (ingress,) = validated(find(manifests, "Ingress"))
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTP"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # SSE
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "llm.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": name_of("router"), "port": {"name": "http"}}
    ports, peers = exposure_peers(manifests)
    assert ports == {50051, 8080}
    assert peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]


def test_a_grpc_ingress_speaks_grpcs_to_a_tls_router() -> None:
    manifests = template(
        *INGRESS,
        "--set", "ingress.tlsSecret=llm-tls",
        "--set", "ingress.grpc.enabled=true",
        "--set", "ingress.grpc.host=grpc.llm.example.com",
        "--set", "tls.enabled=true",
        "--set", "tls.certManager.issuerRef.name=internal-ca",
    )  # fmt: skip
    ingresses = {i["metadata"]["name"]: i for i in validated(find(manifests, "Ingress"))}
    grpc = ingresses[name_of("router") + "-grpc"]
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    assert grpc["spec"]["tls"] == [{"hosts": ["grpc.llm.example.com"], "secretName": "llm-tls"}]
    assert grpc["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "grpc"}
    http = ingresses[name_of("router") + "-http"]
    assert http["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"


def test_a_grpc_ingress_without_tls_is_refused() -> None:
    error = template_error(*INGRESS, "--set", "ingress.grpc.enabled=true", "--set", "ingress.grpc.host=g.example.com")
    assert "ingress.grpc.enabled needs ingress.tlsSecret" in error


def test_gateway_routes_attach_to_the_gateway_and_admit_its_namespace() -> None:
    manifests = template(*GATEWAY)
    http_route = one(manifests, "HTTPRoute", name_of("router") + "-http")
    grpc_route = one(manifests, "GRPCRoute", name_of("router") + "-grpc")
    for route, port in ((http_route, 8080), (grpc_route, 50051)):
        # The fields Gateway API v1 requires of these kinds (their CRDs are not built into kubernetes-validate).
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
        assert route["spec"]["hostnames"] == ["llm.example.com"]
        assert route["spec"]["rules"] == [{"backendRefs": [{"name": name_of("router"), "port": port}]}]
    ports, peers = exposure_peers(manifests)
    assert ports == {50051, 8080}
    assert peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}}]


def test_gateway_routes_need_a_gateway() -> None:
    gateway_only = ["--set", "ingress.gateway.enabled=true", "--set", "ingress.gateway.namespace=gw"]
    error = template_error(*DEFAULT_ARGS, *gateway_only)
    assert "ingress.gateway.parentRefs" in error


def test_a_load_balancer_admits_its_client_ranges_by_ip_block() -> None:
    manifests = template(
        *DEFAULT_ARGS,
        "--set", "router.service.type=LoadBalancer",
        "--set", "ingress.loadBalancerSourceRanges={10.0.0.0/8,192.168.4.0/24}",
    )  # fmt: skip
    ports, peers = exposure_peers(manifests)
    assert ports == {50051, 8080}
    assert peers == [{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"ipBlock": {"cidr": "192.168.4.0/24"}}]
    for peer in peers:
        ipaddress.ip_network(peer["ipBlock"]["cidr"])
    # The ranges mean nothing without a load balancer: no policy then.
    clusterip = template(*DEFAULT_ARGS, "--set", "ingress.loadBalancerSourceRanges={10.0.0.0/8}")
    assert find(clusterip, "NetworkPolicy", name_of("router") + "-exposure") == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "http.port=0"], "/http/port"),
        (["--set", "ingress.loadBalancerSourceRanges={everyone}"], "loadBalancerSourceRanges"),
        (["--set", "ingress.hostname=x"], "ingress"),
    ],
)
def test_the_schema_refuses_bad_values(values: list[str], message: str) -> None:
    assert message in template_error(*DEFAULT_ARGS, *values)


def test_tracing_exports_from_every_service_only_when_asked() -> None:
    services = ("router", "cache", "embedding", "generation")
    for deployment in (one(template(*DEFAULT_ARGS), "Deployment", name_of(s)) for s in services):
        (container, *_) = pod_spec(deployment)["containers"]
        assert not any(name.startswith("OTEL_") for name in env_of(container))
    manifests = template(
        *DEFAULT_ARGS,
        "--set", "tracing.otlpEndpoint=http://otel-collector.monitoring:4317",
        "--set", "tracing.env.OTEL_TRACES_SAMPLER=parentbased_traceidratio",
    )  # fmt: skip
    for service in services:
        (container, *_) = pod_spec(one(manifests, "Deployment", name_of(service)))["containers"]
        env = env_of(container)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4317"
        assert env["OTEL_SERVICE_NAME"] == f"subsecond-{service}"
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert "does not match pattern '^OTEL_" in template_error(*DEFAULT_ARGS, "--set", "tracing.env.PATH=/bin")
