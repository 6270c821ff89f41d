"""The router's keys in the chart: required unless anonymous access is switched on explicitly, read
hashed from a Secret, and every tier's cache identity naming the model behind it."""

from __future__ import annotations

from typing import Any

import pytest
from chart_render import CHART, DEFAULT_ARGS, env_of, name_of, one, pod_spec, template, template_error

from subsecond.router.settings import RouterSettings


def router_env(*args: str) -> dict[str, Any]:
    deployment = one(template(*args), "Deployment", name_of("router"))
    (container,) = pod_spec(deployment)["containers"]
    return env_of(container)


def test_by_default_every_call_needs_a_key() -> None:
    env = router_env(*DEFAULT_ARGS)
    assert "SUBSECOND_ROUTER_ALLOW_ANONYMOUS" not in env
    assert "SUBSECOND_ROUTER_API_KEYS" not in env
    # What the router does with that environment: a call without a key is refused.
    settings = RouterSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert settings.keys.anonymous is None


def test_anonymous_access_is_explicit_and_names_its_tenant() -> None:
    env = router_env("-f", str(CHART / "ci" / "minimal-cpu-values.yaml"))
    assert env["SUBSECOND_ROUTER_ALLOW_ANONYMOUS"] == "true"
    assert env["SUBSECOND_ROUTER_DEFAULT_TENANT"] == "default"


def test_production_reads_hashed_keys_from_its_secret() -> None:
    env = router_env("-f", str(CHART / "ci" / "production-external-values.yaml"))
    assert env["SUBSECOND_ROUTER_API_KEYS"] == {"secretKeyRef": {"name": "subsecond-api-keys", "key": "api-keys"}}
    assert "SUBSECOND_ROUTER_ALLOW_ANONYMOUS" not in env


@pytest.mark.parametrize("profile", ["production-external", "gpu-4"])
def test_each_tier_cache_identity_names_its_model(profile: str) -> None:
    values = ["-f", str(CHART / "ci" / f"{profile}-values.yaml")]
    env = router_env(*values, "--set", "triton.engines.pvc.storageClassName=efs-sc")
    revisions = dict(pair.split("=") for pair in env["SUBSECOND_ROUTER_TIER_REVISIONS"].split(","))
    assert revisions["small"] == "llama-3.2-3b-instruct"
    assert set(revisions) == set(env["SUBSECOND_ROUTER_TIERS"].split(","))


def test_an_anonymous_tenant_must_be_a_name() -> None:
    message = template_error(*DEFAULT_ARGS, "--set", "router.allowAnonymous=true", "--set", "router.defaultTenant=a*b")
    assert "defaultTenant" in message
