"""The chart's own backends are locked: the in-chart Redis requires a password and Qdrant an API key,
both from Secrets (generated, or yours), and every pod's NetworkPolicy limits its egress to what it
calls plus DNS. A real redis-server started with the rendered arguments refuses a client without
the password and serves the rendered URL."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from chart_render import DEFAULT_ARGS, Manifest, env_of, find, name_of, one, pod_spec, template
from redis_server import START_TIMEOUT_SECONDS, free_port

from subsecond_tools.stack.redis import find_redis_server

SECRET_REF = {"secretKeyRef": {"name": name_of("redis-auth"), "key": "password"}}


def container(manifests: list[Manifest], kind: str, component: str) -> Manifest:
    return pod_spec(one(manifests, kind, name_of(component)))["containers"][0]


def kubelet_expanded(value: str, variables: dict[str, str]) -> str:
    """What the kubelet makes of `$(NAME)` references in args and env values."""
    for name, replacement in variables.items():
        value = value.replace(f"$({name})", replacement)
    return value


def generated_password(manifests: list[Manifest]) -> str:
    secret = one(manifests, "Secret", name_of("redis-auth"))
    return base64.b64decode(secret["data"]["password"]).decode()


def test_redis_requires_a_generated_password_that_no_manifest_spells_out(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    password = generated_password(manifests)
    assert len(password) == 40 and password.isalnum()
    redis_container = container(manifests, "StatefulSet", "redis")
    args = redis_container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert env_of(redis_container)["REDIS_PASSWORD"] == SECRET_REF
    for service, variable in (("cache", "SUBSECOND_CACHE_REDIS_URL"), ("embedding", "SUBSECOND_EMBEDDING_REDIS_URL")):
        env = container(manifests, "Deployment", service)["env"]
        names = [item["name"] for item in env]
        # Declared before the URL, or the kubelet leaves `$(REDIS_PASSWORD)` as it is.
        assert names.index("REDIS_PASSWORD") < names.index(variable)
        assert env_of({"env": env})[variable] == f"redis://:$(REDIS_PASSWORD)@{name_of('redis')}:6379/0"
    for manifest in manifests:
        if manifest["kind"] != "Secret":
            assert password not in str(manifest), manifest["metadata"]["name"]


def test_a_real_redis_server_with_the_rendered_arguments_refuses_a_client_without_the_password(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    manifests = rendered["default"]
    variables = {"REDIS_PASSWORD": generated_password(manifests)}
    args = [kubelet_expanded(arg, variables) for arg in container(manifests, "StatefulSet", "redis")["args"]]
    url = kubelet_expanded(env_of(container(manifests, "Deployment", "cache"))["SUBSECOND_CACHE_REDIS_URL"], variables)
    port = free_port()
    argv = [str(find_redis_server()), *args[1:], "--port", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The rendered URL names the Service; loopback stands in for its DNS.
        authorized = redis.Redis.from_url(url.replace(name_of("redis"), "127.0.0.1").replace(":6379/", f":{port}/"))
        _wait_until_up(authorized, server)
        authorized.set("answer", "Canberra.")
        assert authorized.get("answer") == b"Canberra."
        anonymous = redis.Redis(port=port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("answer")
        wrong = redis.Redis(port=port, password="not-the-password")
        with pytest.raises(redis.AuthenticationError):
            wrong.get("answer")
        for client in (authorized, anonymous, wrong):
            client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout:
            server.stdout.close()


def _wait_until_up(client: redis.Redis, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if server.poll() is not None:
            output = server.stdout.read().decode() if server.stdout else ""
            pytest.fail(f"redis-server refused the chart's arguments (exit {server.returncode}): {output}")
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                pytest.fail("redis-server with the chart's arguments never answered")
            time.sleep(0.01)


def test_qdrant_requires_an_api_key_the_cache_reads_from_the_same_secret(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    reference = {"secretKeyRef": {"name": name_of("qdrant-auth"), "key": "api-key"}}
    assert env_of(container(manifests, "StatefulSet", "qdrant"))["QDRANT__SERVICE__API_KEY"] == reference
    assert env_of(container(manifests, "Deployment", "cache"))["SUBSECOND_CACHE_VECTOR_API_KEY"] == reference
    key = base64.b64decode(one(manifests, "Secret", name_of("qdrant-auth"))["data"]["api-key"]).decode()
    assert len(key) == 40 and key.isalnum()


def test_your_own_secrets_replace_the_generated_ones() -> None:
    manifests = template(
        *DEFAULT_ARGS,
        "--set", "redis.internal.auth.existingSecret=my-redis", "--set", "redis.internal.auth.secretKey=pw",
        "--set", "qdrant.internal.auth.existingSecret=my-qdrant",
    )  # fmt: skip
    assert not find(manifests, "Secret")
    assert env_of(container(manifests, "Deployment", "embedding"))["REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "my-redis", "key": "pw"}
    }
    assert env_of(container(manifests, "StatefulSet", "qdrant"))["QDRANT__SERVICE__API_KEY"] == {
        "secretKeyRef": {"name": "my-qdrant", "key": "api-key"}
    }


def _egress(manifests: list[Manifest], component: str) -> list[tuple[frozenset[int], Any]]:
    """(TCP ports, peers) of each egress rule of a component's policy but DNS, which it checks."""
    spec = one(manifests, "NetworkPolicy", name_of(component))["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    dns, *rules = spec["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    return [(frozenset(port["port"] for port in rule["ports"]), rule.get("to")) for rule in rules]


def _component_of(peers: Any) -> str:
    (peer,) = peers
    component: str = peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
    return component


def test_each_pod_may_reach_only_what_it_calls(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    calls = {
        component: {(port, _component_of(peers)) for ports, peers in _egress(manifests, component) for port in ports}
        for component in ("router", "cache", "embedding", "generation", "redis", "qdrant")
    }
    assert calls == {
        "router": {(50052, "cache"), (50053, "embedding"), (50054, "generation")},  # embedding: /v1/embeddings
        "cache": {(50053, "embedding"), (6379, "redis"), (6333, "qdrant")},
        "embedding": {(6379, "redis")},
        "generation": set(),  # Triton is in the pod: loopback
        "redis": set(),
        "qdrant": set(),
    }
    operator = _egress(manifests, "operator")
    assert operator[0] == (frozenset({443, 6443}), None)  # the API server, wherever it is
    assert operator[1][0] == frozenset({9090})


def test_external_backends_are_reached_on_their_ports_only(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-external"]
    redis = frozenset({6379, 6380, 26379})  # 26379: a Sentinel group's
    assert [ports for ports, _ in _egress(manifests, "cache")][1:] == [redis, frozenset({6333, 6334})]
    assert [ports for ports, _ in _egress(manifests, "embedding")] == [redis]


def test_with_quotas_the_router_reaches_redis_with_the_password() -> None:
    manifests = template(*DEFAULT_ARGS, "--set", "router.quotas.enabled=true")
    reached = [(ports, _component_of(peers)) for ports, peers in _egress(manifests, "router")]
    assert (frozenset({6379}), "redis") in reached
    env = container(manifests, "Deployment", "router")["env"]
    names = [item["name"] for item in env]
    assert names.index("REDIS_PASSWORD") < names.index("SUBSECOND_ROUTER_QUOTA_REDIS_URL")
    assert env_of({"env": env})["REDIS_PASSWORD"] == SECRET_REF
