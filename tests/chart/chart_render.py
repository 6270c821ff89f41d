"""Rendering the chart with the real helm CLI: every profile in charts/subsecond/ci/, plus the defaults."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "subsecond"
RELEASE = "demo"
NAMESPACE = "llm"
PROFILES = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*-values.yaml"))
# "default" is the chart's own values.yaml with no profile on top.
ALL_PROFILES = ["default", *PROFILES]

Manifest = dict[str, Any]


def helm_binary() -> str:
    local = REPO / ".cache" / "tools" / "bin" / "helm"
    found = str(local) if local.is_file() else shutil.which("helm")
    if found is None:
        pytest.fail("helm not found: run `make tools` (it unpacks helm into .cache/tools/bin)")
    return found


# The one value values.yaml cannot default: the engines volume's ReadWriteMany storage class, which
# depends on the cloud (bare defaults are refused, see test_chart_triton.py).
DEFAULT_ARGS = ["--set", "triton.engines.pvc.storageClassName=efs-sc"]


def profile_args(profile: str) -> list[str]:
    return DEFAULT_ARGS if profile == "default" else ["-f", str(CHART / "ci" / f"{profile}-values.yaml")]


def profile_values(profile: str) -> dict[str, Any]:
    """A profile's own values file (not merged with values.yaml)."""
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{profile}-values.yaml").read_text())
    return values


# Profiles that run Triton on GPUs, with their tensor-parallel size.
GPU_PROFILES = {p: profile_values(p)["triton"]["tensorParallelSize"] for p in PROFILES if p.startswith("gpu-")}


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False)


def template(*args: str) -> list[Manifest]:
    """`helm template` of the chart; fails the test with helm's message if it does not render."""
    result = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    if result.returncode != 0:
        pytest.fail(f"helm template {' '.join(args)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def template_error(*args: str) -> str:
    """helm's error for values that must be refused; fails the test if they render."""
    result = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    if result.returncode == 0:
        pytest.fail(f"helm template {' '.join(args)} rendered, but should have been refused")
    return result.stderr


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def name_of(component: str) -> str:
    return f"{RELEASE}-subsecond-{component}"


def containers(pod_spec: Manifest) -> Iterator[Manifest]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def env_of(container: Manifest) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}
