"""The chart's Grafana dashboard against the services' metrics modules: every series a panel queries is
one the services register (under its exposed name and labels) or a recording rule the chart installs,
no two panels overlap, and the HTTP front door's row computes what it says, evaluated by the real promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from chart_render import CHART
from prometheus_client.metrics import MetricWrapperBase

from subsecond.cache import service as cache_service
from subsecond.embedding import service as embedding_service
from subsecond.generation import service as generation_service
from subsecond.router import http_api
from subsecond.router import metrics as router_metrics

DASHBOARD = CHART / "files" / "grafana" / "subsecond-slo.json"
RULES = CHART / "files" / "prometheus" / "subsecond-rules.yaml"
# Where each service declares its metrics (the router in its own module, the others beside their servicer).
METRICS_MODULES = (router_metrics, cache_service, embedding_service, generation_service)
# The series names a metric is exposed under, by its type (prometheus_client adds the suffixes).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}
# Labels the scrape adds (the ServiceMonitor's target labels), which no service declares.
TARGET_LABELS = {"namespace", "service", "pod", "instance", "job", "container", "endpoint"}
GRID_COLUMNS = 24
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# A selector: a name and its braces, which may hold Grafana's ${var} inside its strings.
SELECTOR = re.compile(r"\b(subsecond_[a-z0-9_]+)\{((?:[^{}]|\$\{\w+\})*)\}")
MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')
HTTP_PANELS = ("Calls by protocol (grpc, http)", "Calls by protocol and code", "HTTP error share (4xx, 5xx)")


def exported_series() -> dict[str, set[str]]:
    """Each series name the services expose, with the labels it carries."""
    series: dict[str, set[str]] = {}
    for module in METRICS_MODULES:
        for metric in _metrics_of(module):
            for family in metric.describe():
                labels = set(metric._labelnames)
                for suffix in SUFFIXES[family.type]:
                    series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def _metrics_of(module: ModuleType) -> list[MetricWrapperBase]:
    return [value for value in vars(module).values() if isinstance(value, MetricWrapperBase)]


def recorded_series() -> set[str]:
    return {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def unknown_series(expr: str, exported: dict[str, set[str]], recorded: set[str]) -> set[str]:
    """What in ``expr`` is no series the services export or the chart records: a subsecond name that
    is neither (a recording rule's has colons), or a label a selector matches that its series lacks."""
    unknown = set()
    for name in IDENTIFIER.findall(STRING.sub('""', expr)):
        if "subsecond_" in name and name not in (recorded if ":" in name else exported):
            unknown.add(name)
    for name, matchers in SELECTOR.findall(expr):
        for label in set(MATCHER.findall(matchers)) - exported.get(name, set()) - TARGET_LABELS:
            unknown.add(f"{name}{{{label}}}")
    return unknown


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel(title: str) -> dict[str, Any]:
    (found,) = [p for p in dashboard()["panels"] if p["title"] == title]
    return found


def test_the_checker_flags_series_and_labels_nobody_exports() -> None:
    exported, recorded = exported_series(), recorded_series()
    assert {"subsecond_router_protocol_requests_total", "subsecond_cache_bypass_total"} <= exported.keys()
    assert exported["subsecond_router_protocol_requests_total"] == {"protocol", "code"}
    assert "subsecond_router_requests_errors" not in exported  # recorded only, with its colons
    wrong = (
        'sum(rate(subsecond_router_http_requests_total{service="x"}[5m]))'  # no such counter
        " / sum(rate(subsecond_router_request_duration_seconds_total[5m]))"  # a histogram has no _total
        ' + rate(subsecond_router_protocol_requests_total{status="500"}[5m])'  # its label is code
        " + namespace_service:subsecond_router_requests_errors:ratio_rate5d"  # no such rule
    )
    assert unknown_series(wrong, exported, recorded) == {
        "subsecond_router_http_requests_total",
        "subsecond_router_request_duration_seconds_total",
        "subsecond_router_protocol_requests_total{status}",
        "namespace_service:subsecond_router_requests_errors:ratio_rate5d",
    }
    right = 'rate(subsecond_router_http_responses_total{service="${prefix}-router",status=~"5.."}[5m])'
    assert unknown_series(right, exported, recorded) == set()


def test_every_panel_queries_series_that_exist() -> None:
    exported, recorded = exported_series(), recorded_series()
    unknown = {
        (p["title"], name)
        for p in dashboard()["panels"]
        for target in p["targets"]
        for name in unknown_series(target["expr"], exported, recorded)
    }
    assert not unknown, unknown


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, p["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (p["title"], cells.get((x, y)))
                cells[x, y] = p["title"]


@pytest.mark.parametrize("title", HTTP_PANELS)
def test_http_panels_follow_the_dashboards_conventions(title: str) -> None:
    found = panel(title)
    assert found["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert found["fieldConfig"]["defaults"]["unit"] == ("percentunit" if "share" in title else "reqps")
    for target in found["targets"]:
        assert target["datasource"] == found["datasource"]
        assert 'namespace="$namespace",service="${prefix}-router"' in target["expr"], target["expr"]
    assert len({p["gridPos"]["y"] for p in map(panel, HTTP_PANELS)}) == 1, "one row"


def test_the_error_share_counts_every_refusal_the_http_api_answers() -> None:
    """The 4xx and 5xx series match each status http_api maps a domain error to (and its 500), not a 200."""
    (four, five) = (re.search(r'status=~"([^"]+)"', t["expr"]) for t in panel(HTTP_PANELS[2])["targets"])
    assert four and five
    statuses = {status for status, _ in http_api._STATUS.values()} | {500}
    assert {s for s in statuses if re.fullmatch(four[1], str(s))} == {s for s in statuses if s < 500}
    assert {s for s in statuses if re.fullmatch(five[1], str(s))} == {s for s in statuses if s >= 500}
    assert not re.fullmatch(four[1], "200") and not re.fullmatch(five[1], "200")


def _for_release(expr: str) -> str:
    """``expr`` as Grafana sends it with namespace "ns" and release "rel" chosen."""
    return expr.replace("$namespace", "ns").replace("${prefix}", "rel")


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{name}="{value}"' for name, value in labels.items()) + "}"


def test_http_panels_compute_rates_and_shares_in_promtool(tmp_path: Path) -> None:
    """Synthetic counters (per minute) through the panels' own queries: the probes' 503s while draining
    and another release's errors stay out of the share; calls add up by protocol and code."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install Debian's prometheus package (.ci/run does)")
    ours = 'namespace="ns",service="rel-router"'
    responses = "subsecond_router_http_responses_total"
    calls = "subsecond_router_protocol_requests_total"
    series = {
        f'{responses}{{{ours},route="/v1/chat/completions",status="200"}}': 480,
        f'{responses}{{{ours},route="/v1/chat/completions",status="429"}}': 60,
        f'{responses}{{{ours},route="/v1/embeddings",status="503"}}': 60,
        f'{responses}{{{ours},route="/readyz",status="503"}}': 600,
        f'{responses}{{namespace="ns",service="other-router",route="/v1/completions",status="500"}}': 600,
        f'{calls}{{{ours},protocol="grpc",code="OK"}}': 120,
        f'{calls}{{{ours},protocol="http",code="OK"}}': 480,
        f'{calls}{{{ours},protocol="http",code="RESOURCE_EXHAUSTED"}}': 60,
    }
    by_protocol, by_code, share = (panel(title)["targets"] for title in HTTP_PANELS)
    expected: list[tuple[dict[str, Any], list[tuple[dict[str, str], float]]]] = [
        (by_protocol[0], [({"protocol": "grpc"}, 2.0), ({"protocol": "http"}, 9.0)]),
        (
            by_code[0],
            [
                ({"protocol": "grpc", "code": "OK"}, 2.0),
                ({"protocol": "http", "code": "OK"}, 8.0),
                ({"protocol": "http", "code": "RESOURCE_EXHAUSTED"}, 1.0),
            ],
        ),
        (share[0], [({}, 0.1)]),
        (share[1], [({}, 0.1)]),
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": name, "values": f"0+{per_minute}x20"} for name, per_minute in series.items()
                ],
                "promql_expr_test": [
                    {
                        "expr": _for_release(target["expr"]),
                        "eval_time": "10m",
                        "exp_samples": [{"labels": _labels(labels), "value": value} for labels, value in samples],
                    }
                    for target, samples in expected
                ],
            }
        ],
    }
    path = tmp_path / "http-panels.test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [binary, "test", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
