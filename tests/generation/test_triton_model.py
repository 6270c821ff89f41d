"""The embedded Triton deployment: the real ``tritonserver`` serving ``model_repository`` (smollm2, gemma3).

One server for the session, on free loopback ports; every test talks to it over gRPC streaming with
``tritonclient.grpc.aio``, as the generation service does.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_sync
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from subsecond.stack.triton import ensure_tritonserver, triton_process_spec

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2"
# Every model of the repository: the small and the large tier of the embedded default.
MODELS = ("smollm2", "gemma3")
PROMPT = "What is the capital of France?"
READY_TIMEOUT_S = 120.0

Response = tuple[triton.InferResult | None, InferenceServerException | None]

pytestmark = pytest.mark.stack


@pytest.fixture(scope="session")
def triton_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start tritonserver with the repository's models; yield its gRPC address; stop it and its stubs."""
    root = ensure_tritonserver(REPO / ".cache" / "tools")
    grpc_port, http_port, metrics_port = _free_ports(3)
    argv, env = triton_process_spec(root, REPO / "model_repository", grpc_port, http_port, metrics_port)
    log_path = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    with log_path.open("w") as log:
        # Its own process group, so that teardown reaches the Python backend stubs it forks too.
        server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"127.0.0.1:{grpc_port}"
    try:
        _wait_until_model_ready(url, server, log_path)
        yield url
    finally:
        _stop(server)


@pytest.fixture
async def client(triton_url: str) -> AsyncIterator[triton.InferenceServerClient]:
    """A gRPC client of the session's server."""
    async with triton.InferenceServerClient(triton_url) as grpc_client:
        yield grpc_client


async def test_streams_one_response_per_token_then_a_final_one_with_the_counts(
    client: triton.InferenceServerClient,
) -> None:
    responses = await _stream(client, _request(PROMPT, max_tokens=24))

    pieces, final = _pieces(responses[:-1]), _result(responses[-1])
    assert all(not _is_final(_result(response)) for response in responses[:-1])
    assert _is_final(final)
    assert "".join(pieces).strip()
    assert _count(final, "num_output_tokens") == len(pieces)
    assert _count(final, "num_input_tokens") > 0


async def test_every_model_declares_the_ensemble_interface_and_answers(
    client: triton.InferenceServerClient,
) -> None:
    for model in MODELS:
        config = (await client.get_model_config(model, as_json=True))["config"]
        assert config["model_transaction_policy"]["decoupled"] is True
        assert {tensor["name"] for tensor in config["input"]} >= {"text_input", "max_tokens", "stream"}
        assert {tensor["name"] for tensor in config["output"]} == {
            "text_output",
            "num_input_tokens",
            "num_output_tokens",
        }
        responses = await _stream(client, _request(PROMPT, max_tokens=12, model=model))
        assert "".join(_pieces(responses[:-1])).strip(), model
        assert _count(_result(responses[-1]), "num_output_tokens") == len(_pieces(responses[:-1]))


async def test_greedy_decoding_is_repeatable(client: triton.InferenceServerClient) -> None:
    first = await _stream(client, _request(PROMPT, max_tokens=16))
    second = await _stream(client, _request(PROMPT, max_tokens=16))

    assert _pieces(first[:-1]) == _pieces(second[:-1])


async def test_without_streaming_one_final_response_carries_the_whole_text(
    client: triton.InferenceServerClient,
) -> None:
    streamed = await _stream(client, _request(PROMPT, max_tokens=16))
    (whole,) = await _stream(client, _request(PROMPT, max_tokens=16, stream=False))

    assert _is_final(_result(whole))
    assert _text(_result(whole)) == "".join(_pieces(streamed[:-1]))
    assert _count(_result(whole), "num_output_tokens") == 16


async def test_sampling_with_a_seed_is_repeatable(client: triton.InferenceServerClient) -> None:
    request = _request(PROMPT, max_tokens=12, temperature=0.9, top_p=0.95, random_seed=7)

    first = await _stream(client, request)
    second = await _stream(client, request)

    assert _pieces(first[:-1]) == _pieces(second[:-1])


async def test_stops_at_max_tokens(client: triton.InferenceServerClient) -> None:
    responses = await _stream(client, _request(PROMPT, max_tokens=5))

    assert len(_pieces(responses[:-1])) == 5
    assert _count(_result(responses[-1]), "num_output_tokens") == 5


async def test_a_json_conversation_goes_through_the_model_chat_template(
    client: triton.InferenceServerClient,
) -> None:
    plain = await _stream(client, _request("Say hello.", max_tokens=8))
    as_user_message = await _stream(
        client, _request(json.dumps([{"role": "user", "content": "Say hello."}]), max_tokens=8)
    )
    with_system = await _stream(
        client,
        _request(
            json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]),
            max_tokens=8,
        ),
    )

    plain_prompt_tokens = _count(_result(plain[-1]), "num_input_tokens")
    # A lone user message renders exactly as plain text does (the template adds its default system prompt)...
    assert _pieces(as_user_message[:-1]) == _pieces(plain[:-1])
    assert _count(_result(as_user_message[-1]), "num_input_tokens") == plain_prompt_tokens
    # ...and a system message of our own replaces that longer default one.
    assert "".join(_pieces(with_system[:-1])).strip()
    assert _count(_result(with_system[-1]), "num_input_tokens") < plain_prompt_tokens


async def test_cancelling_a_stream_stops_its_generation(client: triton.InferenceServerClient) -> None:
    # The longest generation the context allows, so that finishing it would take far longer than the check.
    stream = client.stream_infer(_one(_request(PROMPT, max_tokens=2000)))
    _result(await anext(stream))
    started = time.monotonic()
    for _ in range(10):
        _result(await anext(stream))
    seconds_per_token = (time.monotonic() - started) / 10
    stream.cancel()

    # The model serves one request at a time: the next one is answered before the cancelled one could have
    # finished (about 1989 more tokens) only if its generation stopped.
    started = time.monotonic()
    responses = await _stream(client, _request(PROMPT, max_tokens=5))
    assert _count(_result(responses[-1]), "num_output_tokens") == 5
    assert time.monotonic() - started < 0.5 * 1989 * seconds_per_token


async def test_a_request_without_text_input_is_rejected(client: triton.InferenceServerClient) -> None:
    ((result, error),) = await _stream(client, _request(None, max_tokens=5))

    assert result is None
    assert error is not None
    assert "text_input and max_tokens are required" in error.message()


async def test_a_bad_input_value_gets_an_error_from_the_model(client: triton.InferenceServerClient) -> None:
    ((result, error),) = await _stream(client, _request(PROMPT, max_tokens=0))

    assert result is None
    assert error is not None
    assert "max_tokens must be at least 1" in error.message()


def _request(
    text: str | None,
    max_tokens: int,
    *,
    stream: bool = True,
    temperature: float | None = None,
    top_p: float | None = None,
    random_seed: int | None = None,
    model: str = MODEL,
) -> dict[str, object]:
    """A ``stream_infer`` request for the model, with TensorRT-LLM ensemble inputs (no text: no text_input)."""
    values: dict[str, tuple[np.ndarray, str]] = {
        "max_tokens": (np.array([max_tokens], dtype=np.int32), "INT32"),
        "stream": (np.array([stream], dtype=np.bool_), "BOOL"),
    }
    if text is not None:
        values["text_input"] = (np.array([text.encode()], dtype=np.object_), "BYTES")
    if temperature is not None:
        values["temperature"] = (np.array([temperature], dtype=np.float32), "FP32")
    if top_p is not None:
        values["top_p"] = (np.array([top_p], dtype=np.float32), "FP32")
    if random_seed is not None:
        values["random_seed"] = (np.array([random_seed], dtype=np.uint64), "UINT64")
    inputs = []
    for name, (array, datatype) in values.items():
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return {"model_name": model, "inputs": inputs}


async def _stream(client: triton.InferenceServerClient, request: dict[str, object]) -> list[Response]:
    """Send one request on a gRPC stream and collect every response until the stream ends."""
    return [response async for response in client.stream_infer(_one(request))]


async def _one(request: dict[str, object]) -> AsyncIterator[dict[str, object]]:
    """The request iterator of a stream that carries a single request."""
    yield request


def _result(response: Response) -> triton.InferResult:
    """The result of a response that must not be an error."""
    result, error = response
    if error is not None:
        raise error
    assert result is not None
    return result


def _pieces(responses: list[Response]) -> list[str]:
    """The text of each (non-final) streamed response."""
    return [_text(_result(response)) for response in responses]


def _text(result: triton.InferResult) -> str:
    output = result.as_numpy("text_output")
    assert output is not None
    return bytes(output[0]).decode()


def _count(result: triton.InferResult, name: str) -> int:
    output = result.as_numpy(name)
    assert output is not None
    return int(output[0])


def _is_final(result: triton.InferResult) -> bool:
    """Whether Triton marked the response as the request's last (TRITONSERVER_RESPONSE_COMPLETE_FINAL)."""
    return bool(result.get_response().parameters["triton_final_response"].bool_param)


def _free_ports(count: int) -> list[int]:
    """Ports that were free on loopback a moment ago (held together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_until_model_ready(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll the server until the model is ready; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with triton_sync.InferenceServerClient(url) as readiness:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"tritonserver exited with {server.returncode}:\n{log_path.read_text()}")
            try:
                if all(readiness.is_model_ready(model) for model in MODELS):
                    return
            except InferenceServerException:  # not listening yet
                pass
            time.sleep(0.2)
    pytest.fail(f"{', '.join(MODELS)} not ready after {READY_TIMEOUT_S:.0f}s:\n{log_path.read_text()}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server, then SIGKILL whatever is left of its process group.

    SIGTERM is graceful: the server unloads the model, so the stubs exit and release their shared memory.
    The group kill catches what a crashed server leaves behind, such as its stubs.
    """
    server.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()
