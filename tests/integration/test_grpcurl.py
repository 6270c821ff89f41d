"""The README's grpcurl calls, with the real grpcurl (unpacked by `make tools`), through server
reflection, over TLS to the stack's router (grpcurl verifies it against the stack's CA)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from subsecond_tools.stack.runner import Stack

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]


def grpcurl(stack: Stack, *args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    local = REPO / ".cache" / "tools" / "bin" / "grpcurl"
    binary = str(local) if local.is_file() else shutil.which("grpcurl")
    if binary is None:
        pytest.fail("grpcurl not found: run `make tools` (it unpacks grpcurl into .cache/tools/bin)")
    security = ["-cacert", str(stack.ca_file)] if stack.ca_file else ["-plaintext"]
    command = [binary, *security, *(["-d", "@"] if data is not None else []), stack.address("router"), *args]
    return subprocess.run(command, input=data, capture_output=True, text=True, timeout=120, check=False)


def messages(output: str) -> list[dict[str, object]]:
    """grpcurl prints one JSON object per streamed message."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while position < len(output.rstrip()):
        message, position = decoder.raw_decode(output, output.index("{", position))
        found.append(message)
    return found


def test_reflection_lists_the_router(stack: Stack) -> None:
    listed = grpcurl(stack, "list")
    assert listed.returncode == 0, listed.stderr
    assert "subsecond.v1.Router" in listed.stdout.split()


def test_the_router_serves_tls_only(stack: Stack) -> None:
    assert stack.ca_file is not None, "the tests' stack is the secure one"
    binary = grpcurl(stack, "list").args[0]
    plaintext = subprocess.run(
        [binary, "-plaintext", stack.address("router"), "list"], capture_output=True, text=True, timeout=60, check=False
    )
    assert plaintext.returncode != 0


def test_static_routes_are_listed_and_answer(stack: Stack) -> None:
    routes = grpcurl(stack, "subsecond.v1.Router/ListStaticRoutes")
    assert routes.returncode == 0, routes.stderr
    assert "welcome-note" in {route["name"] for route in json.loads(routes.stdout)["routes"]}
    answer = grpcurl(
        stack, "subsecond.v1.Router/Generate", data='{"prompt": "Write to ana@example.com", "task": "extract_emails"}'
    )
    assert answer.returncode == 0, answer.stderr
    *_, last = messages(answer.stdout)
    assert last["done"]["served_by"] == "SERVED_BY_STATIC"  # type: ignore[index]


def test_the_onboarding_workflow_from_json_and_a_refused_one(stack: Stack) -> None:
    example = yaml.safe_load((REPO / "examples" / "onboarding-workflow.yaml").read_text())
    ran = grpcurl(stack, "subsecond.v1.Router/RunWorkflow", data=json.dumps(example))
    assert ran.returncode == 0, ran.stderr
    summary = messages(ran.stdout)[-1]["summary"]
    assert summary["critical_path"][-1] == "welcome"  # type: ignore[index]
    cycle = (
        '{"steps": [{"id": "a", "request": {"prompt": "{{steps.b}}"}}, '
        '{"id": "b", "request": {"prompt": "{{steps.a}}"}}]}'
    )
    refused = grpcurl(stack, "subsecond.v1.Router/RunWorkflow", data=cycle)
    assert refused.returncode != 0
    assert "InvalidArgument" in refused.stderr
    assert "step a: dependency cycle among steps a, b" in refused.stderr
