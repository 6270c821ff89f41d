"""The Prometheus rules with the real promtool, and the dashboard and kind files: one source, well formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
CHART_FILES = REPO / "charts" / "subsecond" / "files"
RULES = INFRA / "prometheus" / "subsecond-rules.yaml"
RULE_TESTS = INFRA / "prometheus" / "subsecond-rules.test.yaml"
DASHBOARD = INFRA / "grafana" / "subsecond-slo.json"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install Debian's prometheus package (.ci/run does)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def service_metric_names() -> set[str]:
    """Every subsecond_* metric the services declare."""
    names: set[str] = set()
    for path in (REPO / "services" / "subsecond").glob("*/*.py"):
        names |= set(re.findall(r'"(subsecond_[a-z0-9_]+)"', path.read_text()))
    return names


@pytest.mark.parametrize(
    ("link", "source"),
    [
        (RULES, CHART_FILES / "prometheus" / "subsecond-rules.yaml"),
        (DASHBOARD, CHART_FILES / "grafana" / "subsecond-slo.json"),
    ],
)
def test_infra_files_are_the_charts_files(link: Path, source: Path) -> None:
    assert link.is_symlink(), f"{link} must link to {source}, not copy it"
    assert link.resolve() == source.resolve()


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_on_a_breach_and_not_otherwise() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert alerts == tested, f"alerts without a promtool test: {alerts - tested}"


def test_rules_read_only_metrics_the_services_export() -> None:
    exported = service_metric_names()
    assert "subsecond_router_requests_total" in exported
    text = RULES.read_text()
    used = set(re.findall(r"\b(subsecond_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b[\[{]", text))
    assert used, "no metric found in the rules"
    assert used <= exported, f"rules read metrics no service exports: {used - exported}"


def test_dashboard_panels_query_known_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "subsecond-slo"
    recorded = {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    exported = service_metric_names()
    titles = [panel["title"] for panel in dashboard["panels"]]
    for needed in ("served_by", "first chunk", "hit ratio", "bypasses", "Replicas"):
        assert any(needed.lower() in title.lower() for title in titles), needed
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b([a-z_:]+[a-z0-9_]*)\{", target["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                assert base in exported or name in recorded or name.startswith("kube_"), (panel["title"], name)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_kind_cluster_config() -> None:
    config = yaml.safe_load((INFRA / "kind" / "cluster.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 2


def _buckets_of(metric: str) -> tuple[float, ...]:
    """The bucket bounds a service declares for a histogram (``buckets=`` one of subsecond.kit.metrics's)."""
    from subsecond.kit import metrics

    for path in (REPO / "services" / "subsecond").glob("*/*.py"):
        declared = re.search(rf'"{metric}",[^=]*?buckets=([A-Z_]+)', path.read_text())
        if declared:
            return tuple(getattr(metrics, declared[1]))
    raise AssertionError(f"no service declares {metric}")


def _matchers(expr: str, series: str) -> set[str]:
    """The label matchers of ``series`` in a PromQL expression (none: an empty set)."""
    found = re.search(rf"\b{series}(?:\{{((?:[^{{}}]|\$\{{\w+\}})*)\}})?\[", expr)  # Grafana's ${var} inside
    assert found, (series, expr)
    return {m.strip() for m in (found[1] or "").split(",") if m.strip()}


@pytest.mark.parametrize("component", ["router", "cache", "embedding", "generation"])
def test_latency_alerts_and_dashboard_read_each_latencyslos_objective(component: str) -> None:
    """The burn-rate alerts count calls against the objective the operator scales to: the chart's default
    LatencySLO (values.yaml), on the same histogram and matchers, its threshold a bucket bound, its budget
    1 - percentile; the dashboard's P95 per service reads the same series."""
    slo = yaml.safe_load((REPO / "charts" / "subsecond" / "values.yaml").read_text())[component]["latencySLO"]
    rules = {
        (rule["record"], rule["labels"]["component"]): rule["expr"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("labels", {}).get("component") == component
    }
    metric, selector = slo["metric"], {m.strip() for m in slo["selector"].split(",") if m.strip()}
    calls = rules["namespace_service_component:subsecond_latency_objective_calls:rate5m", component]
    fast = rules["namespace_service_component:subsecond_latency_objective_fast:rate5m", component]
    budget = rules["component:subsecond_latency_objective_budget:ratio", component]
    assert _matchers(calls, f"{metric}_count") == selector
    threshold = slo["thresholdMs"] / 1000
    assert _matchers(fast, f"{metric}_bucket") == selector | {f'le="{threshold:g}"'}
    assert threshold in _buckets_of(metric), f"{component}: thresholdMs is not a bucket bound of {metric}"
    assert float(re.fullmatch(r"vector\((.+)\)", budget.strip())[1]) == pytest.approx(1 - slo["percentile"])  # type: ignore[index]
    (panel,) = [p for p in json.loads(DASHBOARD.read_text())["panels"] if "LatencySLO" in p["title"]]
    exprs = [t["expr"] for t in panel["targets"] if f"{metric}_bucket" in t["expr"]]
    assert len(exprs) == 1 and _matchers(exprs[0], f"{metric}_bucket") >= selector, exprs
