"""The in-chart Redis (`redis.mode: internal`): an append-only file on a PVC by default, and the
container's arguments are ones a real redis-server accepts and applies."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml
from chart_render import DEFAULT_ARGS, Manifest, name_of, one, pod_spec, template, template_error
from redis_server import START_TIMEOUT_SECONDS, free_port

from subsecond_tools.stack.redis import find_redis_server


def redis_statefulset(*args: str) -> Manifest:
    return one(template(*DEFAULT_ARGS, *args), "StatefulSet", name_of("redis"))


def redis_container(statefulset: Manifest) -> Manifest:
    (container,) = pod_spec(statefulset)["containers"]
    assert container["name"] == "redis"
    return container


def test_by_default_answers_are_kept_in_an_append_only_file_on_a_pvc(rendered: dict[str, list[Manifest]]) -> None:
    statefulset = one(rendered["default"], "StatefulSet", name_of("redis"))
    container = redis_container(statefulset)

    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert "volumes" not in pod_spec(statefulset)  # the data volume is the claim, not an emptyDir
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "4Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class


def test_the_claim_takes_its_size_and_storage_class_from_values() -> None:
    statefulset = redis_statefulset(
        "--set", "redis.internal.persistence.size=20Gi",
        "--set", "redis.internal.persistence.storageClassName=premium-rwo",
        "--set", "redis.internal.persistence.appendfsync=always",
    )  # fmt: skip

    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "premium-rwo"
    args = redis_container(statefulset)["args"]
    assert args[args.index("--appendfsync") + 1] == "always"


def test_without_persistence_nothing_is_written_and_the_data_volume_is_an_emptydir() -> None:
    statefulset = redis_statefulset("--set", "redis.internal.persistence.enabled=false")

    args = redis_container(statefulset)["args"]
    assert args[args.index("--appendonly") + 1] == "no"
    assert "--appendfsync" not in args
    assert "volumeClaimTemplates" not in statefulset["spec"]
    assert pod_spec(statefulset)["volumes"] == [{"name": "data", "emptyDir": {}}]


def test_an_unknown_fsync_policy_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"redis": {"internal": {"persistence": {"appendfsync": "sometimes"}}}}))

    assert "at '/redis/internal/persistence/appendfsync'" in template_error(*DEFAULT_ARGS, "-f", str(values))


@pytest.mark.parametrize("persistence", ["true", "false"])
def test_a_real_redis_server_runs_with_the_rendered_arguments(tmp_path: Path, persistence: str) -> None:
    """Catches arguments Redis would refuse at start (a quoting slip in `--save ""` would crash-loop the pod)."""
    args = redis_container(redis_statefulset("--set", f"redis.internal.persistence.enabled={persistence}"))["args"]
    assert args[0] == "redis-server"
    port = free_port()
    # The image's working directory is /data, the mounted volume; here it is tmp_path.
    # The kubelet expands $(REDIS_PASSWORD) from the chart's Secret; here a password of our own.
    args = [arg.replace("$(REDIS_PASSWORD)", "test-password") for arg in args]
    argv = [str(find_redis_server()), *args[1:], "--port", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port, password="test-password", decode_responses=True)
        config = _config_once_up(client, server)
        client.set("answer", "Canberra.")
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout:
            server.stdout.close()

    expected_aof = "yes" if persistence == "true" else "no"
    assert (config["appendonly"], config["save"]) == (expected_aof, "")
    assert config["maxmemory-policy"] == "allkeys-lru"
    assert any(tmp_path.rglob("*.aof")) == (persistence == "true")


def _config_once_up(client: redis.Redis, server: subprocess.Popen[bytes]) -> dict[str, str]:
    """CONFIG GET of the settings under test, once the server answers."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if server.poll() is not None:
            output = server.stdout.read().decode() if server.stdout else ""
            pytest.fail(f"redis-server refused the chart's arguments (exit {server.returncode}): {output}")
        try:
            found = client.config_get("appendonly") | client.config_get("save") | client.config_get("maxmemory-policy")
            return {str(key): str(value) for key, value in found.items()}
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                pytest.fail("redis-server with the chart's arguments never answered")
            time.sleep(0.01)
