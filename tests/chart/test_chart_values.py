"""Values: bad ones are refused at install time with a message that names them; every value is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chart_render import CHART, DEFAULT_ARGS, template_error
from params_table import README, params, render_table, table_in_readme


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"router": {"replicas": -1}}, "at '/router/replicas': minimum: got -1, want 0"),
        ({"triton": {"tensorParallelSize": 4, "gpus": 2}}, "at '/triton/gpus': value must be 4"),
        ({"triton": {"tensorParallelSize": 3, "gpus": 3}}, "at '/triton/tensorParallelSize'"),
        ({"triton": {"gpus": 0}}, "at '/triton/engines/source': value must be 'bundled'"),
        (
            {"router": {"autoscaling": {"enabled": True}}},
            "at '/router': additional properties 'autoscaling' not allowed",
        ),
        ({"generation": {"hpa": {"enabled": True}}}, "at '/generation': additional properties 'hpa' not allowed"),
        ({"router": {"latencySLO": {"percentile": 95}}}, "at '/router/latencySLO/percentile'"),
        ({"cache": {"latencySLO": {"window": "one minute"}}}, "at '/cache/latencySLO/window'"),
        ({"redis": {"mode": "external"}}, "at '/redis/external/url': minLength: got 0, want 1"),
        ({"qdrant": {"mode": "cluster"}}, "at '/qdrant/mode'"),
        ({"triton": {"enabled": False}}, "at '/triton/externalUrl': minLength: got 0, want 1"),
        ({"router": {"settings": {"PORT": 1}}}, "invalid propertyName 'PORT'"),
        ({"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0}}, "at '/podSecurityContext/runAsNonRoot'"),
        ({"logLevel": "TRACE"}, "at '/logLevel'"),
        ({"triton": {"engines": {"build": {"enabled": True}}}}, "at '/triton/engines/build/checkpointsClaim'"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else None,
)
def test_schema_refuses_bad_values(tmp_path: Path, values: dict[str, object], message: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    error = template_error("-f", str(path))
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


def test_template_refuses_a_default_tier_that_is_no_model() -> None:
    error = template_error(*DEFAULT_ARGS, "--set", "router.defaultTier=large")
    assert 'router.defaultTier "large" is not a tier of generation.models (small)' in error


def test_every_documented_value_exists_and_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = [name for name, _ in params()]
    assert len(documented) == len(set(documented)), "a value is documented twice"

    def lookup(path: str) -> bool:
        node: object = values
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    missing = [name for name in documented if not lookup(name)]
    assert not missing, f"documented but not in values.yaml: {missing}"

    def leaves(node: object, prefix: str) -> list[str]:
        if prefix in documented:
            return []
        if isinstance(node, dict) and node:
            return [leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}.{key}" if prefix else key)]
        return [prefix]

    undocumented = leaves(values, "")
    assert not undocumented, f"values without a `## @param` line: {undocumented}"


def test_readme_parameter_table_is_generated_from_values() -> None:
    assert table_in_readme() == render_table(), (
        f"{README} is out of date: run `.venv/bin/python tests/chart/params_table.py --write`"
    )
