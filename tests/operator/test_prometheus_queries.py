"""The PromQL the operator sends, built from the objective: which queries exist for which specs."""

from __future__ import annotations

from typing import Any

import pytest
from slo_specs import base_spec

from subsecond_operator.prometheus import (
    latency_query,
    mean_query,
    rate_query,
    recent_mean_query,
    recent_rate_query,
)
from subsecond_operator.spec import Objective, SLOSpec

METRIC = "subsecond_router_request_duration_seconds"


def _objective(**fields: Any) -> Objective:
    return SLOSpec.parse(base_spec(objective={"thresholdMs": 300, **fields})).objective


def test_queries_from_a_metric_and_selector() -> None:
    objective = _objective(metric=METRIC, selector='service="router"', window="2m")
    matched = METRIC + '_count{service="router"}'
    assert latency_query(objective) == (
        f'histogram_quantile(0.95, sum by (le) (rate({METRIC}_bucket{{service="router"}}[2m])))'
    )
    assert rate_query(objective) == f"sum(rate({matched}[2m]))"
    assert mean_query(objective) == f'sum(rate({METRIC}_sum{{service="router"}}[2m])) / sum(rate({matched}[2m]))'
    assert recent_rate_query(objective) == f"sum(rate({matched}[30s]))"
    assert recent_mean_query(objective) == (
        f'sum(rate({METRIC}_sum{{service="router"}}[30s])) / sum(rate({matched}[30s]))'
    )


@pytest.mark.parametrize(
    ("fields", "mean", "recent", "recent_mean"),
    [
        ({"metric": METRIC, "window": "30s"}, True, False, False),  # the window is not longer than the recent one
        ({"metric": METRIC, "window": "45s"}, True, True, True),
        ({"metric": METRIC, "query": "my_p95", "rateQuery": "my_rate"}, False, False, False),  # overrides: not derived
        ({"query": "my_p95", "rateQuery": "my_rate"}, False, False, False),
        ({"metric": METRIC, "rateQuery": "my_rate"}, True, False, True),
    ],
)
def test_which_extra_queries_exist(fields: dict[str, str], mean: bool, recent: bool, recent_mean: bool) -> None:
    objective = _objective(**fields)
    queries = mean_query(objective), recent_rate_query(objective), recent_mean_query(objective)
    assert tuple(query is not None for query in queries) == (mean, recent, recent_mean)
