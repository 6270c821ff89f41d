"""The CRD's schema accepts good LatencySLOs and rejects bad ones; the parser agrees with it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from slo_specs import base_spec

from subsecond_operator.decision import Snapshot, decide
from subsecond_operator.spec import Latency, SLOSpec, SpecError
from subsecond_operator.status import decided


def _validator(crd: dict[str, Any]) -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas use draft 4's boolean exclusiveMinimum/exclusiveMaximum.
    return jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _slo(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "subsecond.dev/v1alpha1", "kind": "LatencySLO", "metadata": {"name": "x"}, "spec": spec}


def _edit(path: str, value: Any) -> dict[str, Any]:
    spec = base_spec()
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return spec


_DROP = object()

FULL = base_spec(
    objective={
        "percentile": 0.99,
        "thresholdMs": 250,
        "latency": "TimeToFirstChunk",
        "metric": "subsecond_router_time_to_first_chunk_seconds",
        "selector": 'namespace="default",served_by="generated"',
        "window": "2m",
        "headroom": 0.1,
    },
    minReplicas=2,
    maxReplicas=20,
    behavior={
        "scaleUp": {"maxStepReplicas": 2, "stabilizationWindowSeconds": 30, "cooldownSeconds": 15},
        "scaleDown": {"maxStepReplicas": 1, "stabilizationWindowSeconds": 600, "cooldownSeconds": 300},
    },
    capacity={"requestsPerSecondPerReplica": 40, "concurrencyPerReplica": 8},
)
GOOD = {
    "minimal": base_spec(),
    "full": FULL,
    "statefulset": _edit("scaleTargetRef.kind", "StatefulSet"),
    "query override": _edit(
        "objective",
        {"thresholdMs": 300, "query": "histogram_quantile(0.95, x)", "rateQuery": "sum(rate(x_count[1m]))"},
    ),
    "scale to zero asked": base_spec(minReplicas=0),
    "query empty but metric set": _edit("objective.query", ""),
}
BAD = {
    "no threshold": _edit("objective.thresholdMs", _DROP),
    "zero threshold": _edit("objective.thresholdMs", 0),
    "percentile 1": _edit("objective.percentile", 1),
    "percentile 0": _edit("objective.percentile", 0),
    "unknown latency": _edit("objective.latency", "Total"),
    "neither metric nor query": _edit("objective.metric", _DROP),
    "query without rateQuery": _edit("objective", {"thresholdMs": 300, "query": "histogram_quantile(0.95, x)"}),
    "bad metric name": _edit("objective.metric", "router-latency"),
    "bad window": _edit("objective.window", "60"),
    "pod target": _edit("scaleTargetRef.kind", "Pod"),
    "no target name": _edit("scaleTargetRef.name", _DROP),
    "negative minReplicas": base_spec(minReplicas=-1),
    "zero maxReplicas": base_spec(maxReplicas=0),
    "no maxReplicas": _edit("maxReplicas", _DROP),
    "zero step": _edit("behavior", {"scaleUp": {"maxStepReplicas": 0}}),
    "negative cooldown": _edit("behavior", {"scaleDown": {"cooldownSeconds": -1}}),
    "zero capacity": _edit("capacity", {"requestsPerSecondPerReplica": 0}),
    "zero utilisation ceiling": _edit("capacity", {"maxUtilization": 0}),
    "utilisation ceiling over 1": _edit("capacity", {"maxUtilization": 1.2}),
    "headroom too big": _edit("objective.headroom", 0.95),
}


@pytest.mark.parametrize("spec", GOOD.values(), ids=GOOD.keys())
def test_schema_and_parser_accept(crd: dict[str, Any], spec: dict[str, Any]) -> None:
    _validator(crd).validate(_slo(spec))
    assert SLOSpec.parse(spec).target.name


@pytest.mark.parametrize("spec", BAD.values(), ids=BAD.keys())
def test_schema_and_parser_reject(crd: dict[str, Any], spec: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validator(crd).validate(_slo(spec))
    with pytest.raises(SpecError):
        SLOSpec.parse(spec)


def test_max_below_min_is_a_cel_rule_and_a_parser_error(crd: dict[str, Any]) -> None:
    spec = base_spec(minReplicas=5, maxReplicas=3)
    # jsonschema does not run CEL; the API server does, and the operator checks again.
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    assert rules == [
        {"rule": "self.maxReplicas >= self.minReplicas", "message": "maxReplicas must be at least minReplicas"}
    ]
    with pytest.raises(SpecError, match="minReplicas"):
        SLOSpec.parse(spec)


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """Every default in the schema, as a dotted path -> value."""
    found: dict[str, Any] = {}
    for key, child in schema.get("properties", {}).items():
        if "default" in child and child["default"] != {}:
            found[key] = child["default"]
        found.update({f"{key}.{path}": value for path, value in _defaults(child).items()})
    return found


def test_parser_defaults_are_the_schemas(crd: dict[str, Any]) -> None:
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    parsed = SLOSpec.parse({key: value for key, value in base_spec().items() if key != "minReplicas"})
    assert _defaults(spec_schema) == {
        "scaleTargetRef.apiVersion": parsed.target.api_version,
        "objective.percentile": parsed.objective.percentile,
        "objective.latency": parsed.objective.latency,
        "objective.window": parsed.objective.window,
        "objective.headroom": parsed.objective.headroom,
        "minReplicas": parsed.min_replicas,
        "behavior.scaleUp.maxStepReplicas": parsed.scale_up.max_step,
        "behavior.scaleUp.stabilizationWindowSeconds": parsed.scale_up.stabilization_seconds,
        "behavior.scaleUp.cooldownSeconds": parsed.scale_up.cooldown_seconds,
        "behavior.scaleDown.maxStepReplicas": parsed.scale_down.max_step,
        "behavior.scaleDown.stabilizationWindowSeconds": parsed.scale_down.stabilization_seconds,
        "behavior.scaleDown.cooldownSeconds": parsed.scale_down.cooldown_seconds,
        "capacity.concurrencyPerReplica": parsed.capacity.concurrency_per_replica,
        "capacity.maxUtilization": parsed.capacity.max_utilization,
    }


def test_parsed_full_spec() -> None:
    parsed = SLOSpec.parse(copy.deepcopy(FULL))
    assert parsed.objective.latency is Latency.TIME_TO_FIRST_CHUNK
    assert parsed.objective.threshold_seconds == pytest.approx(0.25)
    assert parsed.objective.target_seconds == pytest.approx(0.225)
    assert (parsed.scale_down.max_step, parsed.scale_down.stabilization_seconds) == (1, 600)
    assert parsed.capacity.requests_per_second_per_replica == 40.0
    assert parsed.capacity.concurrency_per_replica == 8


def test_names_and_printer_columns(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "latencyslos.subsecond.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (
        "LatencySLO",
        "latencyslos",
        "latencyslo",
        ["slo"],
    )
    version = crd["spec"]["versions"][0]
    assert (crd["spec"]["scope"], version["name"], version["subresources"]) == (
        "Namespaced",
        "v1alpha1",
        {"status": {}},
    )
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"].split(".")
        if path[1] == "status":
            assert path[2].split("[")[0] in status, column
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Objective-ms", "Observed-ms", "Replicas", "Desired", "Ready", "Reason", "Age",
    ]  # fmt: skip


def test_status_keeps_what_the_decision_marks(crd: dict[str, Any]) -> None:
    """A backlog's recommendation is marked in status (the next tick's scale-down window reads the mark), so the
    status schema must declare the field: the API server prunes what a structural schema does not name."""
    status_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    spec = SLOSpec.parse(base_spec())
    snapshot = Snapshot(1_000_000.0, 2, 2, 5.0, 20.0, mean_seconds=2.0, recent_mean_seconds=2.5)
    decision = decide(spec, snapshot)
    status = decided({}, snapshot, decision, generation=1, prometheus_error=None, spec_concurrency=1)
    assert status["recommendations"][-1]["backlog"] is True
    declared = set(status_schema["properties"]["recommendations"]["items"]["properties"])
    assert all(set(item) <= declared for item in status["recommendations"])
    jsonschema.Draft4Validator(status_schema).validate(_merged(status))


def _merged(patch: Any) -> Any:
    """What a JSON merge patch (kopf's) leaves of ``patch`` on an empty object: a null removes its field."""
    if isinstance(patch, dict):
        return {key: _merged(value) for key, value in patch.items() if value is not None}
    return patch


def test_chart_scales_cpu_services_down_as_the_crds_defaults() -> None:
    """The router's, cache's and embedding's LatencySLOs scale down as the CRD's defaults, which the simulator
    measures (operator/README.md); generation keeps its own, slower behaviour (a GPU pod starts in 25-60 min)."""
    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "charts/subsecond/values.yaml").read_text())
    defaults = SLOSpec.parse(base_spec()).scale_down
    for service in ("router", "cache", "embedding"):
        behavior = values[service]["latencySLO"]["behavior"]
        assert SLOSpec.parse(base_spec(behavior=behavior)).scale_down == defaults, service
    generation = SLOSpec.parse(base_spec(behavior=values["generation"]["latencySLO"]["behavior"])).scale_down
    assert generation.stabilization_seconds > defaults.stabilization_seconds
