"""The chart's `helm test` load test (templates/tests/loadtest.yaml), rendered with the real helm: a
test hook Pod aimed at the router's Service, its API key from a Secret, only the router's CA with
TLS, unprivileged with a read-only root, a NetworkPolicy that lets it reach the router, and the
ConfigMap holding loadtest/'s files unchanged, in the packaged chart too. The rendered Pod is then
run for real: its command, environment and mounted files handed to the project's k6 (the version the
image is pinned to), first with `k6 inspect` (the options and thresholds it would run with), then,
marked `stack`, against the real local stack over TLS, with the key and CA its Secrets would hold:
it passes with the SLOs held, and fails with a wrong key or a broken SLO."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import ModuleType

import kubernetes_validate
import pytest
import yaml
from chart_render import (
    CHART,
    DEFAULT_ARGS,
    NAMESPACE,
    RELEASE,
    Manifest,
    env_of,
    find,
    name_of,
    one,
    run_helm,
    template,
    template_error,
)
from script_modules import load_script

from subsecond.router.auth import hash_key
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

NAME = name_of("loadtest")
K6 = Path(sys.executable).parent / "k6"
ENABLED = [*DEFAULT_ARGS, "--set", "loadtest.enabled=true", "--set", "loadtest.apiKey.existingSecret=loadtest-key"]
TLS = ["--set", "tls.enabled=true", "--set", "tls.certManager.issuerRef.name=internal-ca"]
# k6's exit code when a threshold was crossed.
THRESHOLDS_CROSSED = 99


def chart_files() -> ModuleType:
    """loadtest/chart_files.py (loadtest/ is a script folder, not a package)."""
    return load_script("loadtest/chart_files.py")


def test_off_by_default(rendered: dict[str, list[Manifest]]) -> None:
    """It sends real traffic, stores answers and spends tokens: opted into, never there by surprise."""
    for manifests in rendered.values():
        assert not [m for m in manifests if m["metadata"]["name"] == NAME]


def test_it_needs_a_key_unless_the_router_takes_anonymous_calls() -> None:
    error = template_error(*DEFAULT_ARGS, "--set", "loadtest.enabled=true")
    assert "loadtest.enabled needs loadtest.apiKey.existingSecret" in error
    anonymous = template(*DEFAULT_ARGS, "--set", "loadtest.enabled=true", "--set", "router.allowAnonymous=true")
    assert "API_KEY" not in env_of(one(anonymous, "Pod", NAME)["spec"]["containers"][0])


@pytest.mark.parametrize("extra", [[], TLS], ids=["plaintext", "tls"])
def test_helm_lint_and_kubernetes_schemas(extra: list[str]) -> None:
    lint = run_helm("lint", "--strict", str(CHART), *ENABLED, *extra)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for manifest in template(*ENABLED, *extra):
        if manifest["metadata"]["name"] == NAME:
            kubernetes_validate.validate(manifest, "1.28.0", strict=True)


def test_a_test_hook_pod_against_the_routers_service() -> None:
    manifests = template(*ENABLED, "--set", "router.service.port=8443")
    pod = one(manifests, "Pod", NAME)
    assert pod["metadata"]["annotations"] == {
        "helm.sh/hook": "test",
        "helm.sh/hook-delete-policy": "before-hook-creation",
    }
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    (k6,) = spec["containers"]
    assert k6["image"] == "docker.io/grafana/k6:1.1.0"
    assert k6["command"][:2] == ["k6", "run"] and "--no-usage-report" in k6["command"]
    service = one(manifests, "Service", name_of("router"))
    (grpc_port,) = [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    env = env_of(k6)
    assert env["TARGET"] == f"{service['metadata']['name']}:{grpc_port}" == f"{name_of('router')}:8443"
    assert env["SCENARIO"] == "steady"
    # The only hook: `helm test --logs` reads a Pod per test hook, and the ConfigMap is not one.
    assert [m["metadata"]["name"] for m in manifests if "helm.sh/hook" in m["metadata"].get("annotations", {})
            if m["metadata"]["annotations"]["helm.sh/hook"] == "test"] == [NAME]  # fmt: skip


def test_the_api_key_comes_from_the_secret() -> None:
    pod = one(template(*ENABLED, "--set", "loadtest.apiKey.secretKey=token"), "Pod", NAME)
    assert env_of(pod["spec"]["containers"][0])["API_KEY"] == {
        "secretKeyRef": {"name": "loadtest-key", "key": "token"}
    }


def test_it_runs_unprivileged_with_a_read_only_root() -> None:
    spec = one(template(*ENABLED), "Pod", NAME)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (k6,) = spec["containers"]
    assert k6["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert all(mount["readOnly"] for mount in k6["volumeMounts"])
    assert {"requests", "limits"} <= set(k6["resources"])


def test_with_tls_it_trusts_the_routers_ca_and_holds_no_key() -> None:
    manifests = template(*ENABLED, *TLS)
    spec = one(manifests, "Pod", NAME)["spec"]
    env = env_of(spec["containers"][0])
    assert env["TLS"] == "true"
    (ca,) = [v for v in spec["volumes"] if "secret" in v]
    certificate = one(manifests, "Certificate", name_of("router"))
    only_the_ca = [{"key": "ca.crt", "path": "ca.crt"}]
    assert ca["secret"] == {"secretName": certificate["spec"]["secretName"], "items": only_the_ca}
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == ca["name"]]
    assert env["TLS_CA"] == f"{mount['mountPath']}/ca.crt"
    # The authority the script checks is the target's host, a name on the router's certificate.
    assert env["TARGET"].split(":")[0] in certificate["spec"]["dnsNames"]
    plaintext = env_of(one(template(*ENABLED), "Pod", NAME)["spec"]["containers"][0])
    assert "TLS" not in plaintext and "TLS_CA" not in plaintext


def _policy(manifests: list[Manifest], component: str) -> Manifest:
    return one(manifests, "NetworkPolicy", name_of(component))["spec"]


@pytest.mark.parametrize("router_from", [False, True], ids=["router-open", "router-restricted"])
def test_network_policies_let_it_reach_the_router_and_nothing_else(router_from: bool) -> None:
    restricted = ["--set-json", 'networkPolicy.routerFrom=[{"namespaceSelector":{"matchLabels":{"team":"x"}}}]']
    manifests = template(*ENABLED, *(restricted if router_from else []))
    pod_labels = one(manifests, "Pod", NAME)["metadata"]["labels"]
    policy = _policy(manifests, "loadtest")
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"] and not policy["ingress"]
    dns, router = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    router_labels = one(manifests, "Service", name_of("router"))["spec"]["selector"]
    assert router["ports"] == [{"protocol": "TCP", "port": 50051}]
    assert router["to"] == [{"podSelector": {"matchLabels": router_labels}}]
    (grpc_rule,) = [r for r in _policy(manifests, "router")["ingress"] if r["ports"][0]["port"] == 50051]
    if router_from:
        assert {"podSelector": {"matchLabels": policy["podSelector"]["matchLabels"]}} in grpc_rule["from"]
        assert {"namespaceSelector": {"matchLabels": {"team": "x"}}} in grpc_rule["from"]
    else:
        assert "from" not in grpc_rule  # every client, the test Pod among them


def test_the_configmap_carries_loadtest_files_unchanged() -> None:
    """No drift: the chart's copies (files/loadtest/) equal loadtest/'s script and data and the protos."""
    files = chart_files()
    assert not files.stale(), "run `.venv/bin/python loadtest/chart_files.py --write`"
    data = one(template(*ENABLED), "ConfigMap", NAME)["data"]
    assert data == {name: source.read_text() for name, source in files.sources().items()}


def test_the_packaged_chart_carries_them(tmp_path: Path) -> None:
    """What a platform team installs is `helm package`'s archive: the copies travel in it."""
    package = run_helm("package", str(CHART), "--destination", str(tmp_path))
    assert package.returncode == 0, package.stderr
    (archive,) = tmp_path.glob("subsecond-*.tgz")
    rendered = run_helm("template", RELEASE, str(archive), "--namespace", NAMESPACE, *ENABLED)
    assert rendered.returncode == 0, rendered.stderr
    (configmap,) = [m for m in yaml.safe_load_all(rendered.stdout) if m and m["metadata"]["name"] == NAME
                    and m["kind"] == "ConfigMap"]  # fmt: skip
    assert configmap["data"] == one(template(*ENABLED), "ConfigMap", NAME)["data"]


def materialize(
    manifests: list[Manifest], root: Path, target: str | None = None, secrets: Mapping[str, Mapping[str, str]] = {}
) -> tuple[list[str], dict[str, str]]:
    """The rendered Pod as a local process: its ConfigMap and Secret volumes written under `root` as
    the kubelet would mount them (Secrets from `secrets`, {name: {key: value}}), its command and
    environment with those paths moved under `root`, variables from Secrets filled in, and TARGET
    replaced when given."""
    pod = one(manifests, "Pod", NAME)
    configmaps = {m["metadata"]["name"]: m["data"] for m in find(manifests, "ConfigMap")}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (container,) = pod["spec"]["containers"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            items, data = volume["configMap"]["items"], configmaps[volume["configMap"]["name"]]
        else:
            items, data = volume["secret"]["items"], secrets[volume["secret"]["secretName"]]
        for item in items:
            path = root / mount["mountPath"].lstrip("/") / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[item["key"]])

    def local(value: str) -> str:
        return str(root) + value if any(value.startswith(m + "/") for m in mounts) else value

    def value(item: Manifest) -> str:
        if "value" in item:
            return local(item["value"])
        ref = item["valueFrom"]["secretKeyRef"]
        return secrets[ref["name"]][ref["key"]]

    argv = [str(K6) if container["command"][0] == "k6" else container["command"][0]]
    argv += [local(arg) for arg in container["command"][1:]]
    env = {item["name"]: value(item) for item in container["env"]}
    if target:
        env["TARGET"] = target
    return argv, env


def test_k6_reads_the_rendered_pod(tmp_path: Path) -> None:
    """The mounted layout is the one the script reads (data, protos: k6's init stage loads them), and
    the values reach k6's scenario and thresholds."""
    values = ["loadtest.rate=7", "loadtest.duration=12", "loadtest.slos.exactP95Ms=42", "loadtest.slos.errorRate=0.05"]
    manifests = template(*ENABLED, *(arg for value in values for arg in ("--set-json", value)))
    argv, env = materialize(manifests, tmp_path, secrets={"loadtest-key": {"api-key": "inspect sends nothing"}})
    assert argv[1] == "run"
    # `k6 run` passes the environment to the script; `k6 inspect` only when asked.
    inspect = subprocess.run([argv[0], "inspect", "--include-system-env-vars", argv[-1]], env=env,
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    options = json.loads(inspect.stdout)
    assert options["scenarios"] == {
        "steady": {**options["scenarios"]["steady"], "executor": "constant-arrival-rate", "rate": 7, "duration": "12s"}
    }
    assert options["setupTimeout"] == "5m0s"
    assert options["thresholds"]["answer_latency{served_by:exact}"] == ["p(95)<42"]
    assert options["thresholds"]["request_errors"] == ["rate<0.05"]
    assert options["thresholds"]["wrong_answers"] == ["count==0"]


# A key of the stack's router (tenant `loadtest`), as the Secret named in ENABLED holds it.
KEY = "loadtest-key-for-the-local-stack"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    keys = {"SUBSECOND_ROUTER_API_KEYS": f"{hash_key(KEY)}=loadtest:generate"}
    config = StackConfig(ports=Ports.free(), run_dir=tmp_path_factory.mktemp("chart-loadtest-stack"), environment=keys)
    running = Stack(config)
    await running.start()
    yield running
    await running.stop()


@pytest.mark.stack
@pytest.mark.parametrize(
    ("extra", "key", "crossed"),
    [
        pytest.param([], KEY, set(), id="every-slo-held"),
        pytest.param([], "not-a-key", {"request_errors"}, id="a-wrong-key-is-refused", marks=pytest.mark.long),
        pytest.param(["--set-json", "loadtest.slos.exactP95Ms=0.001"], KEY, {"answer_latency{served_by:exact}"},
                     id="an-exact-hit-p95-under-a-microsecond", marks=pytest.mark.long),
    ],
)  # fmt: skip
async def test_the_rendered_pod_against_the_stack(
    stack: Stack, tmp_path: Path, extra: list[str], key: str, crossed: set[str]
) -> None:
    """The rendered Pod's k6 run against the local stack, with `tls.enabled` (the stack's router serves
    TLS) and the key and CA its Secrets would hold: it passes with the SLOs held, and fails (k6's
    threshold exit code) when one breaks. Generated answers get loose SLOs here (this machine's CPU
    model is slow), and the mix is what the cache and the static routes answer (a generation there takes
    20 s or more under load; tests/loadtest runs the whole mix). The test adds k6's summary export."""
    loose = ['loadtest.mix="repeats=1,static=1"', "loadtest.duration=3", "loadtest.slos.generatedP95Ms=60000",
             "loadtest.slos.firstChunkP95Ms=60000"]  # fmt: skip
    manifests = template(*ENABLED, *TLS, *extra, *(arg for value in loose for arg in ("--set-json", value)))
    assert stack.ca_file is not None
    secrets = {"loadtest-key": {"api-key": key}, f"{name_of('router')}-tls": {"ca.crt": stack.ca_file.read_text()}}
    argv, env = materialize(manifests, tmp_path, target=stack.address("router"), secrets=secrets)
    summary = tmp_path / "summary.json"
    argv[2:2] = ["--summary-export", str(summary)]
    k6 = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                              stderr=asyncio.subprocess.STDOUT)  # fmt: skip
    output = (await k6.communicate())[0].decode()[-4000:]
    assert k6.returncode == (THRESHOLDS_CROSSED if crossed else 0), output
    metrics = json.loads(summary.read_text())["metrics"]
    assert {name for name, m in metrics.items() if any(m.get("thresholds", {}).values())} == crossed, output
    if key == KEY:  # requests went through and were timed
        assert metrics["answer_latency"]["count"] > 0, output
    else:
        assert metrics["request_errors"]["value"] == 1, output
