"""Settings of the router (environment variables ``SUBSECOND_ROUTER_*``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from subsecond.kit.settings import NAME_PATTERN, EnvReader, ServerSettings
from subsecond.router.auth import ANONYMOUS_SCOPES, Caller, KeyRing
from subsecond.router.near_cache import NearCacheLimits
from subsecond.router.quotas import Quota, QuotaSettings, parse_overrides
from subsecond.router.sizing import AutoPolicy, TierLimits, centroid
from subsecond.router.static_routes import Rule, StaticRoutesError, load_routes
from subsecond.router.tenants import GenerationLimits

SMALL_TASKS = ("classify", "extract", "label", "yes_no", "route", "short_answer")
# When a miss starts generating (pipeline.py): "off", after the whole lookup; "always", as soon as the
# exact tier missed, while the semantic tier is searched; "spare", so only while fewer generations than
# SPECULATE_SHARE of MAX_GENERATIONS run.
SPECULATE_MODES = ("off", "always", "spare")
LARGE_TASKS = ("write", "draft", "explain", "summarize", "code")


@dataclass(frozen=True)
class RouterSettings:
    server: ServerSettings
    cache_url: str
    generation_url: str
    # The embedding service, for the HTTP API's /v1/embeddings.
    embedding_url: str
    # The OpenAI-compatible HTTP API's port (http_api.py); None (HTTP_PORT unset or empty): not served.
    http_port: int | None
    # Hashed API keys, each a tenant and its scopes, and the caller of a call without a key (auth.py).
    keys: KeyRing
    # Per tier (and "auto"), the cache identity sent with every lookup and store: the revision of the
    # model behind the tier (TIER_REVISIONS, e.g. "smollm2-135m.1") and the global CACHE_EPOCH. Part of
    # every cache key, so a new revision or epoch never serves an older model's answers.
    cache_revisions: Mapping[str, str]
    # Model tiers clients may ask for; "" resolves to default_tier, "auto" to the auto policy (sizing.py).
    tiers: tuple[str, ...]
    default_tier: str
    default_max_tokens: int
    max_tokens_limit: int
    # Bounds on a request, checked before any work: characters of the whole conversation, and its messages.
    max_prompt_chars: int
    max_messages: int
    # Generations at once: per tenant, in all, and started because the cache could not answer (tenants.py).
    generation_limits: GenerationLimits
    # Budget for calls without a deadline, and the cap on a cache lookup (then it fails open).
    default_deadline_seconds: float
    cache_timeout_seconds: float
    # How long the cache service is skipped after a failure before one trial lookup (kit.failopen).
    cache_breaker_cooldown_seconds: float
    # Whether a miss generates while the semantic tier is searched (SPECULATE_MODES), and the share of
    # MAX_GENERATIONS below which "spare" does.
    speculate: str
    speculate_share: float
    # The router's own copy of recent cache answers (near_cache.py).
    near_cache: NearCacheLimits
    # Per tier: max_tokens default and cap, and the prompt-token budget a chat history is trimmed to.
    tier_limits: Mapping[str, TierLimits]
    # The policy of model "auto" (see sizing.py).
    auto: AutoPolicy
    # Rules answered without the model, checked before the cache (see static_routes.py).
    static_routes: tuple[Rule, ...]
    workflow_max_steps: int
    # Characters of a workflow's inputs together, checked before any step is rendered.
    workflow_max_input_chars: int
    # Per-tenant requests and tokens a minute, counted in Redis across replicas (quotas.py).
    quotas: QuotaSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RouterSettings:
        env = EnvReader(environ, "SUBSECOND_ROUTER_")
        tiers = env.names("TIERS", ("small",))
        default_tier = env.text("DEFAULT_TIER", "small")
        default_max_tokens = env.integer("DEFAULT_MAX_TOKENS", 128, minimum=1)
        max_tokens_limit = env.integer("MAX_TOKENS_LIMIT", 1024, minimum=1)
        tier_defaults = env.integer_mapping("TIER_DEFAULT_MAX_TOKENS", {})
        tier_caps = env.integer_mapping("TIER_MAX_TOKENS", {})
        tier_prompts = env.integer_mapping("TIER_PROMPT_TOKENS", {})
        for name, given in (
            ("TIER_DEFAULT_MAX_TOKENS", tier_defaults),
            ("TIER_MAX_TOKENS", tier_caps),
            ("TIER_PROMPT_TOKENS", tier_prompts),
        ):
            env.check(
                set(given) <= set(tiers),
                f"SUBSECOND_ROUTER_{name} names tiers not in TIERS: {sorted(set(given) - set(tiers))}",
            )
        tier_revisions = env.mapping("TIER_REVISIONS", {})
        env.check(
            set(tier_revisions) <= set(tiers),
            f"SUBSECOND_ROUTER_TIER_REVISIONS names tiers not in TIERS: {sorted(set(tier_revisions) - set(tiers))}",
        )
        tier_limits = {
            tier: TierLimits(
                default_max_tokens=tier_defaults.get(tier, default_max_tokens),
                max_tokens=tier_caps.get(tier, max_tokens_limit),
                prompt_tokens=tier_prompts.get(tier, 2048),
            )
            for tier in tiers
        }
        for tier, limits in tier_limits.items():
            env.check(
                limits.default_max_tokens <= limits.max_tokens <= max_tokens_limit,
                f"tier {tier}: TIER_DEFAULT_MAX_TOKENS <= TIER_MAX_TOKENS <= MAX_TOKENS_LIMIT must hold",
            )
        settings = cls(
            server=ServerSettings.read(env, default_port=50051, default_metrics_port=9461),
            cache_url=env.text("CACHE_URL", "127.0.0.1:50052"),
            generation_url=env.text("GENERATION_URL", "127.0.0.1:50054"),
            embedding_url=env.text("EMBEDDING_URL", "127.0.0.1:50053"),
            http_port=env.integer("HTTP_PORT", 0, maximum=65535) if env.text("HTTP_PORT", "") else None,
            keys=_keys(env),
            cache_revisions={},
            tiers=tiers,
            default_tier=default_tier,
            default_max_tokens=default_max_tokens,
            max_tokens_limit=max_tokens_limit,
            max_prompt_chars=env.integer("MAX_PROMPT_CHARS", 32_000, minimum=1),
            max_messages=env.integer("MAX_MESSAGES", 256, minimum=1),
            generation_limits=GenerationLimits(
                per_tenant=env.integer("TENANT_MAX_STREAMS", 64, minimum=1),
                total=env.integer("MAX_GENERATIONS", 64, minimum=1),
                bypassed=env.integer("BYPASS_MAX_GENERATIONS", 8, minimum=0),
                retry_after_seconds=env.number("RETRY_AFTER_MS", 1000.0, minimum=1.0) / 1000.0,
            ),
            default_deadline_seconds=env.number("DEFAULT_DEADLINE_SECONDS", 60.0, minimum=0.1),
            cache_timeout_seconds=env.number("CACHE_TIMEOUT_MS", 150.0, minimum=1.0) / 1000.0,
            cache_breaker_cooldown_seconds=env.number("CACHE_BREAKER_COOLDOWN_MS", 500.0, minimum=1.0) / 1000.0,
            speculate=env.text("SPECULATE", "off"),
            speculate_share=env.number("SPECULATE_SHARE", 0.5, minimum=0.0, maximum=1.0),
            near_cache=NearCacheLimits(
                max_entries=env.integer("NEAR_CACHE_ENTRIES", 10_000, minimum=0),
                max_bytes=env.integer("NEAR_CACHE_MB", 64, minimum=0) * 1024 * 1024,
                fresh_seconds=env.number("NEAR_CACHE_FRESH_SECONDS", 1.0, minimum=0.0),
                stale_seconds=env.number("NEAR_CACHE_STALE_SECONDS", 60.0, minimum=0.0),
                wait_seconds=env.number("NEAR_CACHE_WAIT_MS", 25.0, minimum=0.0) / 1000.0,
            ),
            tier_limits=tier_limits,
            auto=AutoPolicy(
                small=env.text("AUTO_SMALL_TIER", default_tier),
                large=env.text("AUTO_LARGE_TIER", default_tier),
                small_tasks=frozenset(env.names("AUTO_SMALL_TASKS", SMALL_TASKS)),
                large_tasks=frozenset(env.names("AUTO_LARGE_TASKS", LARGE_TASKS)),
                small_max_tokens=env.integer("AUTO_SMALL_MAX_TOKENS", 96, minimum=1),
                small_prompt_tokens=env.integer("AUTO_SMALL_PROMPT_TOKENS", 512, minimum=1),
                centroids=_centroids(env, env.text("TIER_CENTROIDS_FILE", ""), tiers),
                centroid_margin=env.number("AUTO_CENTROID_MARGIN", 0.02, minimum=0.0, maximum=2.0),
            ),
            static_routes=_static_routes(env, env.text("STATIC_ROUTES_FILE", "")),
            workflow_max_steps=env.integer("WORKFLOW_MAX_STEPS", 16, minimum=1, maximum=256),
            workflow_max_input_chars=env.integer("WORKFLOW_MAX_INPUT_CHARS", 64_000, minimum=1),
            quotas=_quotas(env),
        )
        settings = replace(
            settings,
            cache_revisions=_cache_revisions(
                tiers, tier_revisions, env.integer("CACHE_EPOCH", 0, minimum=0), settings.auto
            ),
        )
        env.check(settings.auto.small in tiers, "SUBSECOND_ROUTER_AUTO_SMALL_TIER must be one of TIERS")
        env.check(settings.auto.large in tiers, "SUBSECOND_ROUTER_AUTO_LARGE_TIER must be one of TIERS")
        env.check(settings.default_tier in settings.tiers, "SUBSECOND_ROUTER_DEFAULT_TIER must be one of TIERS")
        env.check(
            settings.speculate in SPECULATE_MODES,
            f"SUBSECOND_ROUTER_SPECULATE must be one of {', '.join(SPECULATE_MODES)}, not {settings.speculate!r}",
        )
        env.check(
            settings.near_cache.fresh_seconds <= settings.near_cache.stale_seconds,
            "SUBSECOND_ROUTER_NEAR_CACHE_FRESH_SECONDS must not exceed NEAR_CACHE_STALE_SECONDS",
        )
        env.check(
            settings.default_max_tokens <= settings.max_tokens_limit,
            "SUBSECOND_ROUTER_DEFAULT_MAX_TOKENS must not exceed MAX_TOKENS_LIMIT",
        )
        env.done()
        return settings


def _cache_revisions(
    tiers: tuple[str, ...], revisions: Mapping[str, str], epoch: int, auto: AutoPolicy
) -> dict[str, str]:
    """Each tier's revision with the epoch (``<revision>.e<epoch>``); "auto" answers come from either of
    its tiers, so its identity is both of theirs. No revision and epoch 0 is "" (the keys of before)."""

    def identity(revision: str) -> str:
        return f"{revision}.e{epoch}" if epoch or revision else ""

    own = {tier: revisions.get(tier, "") for tier in tiers}
    both = f"{own.get(auto.small, '')}+{own.get(auto.large, '')}"
    return {tier: identity(revision) for tier, revision in own.items()} | {
        "auto": identity(both if both != "+" else "")
    }


def _keys(env: EnvReader) -> KeyRing:
    """``API_KEYS`` (hashed, see auth.py); without a key a call is refused unless ``ALLOW_ANONYMOUS``
    is on, which makes it ``DEFAULT_TENANT`` (generate and workflow scopes only)."""
    default_tenant = env.text("DEFAULT_TENANT", "local")
    anonymous = None
    if env.flag("ALLOW_ANONYMOUS", False):
        env.check(
            bool(NAME_PATTERN.match(default_tenant)),
            f"SUBSECOND_ROUTER_DEFAULT_TENANT {default_tenant!r} is not a simple name",
        )
        anonymous = Caller(default_tenant, ANONYMOUS_SCOPES)
    try:
        return KeyRing.parse(env.text("API_KEYS", ""), anonymous)
    except ValueError as error:
        env.check(False, f"SUBSECOND_ROUTER_API_KEYS: {error}")
        return KeyRing((), anonymous)


def _quotas(env: EnvReader) -> QuotaSettings:
    """``QUOTA_*``: defaults, ``QUOTA_OVERRIDES=tenant=rpm/tpm,...`` (0: no limit) and the shared counts' Redis."""
    try:
        overrides = parse_overrides(env.mapping("QUOTA_OVERRIDES", {}))
    except ValueError as error:
        env.check(False, f"SUBSECOND_ROUTER_QUOTA_OVERRIDES: {error}")
        overrides = {}
    for tenant in overrides:
        env.check(
            bool(NAME_PATTERN.match(tenant)), f"SUBSECOND_ROUTER_QUOTA_OVERRIDES: {tenant!r} is not a tenant name"
        )
    return QuotaSettings(
        redis_url=env.text("QUOTA_REDIS_URL", ""),
        default=Quota(
            env.integer("QUOTA_REQUESTS_PER_MINUTE", 0, minimum=0), env.integer("QUOTA_TOKENS_PER_MINUTE", 0, minimum=0)
        ),
        overrides=overrides,
        replicas=env.integer("QUOTA_REPLICAS", 1, minimum=1),
        redis_timeout_seconds=env.number("QUOTA_REDIS_TIMEOUT_MS", 50.0, minimum=1.0) / 1000.0,
        redis_cooldown_seconds=env.number("QUOTA_REDIS_COOLDOWN_MS", 1000.0, minimum=1.0) / 1000.0,
        lease=env.integer("QUOTA_LEASE", 16, minimum=0),
    )


def _static_routes(env: EnvReader, path: str) -> tuple[Rule, ...]:
    if not path:
        return ()
    try:
        return load_routes(Path(path))
    except StaticRoutesError as error:
        env.check(False, f"SUBSECOND_ROUTER_STATIC_ROUTES_FILE: {error}")
        return ()


def _centroids(env: EnvReader, path: str, tiers: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    """Reads ``{"tier": [[embedding], ...], ...}`` (labelled example embeddings) into one centroid per
    tier; tiers this router does not serve are left out."""
    if not path:
        return {}
    try:
        examples = json.loads(Path(path).read_text(encoding="utf-8"))
        return {tier: centroid(vectors) for tier, vectors in examples.items() if tier in tiers}
    except (OSError, ValueError, TypeError, ZeroDivisionError, AttributeError) as error:
        env.check(False, f"SUBSECOND_ROUTER_TIER_CENTROIDS_FILE={path}: not a JSON map of tier to embeddings ({error})")
        return {}
