"""The router's Prometheus metrics. Their names and labels are an interface: the README's table,
dashboards and alerts read them."""

from __future__ import annotations

from typing import TypeVar, cast

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from subsecond.kit.metrics import FAST_SECONDS, REQUEST_SECONDS
from subsecond.v1 import types_pb2

# The ``served_by`` label of an answer.
SERVED_BY = {
    types_pb2.SERVED_BY_EXACT: "exact",
    types_pb2.SERVED_BY_SEMANTIC: "semantic",
    types_pb2.SERVED_BY_GENERATED: "generated",
    types_pb2.SERVED_BY_STATIC: "static",
}
REQUEST_DURATION = Histogram(
    "subsecond_router_request_duration_seconds",
    "Whole Generate calls (and workflow steps).",
    ["served_by"],
    buckets=REQUEST_SECONDS,
)
FIRST_CHUNK = Histogram(
    "subsecond_router_time_to_first_chunk_seconds",
    "From a Generate call (or workflow step) starting to its first chunk leaving.",
    ["served_by"],
    buckets=REQUEST_SECONDS,
)
HOP_DURATION = Histogram(
    "subsecond_router_hop_duration_seconds",
    "Router's downstream hops: cache_lookup, generation_first_chunk, cache_store.",
    ["hop"],
    buckets=FAST_SECONDS,
)
WORKFLOW_DURATION = Histogram(
    "subsecond_router_workflow_duration_seconds", "Whole RunWorkflow calls that finished.", buckets=REQUEST_SECONDS
)
REQUESTS = Counter(
    "subsecond_router_requests_total", "Generate calls and HTTP completions by final status code.", ["code"]
)
# The same calls by the protocol that brought them (grpc: Router/Generate; http: the OpenAI-compatible API).
PROTOCOL_REQUESTS = Counter(
    "subsecond_router_protocol_requests_total",
    "Generate calls (grpc) and chat/text completions (http) by final status code.",
    ["protocol", "code"],
)
HTTP_RESPONSES = Counter(
    "subsecond_router_http_responses_total", "Responses of the HTTP API by route and HTTP status.", ["route", "status"]
)
WORKFLOWS = Counter("subsecond_router_workflows_total", "RunWorkflow calls by final status code.", ["code"])
CACHE_BYPASS = Counter(
    "subsecond_router_cache_bypass_total",
    "Lookups that skipped the cache, by reason: the cache service failed, or one of its backends did.",
    ["reason"],
)
COALESCED = Counter("subsecond_router_coalesced_requests_total", "Misses that joined an identical running generation.")
STORES = Counter(
    "subsecond_router_cache_stores_total", "Write-throughs by result: stored, skipped, failed.", ["result"]
)
TOKENS = Counter("subsecond_router_tokens_total", "Tokens of answers served, by model and kind.", ["model", "kind"])
TOKENS_SAVED = Counter(
    "subsecond_router_tokens_saved_total",
    "Tokens generation was not asked for: history trimmed (prompt) or max_tokens capped (completion).",
    ["model", "kind"],
)
TIER_CHOICES = Counter(
    "subsecond_router_tier_choices_total",
    "Tiers that generated an answer, and the rule that chose them.",
    ["model", "reason"],
)
STATIC_ANSWERS = Counter("subsecond_router_static_answers_total", "Requests answered by a static route.", ["route"])
# Gauges say how they add up over worker processes (SUBSECOND_ROUTER_PROCESSES, kit/workers.py): in-flight
# counts and entries are summed over the live workers; "fallback active" is the worst worker's.
IN_FLIGHT = Gauge("subsecond_router_streams_in_flight", "Generate streams open now.", multiprocess_mode="livesum")
NEAR_CACHE_HITS = Counter(
    "subsecond_router_near_cache_hits_total",
    "Lookups answered by the router's near cache: fresh (the cache not asked) or stale (the cache could not answer).",
    ["freshness"],
)
NEAR_CACHE_ENTRIES = Gauge(
    "subsecond_router_near_cache_entries", "Answers held in the router's near cache.", multiprocess_mode="livesum"
)
NEAR_CACHE_EVICTIONS = Counter(
    "subsecond_router_near_cache_evictions_total",
    "Answers dropped from the near cache: size (entries or bytes over the limit) or expired.",
    ["reason"],
)
GENERATIONS_REFUSED = Counter(
    "subsecond_router_generations_refused_total",
    "Misses refused at once with RESOURCE_EXHAUSTED, by the limit reached: tenant, total, bypassed, saturated.",
    ["limit"],
)
GENERATIONS_IN_FLIGHT = Gauge(
    "subsecond_router_generations_in_flight", "Generations this router is running now.", multiprocess_mode="livesum"
)
# Speculative misses (pipeline.py): generations started while the semantic tier was still searched.
SPECULATIVE = Counter(
    "subsecond_router_speculative_generations_total",
    "Generations started before the semantic lookup answered: served (it missed) or cancelled (it hit).",
    ["outcome"],
)
SPECULATIVE_WASTED_TOKENS = Counter(
    "subsecond_router_speculative_wasted_prompt_tokens_total",
    "Estimated prompt tokens (4 characters a token) of speculative generations a semantic hit cancelled.",
)
# Quotas (quotas.py). The tenant label is a configured tenant (a key's, an override's or the anonymous
# one), else "other": its values are bounded by the configuration, not by callers.
QUOTA_REQUESTS = Counter(
    "subsecond_router_quota_requests_total", "Requests admitted under the tenant's request quota.", ["tenant"]
)
QUOTA_TOKENS = Counter(
    "subsecond_router_quota_tokens_total",
    "Tokens (prompt and completion) of finished generations, counted against the tenant's token quota.",
    ["tenant"],
)
QUOTA_REFUSALS = Counter(
    "subsecond_router_quota_refusals_total",
    "Calls refused with RESOURCE_EXHAUSTED by a quota: requests (at admission) or tokens (before a generation).",
    ["tenant", "quota"],
)
QUOTA_FALLBACK = Counter(
    "subsecond_router_quota_fallback_total",
    "Quota decisions this replica made alone, at its share of the limit, because Redis could not be asked.",
)
QUOTA_FALLBACK_ACTIVE = Gauge(
    "subsecond_router_quota_fallback_active",
    "1 while the last quota call could not ask Redis (limits per replica), else 0.",
    multiprocess_mode="livemax",
)

M = TypeVar("M", bound=MetricWrapperBase)
_CHILDREN: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}


def child(metric: M, *labels: str) -> M:
    """``metric.labels(*labels)``, looked up once: prometheus_client's own lookup takes a lock and
    checks each label on every call (about 8 us here under load; an exact hit made eight of them).
    As many entries as the metric has series, whose labels are bounded (the table in the README)."""
    key = (metric, labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return cast(M, found)
