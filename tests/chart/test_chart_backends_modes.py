"""The chart's Redis modes (in-chart, external, cluster, Sentinel) and the Qdrant collection's layout,
rendered with the real helm and read back by the services' own code: each rendered Redis URL, once
the kubelet has expanded its ``$(VAR)`` references from the Secrets, is parsed by kit.redis_client as
the cache, embedding and router pods would, and the cache's rendered environment is read by
CacheSettings as the cache pod would."""

from __future__ import annotations

from typing import Any

import pytest
from chart_render import DEFAULT_ARGS, Manifest, env_of, name_of, one, pod_spec, template, template_error

from subsecond.cache.settings import CacheSettings
from subsecond.cache.vectors import CollectionLayout
from subsecond.kit.redis_client import RedisTarget, parse_url

# What the kubelet would read from the Secrets the rendered env names.
SECRETS = {"REDIS_PASSWORD": "s3cret", "REDIS_SENTINEL_PASSWORD": "sentinel-s3cret"}
CLUSTER = ["--set", "redis.mode=cluster", "--set", "redis.cluster.nodes={redis-0.redis:6379,redis-1.redis:6379}"]
SENTINEL = ["--set", "redis.mode=sentinel", "--set", "redis.sentinel.nodes={sentinel-0:26379,sentinel-1}"]
REDIS_URLS = {
    "cache": "SUBSECOND_CACHE_REDIS_URL",
    "embedding": "SUBSECOND_EMBEDDING_REDIS_URL",
    "router": "SUBSECOND_ROUTER_QUOTA_REDIS_URL",
}


def env(manifests: list[Manifest], component: str) -> dict[str, Any]:
    return env_of(pod_spec(one(manifests, "Deployment", name_of(component)))["containers"][0])


def expanded(value: str, variables: dict[str, Any]) -> str:
    """The kubelet's expansion of ``$(NAME)``: only variables declared before it, with their Secret's value."""
    for name, secret in SECRETS.items():
        if name in variables:
            assert variables[name]["secretKeyRef"]["name"]  # from a Secret, never spelled out
            value = value.replace(f"$({name})", secret)
    assert "$(" not in value, f"an undeclared reference is left in {value}"
    return value


def redis_targets(*args: str) -> dict[str, RedisTarget]:
    """Each Redis user's target, as its pod would parse its URL (quotas on, so the router has one)."""
    manifests = template(*DEFAULT_ARGS, "--set", "router.quotas.enabled=true", *args)
    targets = {}
    for component, name in REDIS_URLS.items():
        variables = env(manifests, component)
        targets[component] = parse_url(expanded(variables[name], variables))
    return targets


def test_a_cluster_is_reached_through_its_seed_nodes_with_the_password_from_its_secret() -> None:
    targets = redis_targets(*CLUSTER, "--set", "redis.cluster.auth.existingSecret=redis-cluster")

    assert set(targets.values()) == {
        RedisTarget("cluster", (("redis-0.redis", 6379), ("redis-1.redis", 6379)), password="s3cret")
    }


def test_a_cluster_without_a_secret_is_reached_without_a_password_and_over_tls_when_asked() -> None:
    targets = redis_targets(*CLUSTER, "--set", "redis.cluster.tls=true")

    assert {(target.mode, target.password, target.tls) for target in targets.values()} == {("cluster", None, True)}


def test_a_sentinel_group_names_its_primary_and_both_passwords_come_from_the_secret() -> None:
    targets = redis_targets(
        *SENTINEL,
        "--set", "redis.sentinel.serviceName=cache",
        "--set", "redis.sentinel.db=2",
        "--set", "redis.sentinel.auth.existingSecret=redis-sentinel",
        "--set", "redis.sentinel.auth.sentinelPasswordKey=sentinel-password",
    )  # fmt: skip

    assert set(targets.values()) == {
        RedisTarget(
            "sentinel",
            (("sentinel-0", 26379), ("sentinel-1", 26379)),
            password="s3cret",
            service_name="cache",
            db=2,
            sentinel_password="sentinel-s3cret",
        )
    }


def test_sentinels_without_their_own_password_are_asked_without_one() -> None:
    manifests = template(*DEFAULT_ARGS, *SENTINEL, "--set", "redis.sentinel.auth.existingSecret=redis-sentinel")
    variables = env(manifests, "cache")

    assert "REDIS_SENTINEL_PASSWORD" not in variables
    target = parse_url(expanded(variables["SUBSECOND_CACHE_REDIS_URL"], variables))
    assert (target.password, target.sentinel_password, target.service_name) == ("s3cret", None, "mymaster")


def test_an_external_url_of_any_mode_passes_the_schema_and_no_redis_runs_in_the_chart() -> None:
    manifests = template(
        *DEFAULT_ARGS, "--set", "redis.mode=external", "--set", "redis.external.url=redis+cluster://r:7000"
    )

    assert parse_url(env(manifests, "cache")["SUBSECOND_CACHE_REDIS_URL"]).mode == "cluster"
    assert not [m for m in manifests if m["metadata"]["name"] == name_of("redis")]


@pytest.mark.parametrize("mode", [CLUSTER, SENTINEL])
def test_cluster_and_sentinel_modes_run_no_redis_of_their_own(mode: list[str]) -> None:
    manifests = template(*DEFAULT_ARGS, *mode)

    assert not [m for m in manifests if m["metadata"]["name"].startswith(name_of("redis"))]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "redis.mode=cluster"], "redis.cluster.nodes is required when redis.mode is cluster"),
        (["--set", "redis.mode=sentinel"], "redis.sentinel.nodes is required when redis.mode is sentinel"),
        (["--set", "redis.mode=replicated"], "/redis/mode"),
        (["--set", "redis.mode=external", "--set", "redis.external.url=memcached://m:11211"], "/redis/external/url"),
        (["--set", "redis.cluster.nodes={not a host}"], "/redis/cluster/nodes/0"),
    ],
)
def test_a_redis_mode_that_cannot_work_is_refused(args: list[str], message: str) -> None:
    assert message in template_error(*DEFAULT_ARGS, *args)


def cache_settings(*args: str) -> CacheSettings:
    """The cache's settings from its rendered environment (Secrets' values stand in for references)."""
    variables = env(template(*DEFAULT_ARGS, *args), "cache")
    environ = {name: value for name, value in variables.items() if isinstance(value, str)}
    environ.update(SUBSECOND_CACHE_PORT="0", SUBSECOND_CACHE_METRICS_PORT="0")
    return CacheSettings.from_env(environ)


def test_the_qdrant_collection_layout_reaches_the_cache() -> None:
    settings = cache_settings(
        "--set", "qdrant.mode=external",
        "--set", "qdrant.external.url=https://qdrant.example.com:6333",
        "--set", "qdrant.collection.shards=6",
        "--set", "qdrant.collection.replicationFactor=3",
        "--set", "qdrant.collection.writeConsistency=2",
        "--set", "qdrant.collection.quantization=int8",
        "--set", "qdrant.collection.tenantShards={acme,globex}",
    )  # fmt: skip

    assert settings.vector_layout == CollectionLayout(6, 3, 2, "int8", frozenset({"acme", "globex"}))


def test_by_default_the_collection_is_left_to_qdrants_defaults_and_edge_mode_has_no_layout() -> None:
    assert cache_settings().vector_layout == CollectionLayout()
    edge = env(template(*DEFAULT_ARGS, "--set", "qdrant.mode=edge"), "cache")
    layout = {name for name in edge if name.startswith("SUBSECOND_CACHE_VECTOR_")} - {
        "SUBSECOND_CACHE_VECTOR_URL",
        "SUBSECOND_CACHE_VECTOR_PATH",
    }
    assert not layout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "qdrant.collection.quantization=binary"], "/qdrant/collection/quantization"),
        (["--set", "qdrant.collection.tenantShards={_shared}"], "/qdrant/collection/tenantShards/0"),
        (["--set", "qdrant.collection.replicationFactor=-1"], "/qdrant/collection/replicationFactor"),
    ],
)
def test_a_collection_layout_that_cannot_work_is_refused(args: list[str], message: str) -> None:
    assert message in template_error(*DEFAULT_ARGS, *args)
