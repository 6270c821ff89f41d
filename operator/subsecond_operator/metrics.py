"""The operator's own Prometheus metrics (``subsecond_operator_*``), labelled by LatencySLO, never by request."""

from prometheus_client import Counter, Gauge, Histogram

from subsecond.kit.metrics import FAST_SECONDS

DECISIONS = Counter("subsecond_operator_decisions_total", "Decisions made, by reason.", ["reason"])
SCALINGS = Counter("subsecond_operator_scalings_total", "Replica changes patched, by direction.", ["direction"])
ERRORS = Counter(
    "subsecond_operator_errors_total", "Failed reconciliations, by cause: prometheus, kubernetes, spec.", ["cause"]
)
OBSERVED_SECONDS = Gauge(
    "subsecond_operator_observed_latency_seconds",
    "Latency at the objective's percentile, as read from Prometheus.",
    ["namespace", "slo"],
)
PREDICTED_SECONDS = Gauge(
    "subsecond_operator_predicted_latency_seconds",
    "Latency the queueing estimate predicts at the desired replicas.",
    ["namespace", "slo"],
)
OBJECTIVE_SECONDS = Gauge("subsecond_operator_objective_seconds", "The objective's threshold.", ["namespace", "slo"])
DESIRED_REPLICAS = Gauge(
    "subsecond_operator_desired_replicas", "Replicas the last decision asked for.", ["namespace", "slo"]
)
PROMETHEUS_SECONDS = Histogram(
    "subsecond_operator_prometheus_query_duration_seconds", "Duration of one Prometheus query.", buckets=FAST_SECONDS
)
