"""The router's quotas in the chart: off by default; on, the router counts them in the chart's Redis
with the limits, overrides and replica share of `router.quotas`, in settings the router accepts."""

from __future__ import annotations

from typing import Any

from chart_render import DEFAULT_ARGS, env_of, name_of, one, pod_spec, template, template_error

from subsecond.router.quotas import Quota
from subsecond.router.settings import RouterSettings

QUOTAS_ON = [
    *DEFAULT_ARGS,
    "--set", "router.quotas.enabled=true",
    "--set", "router.quotas.requestsPerMinute=600",
    "--set", "router.quotas.tokensPerMinute=100000",
]  # fmt: skip


def router_env(*args: str) -> dict[str, Any]:
    deployment = one(template(*args), "Deployment", name_of("router"))
    (container,) = pod_spec(deployment)["containers"]
    return env_of(container)


def test_quotas_are_off_by_default() -> None:
    assert not any(name.startswith("SUBSECOND_ROUTER_QUOTA_") for name in router_env(*DEFAULT_ARGS))


def test_quotas_count_in_the_charts_redis_with_their_limits_and_overrides() -> None:
    env = router_env(
        *QUOTAS_ON,
        "--set", "router.quotas.overrides.gold.requestsPerMinute=6000",
        "--set", "router.quotas.overrides.trial.tokensPerMinute=1000",
    )  # fmt: skip
    url = env["SUBSECOND_ROUTER_QUOTA_REDIS_URL"]
    assert url.startswith("redis://") and url.endswith(f"{name_of('redis')}:6379/0")
    if "$(REDIS_PASSWORD)" in url:  # Kubernetes expands only a variable declared before the one using it
        names = list(env)
        assert "REDIS_PASSWORD" in names[: names.index("SUBSECOND_ROUTER_QUOTA_REDIS_URL")]
    assert env["SUBSECOND_ROUTER_QUOTA_OVERRIDES"] == "gold=6000/0,trial=0/1000"
    # The LatencySLO manages the router by default: its fewest replicas share the limits.
    assert env["SUBSECOND_ROUTER_QUOTA_REPLICAS"] == "2"
    quotas = RouterSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)}).quotas
    assert quotas.default == Quota(600, 100_000)
    assert quotas.overrides == {"gold": Quota(6000, 0), "trial": Quota(0, 1000)}


def test_the_replica_share_follows_the_replicas_the_chart_runs() -> None:
    fixed = router_env(*QUOTAS_ON, "--set", "router.latencySLO.enabled=false", "--set", "router.replicas=5")
    assert fixed["SUBSECOND_ROUTER_QUOTA_REPLICAS"] == "5"
    scaled = router_env(*QUOTAS_ON, "--set", "router.latencySLO.minReplicas=3")
    assert scaled["SUBSECOND_ROUTER_QUOTA_REPLICAS"] == "3"
    told = router_env(*QUOTAS_ON, "--set", "router.quotas.replicas=4")
    assert told["SUBSECOND_ROUTER_QUOTA_REPLICAS"] == "4"


def test_an_external_redis_holds_the_quotas_too() -> None:
    env = router_env(
        *QUOTAS_ON, "--set", "redis.mode=external", "--set", "redis.external.existingSecret=redis-credentials"
    )
    assert env["SUBSECOND_ROUTER_QUOTA_REDIS_URL"] == {
        "secretKeyRef": {"name": "redis-credentials", "key": "redis-url"}
    }


def test_an_override_must_name_a_tenant_and_hold_limits() -> None:
    assert "'a*b' does not match" in template_error(
        *QUOTAS_ON, "--set", "router.quotas.overrides.a*b.requestsPerMinute=1"
    )
    assert "overrides" in template_error(*QUOTAS_ON, "--set", "router.quotas.overrides.gold.burst=1")
