"""Settings of the operator (environment variables ``SUBSECOND_OPERATOR_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from subsecond.kit.settings import EnvReader


@dataclass(frozen=True)
class OperatorSettings:
    prometheus_url: str
    # Namespace whose LatencySLOs are watched; empty watches every namespace (needs the ClusterRole's namespaces).
    namespace: str
    # How often each LatencySLO is reconciled.
    interval_seconds: float
    # Per-query budget of a Prometheus call.
    prometheus_timeout_seconds: float
    # Delay before retrying after a failed Kubernetes call (kopf's TemporaryError).
    retry_delay_seconds: float
    # The operator's own Prometheus /metrics and kopf's liveness probe (/healthz).
    metrics_port: int
    health_port: int
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorSettings:
        env = EnvReader(environ, "SUBSECOND_OPERATOR_")
        level = env.text("LOG_LEVEL", "INFO").upper()
        settings = cls(
            prometheus_url=env.text("PROMETHEUS_URL", "http://prometheus-operated:9090").rstrip("/"),
            namespace=env.text("NAMESPACE", ""),
            interval_seconds=env.number("INTERVAL_SECONDS", 15.0, minimum=1.0, maximum=3600.0),
            prometheus_timeout_seconds=env.number("PROMETHEUS_TIMEOUT_SECONDS", 5.0, minimum=0.1, maximum=60.0),
            retry_delay_seconds=env.number("RETRY_DELAY_SECONDS", 5.0, minimum=0.1, maximum=600.0),
            metrics_port=env.integer("METRICS_PORT", 9465, maximum=65535),
            health_port=env.integer("HEALTH_PORT", 8080, maximum=65535),
            log_level=level,
        )
        env.check(
            level in {"DEBUG", "INFO", "WARNING", "ERROR"}, f"LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR"
        )
        env.check(
            settings.prometheus_url.startswith(("http://", "https://")),
            f"SUBSECOND_OPERATOR_PROMETHEUS_URL={settings.prometheus_url!r}: use an http(s) URL",
        )
        env.check(
            settings.metrics_port != settings.health_port or settings.metrics_port == 0,
            "SUBSECOND_OPERATOR_METRICS_PORT and HEALTH_PORT must differ",
        )
        env.done()
        return settings
