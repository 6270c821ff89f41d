"""Settings of the router (environment variables ``SUBSECOND_ROUTER_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from subsecond.kit.settings import NAME_PATTERN, EnvReader, ServerSettings


@dataclass(frozen=True)
class RouterSettings:
    server: ServerSettings
    cache_url: str
    generation_url: str
    # API key -> tenant; sent by clients in the "x-api-key" metadata header.
    api_keys: Mapping[str, str]
    # Tenant of calls without a key; empty makes a key mandatory (UNAUTHENTICATED without one).
    default_tenant: str
    # Model tiers clients may ask for; "auto" and "" resolve to default_tier.
    tiers: tuple[str, ...]
    default_tier: str
    default_max_tokens: int
    max_tokens_limit: int
    max_prompt_chars: int
    # Streams one tenant may hold open at once; more get RESOURCE_EXHAUSTED.
    tenant_max_streams: int
    # Budget for calls without a deadline, and the cap on a cache lookup (then it fails open).
    default_deadline_seconds: float
    cache_timeout_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RouterSettings:
        env = EnvReader(environ, "SUBSECOND_ROUTER_")
        settings = cls(
            server=ServerSettings.read(env, default_port=50051, default_metrics_port=9461),
            cache_url=env.text("CACHE_URL", "127.0.0.1:50052"),
            generation_url=env.text("GENERATION_URL", "127.0.0.1:50054"),
            api_keys=env.mapping("API_KEYS", {}),
            default_tenant=env.text("DEFAULT_TENANT", "local"),
            tiers=env.names("TIERS", ("small",)),
            default_tier=env.text("DEFAULT_TIER", "small"),
            default_max_tokens=env.integer("DEFAULT_MAX_TOKENS", 128, minimum=1),
            max_tokens_limit=env.integer("MAX_TOKENS_LIMIT", 1024, minimum=1),
            max_prompt_chars=env.integer("MAX_PROMPT_CHARS", 32_000, minimum=1),
            tenant_max_streams=env.integer("TENANT_MAX_STREAMS", 64, minimum=1),
            default_deadline_seconds=env.number("DEFAULT_DEADLINE_SECONDS", 60.0, minimum=0.1),
            cache_timeout_seconds=env.number("CACHE_TIMEOUT_MS", 150.0, minimum=1.0) / 1000.0,
        )
        env.check(settings.default_tier in settings.tiers, "SUBSECOND_ROUTER_DEFAULT_TIER must be one of TIERS")
        env.check(
            settings.default_max_tokens <= settings.max_tokens_limit,
            "SUBSECOND_ROUTER_DEFAULT_MAX_TOKENS must not exceed MAX_TOKENS_LIMIT",
        )
        for tenant in {
            *settings.api_keys.values(),
            *([settings.default_tenant] if settings.default_tenant else []),
        }:
            env.check(bool(NAME_PATTERN.match(tenant)), f"tenant {tenant!r} is not a simple name")
        env.done()
        return settings
