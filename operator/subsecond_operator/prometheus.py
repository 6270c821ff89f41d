"""Reading the objective's percentile and request rate from Prometheus's HTTP API."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import aiohttp

from subsecond_operator.metrics import PROMETHEUS_SECONDS
from subsecond_operator.spec import RECENT_WINDOW_SECONDS, Objective


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or refused the query."""


def _series(objective: Objective, suffix: str, window: str) -> str:
    """``rate(<metric>_<suffix>{<selector>}[<window>])``."""
    matchers = "{" + objective.selector + "}" if objective.selector else ""
    return f"rate({objective.metric}_{suffix}{matchers}[{window}])"


def latency_query(objective: Objective) -> str:
    """PromQL for the objective's percentile in seconds, over all series the selector matches."""
    if objective.query:
        return objective.query
    buckets = _series(objective, "bucket", objective.window)
    return f"histogram_quantile({objective.percentile:g}, sum by (le) ({buckets}))"


def rate_query(objective: Objective) -> str:
    """PromQL for the requests per second the target completes."""
    if objective.rate_query:
        return objective.rate_query
    return f"sum({_series(objective, 'count', objective.window)})"


def mean_query(objective: Objective, window: str | None = None) -> str | None:
    """PromQL for the mean latency in seconds over the window (the histogram's _sum / _count), or over
    ``window``; None where the percentile comes from a ``query`` override or there is no metric."""
    if objective.query or not objective.metric:
        return None
    over = window or objective.window
    return f"sum({_series(objective, 'sum', over)}) / sum({_series(objective, 'count', over)})"


def recent_mean_query(objective: Objective) -> str | None:
    """PromQL for the mean latency over the recent window, whose difference from the window's measures a
    backlog; None as for :func:`mean_query`, or when the objective's window is not longer than the recent one."""
    if objective.window_seconds <= RECENT_WINDOW_SECONDS:
        return None
    return mean_query(objective, f"{RECENT_WINDOW_SECONDS}s")


def recent_rate_query(objective: Objective) -> str | None:
    """PromQL for the completion rate over the recent window; None with a ``rateQuery`` override, without
    a metric, or when the objective's window is not longer than the recent one."""
    if objective.rate_query or not objective.metric or objective.window_seconds <= RECENT_WINDOW_SECONDS:
        return None
    return f"sum({_series(objective, 'count', f'{RECENT_WINDOW_SECONDS}s')})"


@dataclass(frozen=True)
class Reading:
    # None when the query returned no sample or NaN (no requests in the window for a percentile).
    latency_seconds: float | None
    rate_rps: float | None
    mean_seconds: float | None = None  # the window's mean latency, when it can be queried
    recent_rps: float | None = None  # the completion rate over the recent window, when it can be queried
    recent_mean_seconds: float | None = None  # the mean latency over the recent window, when it can be queried
    # The percentile and rate queries that matched no series at all (not NaN: no series), to say why in status.
    unmatched: tuple[str, ...] = ()

    def why_missing(self) -> str | None:
        """Why the percentile or rate is missing, when no series matched: the likely cause, for status and Events."""
        if not self.unmatched:
            return None
        return (
            f"no series match {' nor '.join(self.unmatched)}: Prometheus scrapes no such histogram with these labels"
            " (the chart's selectors match series scraped through its ServiceMonitors: serviceMonitor.enabled, and"
            " serviceMonitor.labels your Prometheus selects by; or check the metric name and objective.selector)"
        )


class PrometheusClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout_seconds: float) -> None:
        self._session = session
        self._url = url.rstrip("/") + "/api/v1/query"
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def scalar(self, query: str) -> float | None:
        """The single value of an instant query; None if it has no sample or is NaN."""
        return (await self._instant(query))[0]

    async def _instant(self, query: str) -> tuple[float | None, bool]:
        """The single value of an instant query (None if it has no sample or is NaN), and whether any series matched."""
        started = time.perf_counter()
        try:
            async with self._session.get(self._url, params={"query": query}, timeout=self._timeout) as response:
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise PrometheusError(f"{self._url}: {error!r}") from error
        finally:
            PROMETHEUS_SECONDS.observe(time.perf_counter() - started)
        if not isinstance(payload, dict) or payload.get("status") != "success":
            detail = payload.get("error") if isinstance(payload, dict) else payload
            raise PrometheusError(f"query {query!r} failed: {detail}")
        data = payload["data"]
        if data["resultType"] == "scalar":
            value = float(data["result"][1])
        elif not data["result"]:
            return None, False
        elif len(data["result"]) > 1:
            raise PrometheusError(f"query {query!r} returned {len(data['result'])} series; it must return one")
        else:
            value = float(data["result"][0]["value"][1])
        return (None if math.isnan(value) else value), True

    async def read(self, objective: Objective) -> Reading:
        queries = latency_query(objective), rate_query(objective)
        (latency, latency_matched), (rate, rate_matched) = [await self._instant(q) for q in queries]
        matched = latency_matched, rate_matched
        optional = mean_query(objective), recent_rate_query(objective), recent_mean_query(objective)
        mean, recent, recent_mean = [None if query is None else await self.scalar(query) for query in optional]
        return Reading(
            latency,
            rate,
            mean,
            recent,
            recent_mean,
            unmatched=tuple(query for query, found in zip(queries, matched, strict=True) if not found),
        )
