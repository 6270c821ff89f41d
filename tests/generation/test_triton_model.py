"""The embedded Triton deployment: the real ``tritonserver`` serving ``model_repository`` (smollm2, gemma3).

One server for the session, on free loopback ports; every test talks to it over Triton's gRPC
streaming API with the requests the generation service builds (``EntryModel.request``: the chat
template applied, ``[1, 1]`` tensors, the empty final response enabled), so that the embedded models
are held to TensorRT-LLM's ensemble contract.
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_sync
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from subsecond.generation.chat_template import ChatTemplate
from subsecond.generation.entry_model import EntryModel, is_final, text_output
from subsecond.kit.prompt_identity import Sampling
from subsecond_tools.stack.tokenizers import write_tokenizer_root
from subsecond_tools.stack.triton import ensure_tritonserver, new_shm_prefix, remove_shm_regions, triton_process_spec

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2"
# Every model of the repository: the small and the large tier of the embedded default.
MODELS = ("smollm2", "gemma3")
PROMPT = "What is the capital of France?"
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 60
READY_TIMEOUT_S = 120.0

Stub = service_pb2_grpc.GRPCInferenceServiceStub
Entries = dict[str, EntryModel]
Templates = dict[str, ChatTemplate]

pytestmark = pytest.mark.stack


@pytest.fixture(scope="session")
def triton_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start tritonserver with the repository's models; yield its gRPC address; stop it and its stubs."""
    root = ensure_tritonserver(REPO / ".cache" / "tools")
    grpc_port, http_port, metrics_port = _free_ports(3)
    shm_prefix = new_shm_prefix()
    argv, env = triton_process_spec(
        root, REPO / "model_repository", grpc_port, http_port, metrics_port, shm_prefix=shm_prefix
    )
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
        remove_shm_regions(shm_prefix)  # what the stubs leave if the group kill was needed


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ChatTemplate]:
    """Each model's chat template, from the tokenizer files the stack writes for the generation service."""
    root = write_tokenizer_root(tmp_path_factory.mktemp("tokenizers"))
    return {model: ChatTemplate.load(root / model) for model in MODELS}


@pytest.fixture
async def triton(triton_url: str) -> AsyncIterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    """Triton's gRPC API, as the generation service calls it."""
    async with grpc.aio.insecure_channel(triton_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
async def entries(triton: service_pb2_grpc.GRPCInferenceServiceStub) -> dict[str, EntryModel]:
    """Each model's contract, read from Triton as the generation service reads it at warm-up."""
    return {
        model: EntryModel.from_config((await triton.ModelConfig(service_pb2.ModelConfigRequest(name=model))).config)
        for model in MODELS
    }


async def test_every_model_declares_exactly_the_ensemble_contract(
    triton: Stub, entries: Entries
) -> None:
    for model in MODELS:
        config = (await triton.ModelConfig(service_pb2.ModelConfigRequest(name=model))).config
        assert config.max_batch_size == 64
        assert config.model_transaction_policy.decoupled
        assert [(tensor.name, list(tensor.dims)) for tensor in config.output] == [("text_output", [1])]
        assert [tensor.name for tensor in config.input if not tensor.optional] == ["text_input", "max_tokens"]
        # Batched ([1, 1] tensors), token deltas (no accumulate_tokens parameter).
        assert entries[model] == EntryModel(name=model, batched=True, cumulative=False)


async def test_streams_one_response_per_token_then_an_empty_final_one(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    for model in MODELS:
        responses = await _stream(triton, _request(entries[model], templates[model], max_tokens=12))

        *tokens, final = responses
        assert all(not is_final(response.infer_response) for response in tokens), model
        assert is_final(final.infer_response) and text_output(final.infer_response) is None, model
        assert "".join(_pieces(tokens)).strip(), model
        assert [list(tensor.shape) for response in tokens for tensor in response.infer_response.outputs] == [
            [1, 1]
        ] * len(tokens)


async def test_greedy_decoding_is_repeatable(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    request = _request(entries[MODEL], templates[MODEL], max_tokens=16)

    assert _pieces(await _stream(triton, request)) == _pieces(await _stream(triton, request))


async def test_without_streaming_one_final_response_carries_the_whole_text(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    streamed = await _stream(triton, _request(entries[MODEL], templates[MODEL], max_tokens=16))
    request = _request(entries[MODEL], templates[MODEL], max_tokens=16)
    _set_input(request, "stream", np.array([[False]], dtype=np.bool_))

    (whole,) = await _stream(triton, request)

    assert is_final(whole.infer_response)
    assert text_output(whole.infer_response) == "".join(_pieces(streamed)).encode()


async def test_sampling_with_a_seed_is_repeatable(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    sampling = Sampling(temperature=0.9, top_p=0.95, seed=7)
    request = _request(entries[MODEL], templates[MODEL], max_tokens=12, sampling=sampling)

    assert _pieces(await _stream(triton, request)) == _pieces(await _stream(triton, request))


async def test_stops_at_max_tokens(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    responses = await _stream(triton, _request(entries[MODEL], templates[MODEL], max_tokens=5))

    assert len(_pieces(responses)) == 5


async def test_text_input_is_read_as_given_not_as_json(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    conversation = [{"role": "user", "content": "Say hello."}]
    templated = templates[MODEL].render(conversation)
    as_json = json.dumps(conversation)

    answer = _pieces(await _stream(triton, entries[MODEL].request(templated, 8, Sampling())))
    json_answer = _pieces(await _stream(triton, entries[MODEL].request(as_json, 8, Sampling())))

    assert "".join(answer).strip()
    # The model no longer unpacks JSON into a conversation: JSON text is just text, answered differently.
    assert json_answer != answer


async def test_what_the_service_used_to_send_is_refused_by_triton(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    unbatched = EntryModel(name=MODEL, batched=False, cumulative=False).request(PROMPT, 5, Sampling())
    ((shape_error),) = await _stream(triton, unbatched)
    assert "unexpected shape for input" in shape_error.error_message

    counts = _request(entries[MODEL], templates[MODEL], max_tokens=5)
    counts.outputs.add(name="num_input_tokens")
    ((output_error),) = await _stream(triton, counts)
    assert "unexpected inference output 'num_input_tokens'" in output_error.error_message


async def test_cancelling_a_stream_stops_its_generation(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    # The longest generation the context allows, so that finishing it would take far longer than the check.
    call = triton.ModelStreamInfer(_one(_request(entries[MODEL], templates[MODEL], max_tokens=1900)))
    await call.read()
    started = time.monotonic()
    for _ in range(10):
        await call.read()
    seconds_per_token = (time.monotonic() - started) / 10
    call.cancel()

    # Both instances serve one request at a time: two more requests are answered before the cancelled one could
    # have finished (about 1889 more tokens) only if its generation stopped.
    started = time.monotonic()
    for _ in range(2):
        assert len(_pieces(await _stream(triton, _request(entries[MODEL], templates[MODEL], max_tokens=5)))) == 5
    assert time.monotonic() - started < 0.5 * 1889 * seconds_per_token


async def test_a_cancelled_long_prompt_frees_its_instance_within_a_chunk(
    triton: Stub, entries: Entries
) -> None:
    # gemma3 has one instance: a request sent after the cancel runs on the instance that was reading the prompt.
    model = "gemma3"

    def long_prompt(label: str) -> service_pb2.ModelInferRequest:
        # About 650 tokens; each prompt starts differently, so none reuses what another left in the context.
        return entries[model].request(f"{label}: " + LONG_TEXT, 1, Sampling())

    started = time.monotonic()
    assert len(_pieces(await _stream(triton, long_prompt("First")))) == 1
    whole_prompt_seconds = time.monotonic() - started
    assert whole_prompt_seconds > 2.0, "the prompt is read too fast for the test to tell a cancel from its end"

    call = triton.ModelStreamInfer(_one(long_prompt("Second")))
    await asyncio.sleep(0.5)  # the request is in the instance, reading its prompt
    call.cancel()
    cancelled = time.monotonic()
    short = entries[model].request("Say hello.", 3, Sampling())
    answered = _pieces(await _stream(triton, short))

    assert answered
    # Read whole, the second prompt would hold the instance for about whole_prompt_seconds - 0.5 s more.
    assert time.monotonic() - cancelled < 0.5 * whole_prompt_seconds


async def test_a_request_without_text_input_is_rejected(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    request = _request(entries[MODEL], templates[MODEL], max_tokens=5)
    del request.inputs[0]
    del request.raw_input_contents[0]

    ((response),) = await _stream(triton, request)

    # Enough other inputs pass Triton's count check: the model itself refuses the request.
    assert "text_input and max_tokens are required" in response.error_message


async def test_a_bad_input_value_gets_an_error_from_the_model(
    triton: Stub, entries: Entries, templates: Templates
) -> None:
    ((response),) = await _stream(triton, _request(entries[MODEL], templates[MODEL], max_tokens=0))

    assert "max_tokens must be at least 1" in response.error_message


def _request(
    entry: EntryModel, template: ChatTemplate, max_tokens: int, sampling: Sampling | None = None
) -> service_pb2.ModelInferRequest:
    """What the generation service sends for PROMPT as one user message."""
    text = template.render([{"role": "user", "content": PROMPT}])
    return entry.request(text, max_tokens, sampling or Sampling())


def _set_input(request: service_pb2.ModelInferRequest, name: str, value: np.ndarray) -> None:
    index = [tensor.name for tensor in request.inputs].index(name)
    request.raw_input_contents[index] = value.tobytes()


async def _stream(
    triton: service_pb2_grpc.GRPCInferenceServiceStub, request: service_pb2.ModelInferRequest
) -> list[service_pb2.ModelStreamInferResponse]:
    """Send one request on a stream; collect its responses up to the final one or an error."""
    responses = []
    async for response in triton.ModelStreamInfer(_one(request)):
        responses.append(response)
        if response.error_message or is_final(response.infer_response):
            break
    return responses


async def _one(request: service_pb2.ModelInferRequest) -> AsyncIterator[service_pb2.ModelInferRequest]:
    """The request iterator of a stream that carries a single request."""
    yield request


def _pieces(responses: list[service_pb2.ModelStreamInferResponse]) -> list[str]:
    """The text of each streamed (non-final) response."""
    assert not any(response.error_message for response in responses), responses
    return [
        (text_output(response.infer_response) or b"").decode()
        for response in responses
        if not is_final(response.infer_response)
    ]


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
