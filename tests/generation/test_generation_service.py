"""The generation service in its server shell on port 0, against a fake Triton on port 0 that checks
requests as Triton checks them for TensorRT-LLM's entry model (see fake_triton.py). Seconds, no engine."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
from fake_triton import FakeTriton, Script, check_request, entry_model_config, input_value, start_fake_triton
from grpc.aio._call import StreamStreamCall
from tokenizers import Tokenizer, models, pre_tokenizers
from tritonclient.grpc import model_config_pb2, service_pb2

from subsecond.generation.chat_template import ChatTemplate
from subsecond.generation.entry_model import ContractError
from subsecond.generation.prompts import ModelPrompt
from subsecond.generation.service import STREAMS, GeneratorService, definition
from subsecond.generation.settings import GenerationSettings
from subsecond.kit.server import RunningServer, start_server
from subsecond.v1 import generation_pb2, generation_pb2_grpc, types_pb2

MODEL = "llama-3.1-8b-instruct"
# A Llama 3-style template (written for this test): the conversation in header/eot turns.
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CONVERSATION = [("system", "Be brief."), ("user", "Name a primary colour.")]


@pytest.fixture
def tokenizer_root(tmp_path: Path) -> Path:
    directory = tmp_path / MODEL
    directory.mkdir()
    config = {"chat_template": TEMPLATE, "bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    # A whitespace word tokenizer: prompt token counts the test can work out.
    words = ["[UNK]", "Be", "brief", ".", "Name", "a", "primary", "colour"]
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return tmp_path


class Running:
    def __init__(self, fake: FakeTriton, fake_server: grpc.aio.Server, service: RunningServer) -> None:
        self.fake = fake
        self.fake_server = fake_server
        self.service = service
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
        self.stub = generation_pb2_grpc.GeneratorStub(self.channel)


def _settings(tokenizer_root: Path, triton_address: str, **environment: str) -> GenerationSettings:
    return GenerationSettings.from_env(
        {
            "SUBSECOND_GENERATION_PORT": "0",
            "SUBSECOND_GENERATION_METRICS_PORT": "0",
            "SUBSECOND_GENERATION_TRITON_URL": triton_address,
            "SUBSECOND_GENERATION_MODELS": f"small={MODEL}",
            "SUBSECOND_GENERATION_TOKENIZER_ROOT": str(tokenizer_root),
            **{f"SUBSECOND_GENERATION_{key.upper()}": value for key, value in environment.items()},
        }
    )


async def _start(
    tokenizer_root: Path, config: model_config_pb2.ModelConfig, script: Script, **environment: str
) -> Running:
    fake = FakeTriton({MODEL: config}, script)
    fake_server, address = await start_fake_triton(fake)
    settings = _settings(tokenizer_root, address, **environment)
    try:
        service = await start_server(settings.server, definition(settings))
    except BaseException:
        await fake_server.stop(None)
        raise
    return Running(fake, fake_server, service)


@pytest.fixture
async def stack_of(tokenizer_root: Path) -> AsyncIterator:
    started: list[Running] = []

    async def make(
        config: model_config_pb2.ModelConfig | None = None, script: Script | None = None, **environment: str
    ) -> Running:
        running = await _start(tokenizer_root, config or entry_model_config(MODEL), script or Script(), **environment)
        started.append(running)
        return running

    yield make
    for running in started:
        await running.channel.close()
        await running.service.stop(0.5)
        await running.fake_server.stop(None)


def _request(model: str = "small", max_tokens: int = 16, conversation: Sequence[tuple[str, str]] = CONVERSATION):
    return generation_pb2.GenerationRequest(
        model=model,
        messages=[types_pb2.ChatMessage(role=role, content=content) for role, content in conversation],
        max_tokens=max_tokens,
    )


async def _collect(stub: generation_pb2_grpc.GeneratorStub, request, deadline: float = 10.0):
    return [chunk async for chunk in stub.Generate(request, timeout=deadline)]


async def _error(stub: generation_pb2_grpc.GeneratorStub, request, deadline: float = 10.0) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _collect(stub, request, deadline)
    return raised.value


async def test_text_input_is_the_templated_conversation_not_json(stack_of, tokenizer_root: Path) -> None:
    running = await stack_of()

    await _collect(running.stub, _request())

    (sent,) = running.fake.requests
    text = input_value(sent, "text_input").reshape(-1)[0].decode()
    expected = ChatTemplate.load(tokenizer_root / MODEL).render([{"role": r, "content": c} for r, c in CONVERSATION])
    assert text == expected
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    with pytest.raises(ValueError):
        json.loads(text)


async def test_a_batched_model_gets_every_tensor_as_1x1_and_only_text_output_is_requested(stack_of) -> None:
    running = await stack_of(entry_model_config(MODEL, max_batch_size=64))

    chunks = await _collect(running.stub, _request())

    (sent,) = running.fake.requests
    assert {tensor.name: list(tensor.shape) for tensor in sent.inputs} == {
        name: [1, 1] for name in ("text_input", "max_tokens", "stream", "temperature", "top_p")
    }
    assert [output.name for output in sent.outputs] == ["text_output"]
    assert sent.parameters["triton_enable_empty_final_response"].bool_param
    assert chunks[-1].done.finish_reason == types_pb2.FINISH_REASON_STOP


async def test_an_unbatched_model_gets_shape_1_and_a_seed_when_one_is_given(stack_of) -> None:
    running = await stack_of(entry_model_config(MODEL, max_batch_size=0))
    request = _request()
    request.sampling.seed = 7

    await _collect(running.stub, request)

    (sent,) = running.fake.requests
    assert {list(tensor.shape) == [1] for tensor in sent.inputs} == {True}
    assert int(input_value(sent, "random_seed").reshape(-1)[0]) == 7


def test_the_fake_refuses_what_the_service_used_to_send_as_triton_does() -> None:
    """The old request ([1]-shaped inputs, token-count outputs) against the ensemble's config: the
    errors that every Generate call would have ended in."""
    config = entry_model_config(MODEL)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="text_input", datatype="BYTES", shape=[1])
    request.inputs.add(name="max_tokens", datatype="INT32", shape=[1])
    problem = check_request(config, request)
    assert problem is not None and "unexpected shape for input 'text_input'" in problem and "Expected [-1,1]" in problem

    for tensor in request.inputs:
        tensor.shape[:] = [1, 1]
    request.outputs.add(name="num_input_tokens")
    problem = check_request(config, request)
    assert problem is not None and f"unexpected inference output 'num_input_tokens' for model '{MODEL}'" in problem


async def test_cumulative_text_is_forwarded_as_deltas_and_a_split_character_waits_until_whole(stack_of) -> None:
    # TensorRT-LLM's postprocessing with accumulate_tokens: the whole text so far, "é" split over two tokens.
    outputs = ["Caf", "Caf\ufffd", "Café", "Café au", "Café au lait"]
    running = await stack_of(script=Script(outputs=[text.encode() for text in outputs]))

    chunks = await _collect(running.stub, _request())

    assert [chunk.text for chunk in chunks] == ["Caf", "é", " au", " lait", ""]
    assert chunks[-1].done.completion_tokens == 5
    # Prompt tokens from the model's tokenizer.json: the words of the rendered conversation it knows,
    # every other piece (template markup) one unknown token each.
    assert chunks[-1].done.prompt_tokens > 0


async def test_deltas_with_a_character_split_across_responses_come_out_whole(stack_of) -> None:
    e_acute = "é".encode()
    running = await stack_of(
        entry_model_config(MODEL, accumulate_tokens=False), Script(outputs=[b"Caf" + e_acute[:1], e_acute[1:] + b"!"])
    )

    chunks = await _collect(running.stub, _request())

    assert "".join(chunk.text for chunk in chunks) == "Café!"
    assert all("\ufffd" not in chunk.text for chunk in chunks)
    assert chunks[-1].done.completion_tokens == 2


async def test_prompt_tokens_are_counted_with_the_model_tokenizer(stack_of, tokenizer_root: Path) -> None:
    running = await stack_of()

    chunks = await _collect(running.stub, _request())

    text = input_value(running.fake.requests[0], "text_input").reshape(-1)[0].decode()
    tokenizer = Tokenizer.from_file(str(tokenizer_root / MODEL / "tokenizer.json"))
    assert chunks[-1].done.prompt_tokens == len(tokenizer.encode(text, add_special_tokens=False).ids)


async def test_the_prompt_is_counted_only_once_the_request_is_written_to_triton(stack_of, monkeypatch) -> None:
    """Tokenizing holds the GIL: counted before the request is written, it would delay the request."""
    journal: list[str] = []
    # The concrete call class (grpc.aio.StreamStreamCall is its abstract base): the real write, watched.
    count, write = ModelPrompt.count, StreamStreamCall.write

    def counting(self: ModelPrompt, text: str) -> int:
        journal.append("count")
        return count(self, text)

    async def writing(self: StreamStreamCall, request: object) -> None:
        await write(self, request)
        journal.append("written")

    monkeypatch.setattr(ModelPrompt, "count", counting)
    monkeypatch.setattr(StreamStreamCall, "write", writing)
    running = await stack_of(script=Script(outputs=(b"Red", b"Red.")))

    chunks = await _collect(running.stub, _request())

    assert [chunk.text for chunk in chunks] == ["Red", ".", ""]
    assert chunks[-1].done.prompt_tokens > 0
    assert journal == ["written", "count"]
    # A stream with no text at all is counted too.
    running.fake.script = Script(outputs=())
    assert (await _collect(running.stub, _request()))[-1].done.prompt_tokens == chunks[-1].done.prompt_tokens


async def test_a_generation_that_uses_all_of_max_tokens_finishes_with_length(stack_of) -> None:
    running = await stack_of(entry_model_config(MODEL, accumulate_tokens=False), Script(outputs=[b"a", b"b", b"c"]))

    chunks = await _collect(running.stub, _request(max_tokens=3))

    assert chunks[-1].done.finish_reason == types_pb2.FINISH_REASON_LENGTH
    assert chunks[-1].done.completion_tokens == 3


async def test_an_unknown_tier_is_invalid_argument_naming_the_known_ones(stack_of) -> None:
    running = await stack_of()

    error = await _error(running.stub, _request(model="huge"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "model: unknown tier 'huge'; known: small"
    assert running.fake.requests == []


async def test_a_bad_role_or_no_messages_is_invalid_argument(stack_of) -> None:
    running = await stack_of()

    bad_role = await _error(running.stub, _request(conversation=[("robot", "hi")]))
    empty = await _error(running.stub, _request(conversation=[]))

    assert bad_role.code() == empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages[0].role: 'robot'" in bad_role.details()
    assert empty.details() == "messages: give at least one message"


async def test_max_tokens_over_the_limit_is_refused_before_triton_sees_it(stack_of) -> None:
    running = await stack_of()

    refused = await _error(running.stub, _request(max_tokens=2**31 - 1))

    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "max_tokens: 2147483647 is over the limit of 4096"
    assert running.fake.requests == []


async def test_a_conversation_the_template_refuses_is_invalid_argument(stack_of, tokenizer_root: Path) -> None:
    config_path = tokenizer_root / MODEL / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = (
        "{% if messages[-1]['role'] != 'user' %}{{ raise_exception('end with a user turn') }}{% endif %}x"
    )
    config_path.write_text(json.dumps(config))
    running = await stack_of()

    error = await _error(running.stub, _request(conversation=[("user", "hi"), ("assistant", "hello")]))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "end with a user turn" in error.details()


async def test_past_capacity_a_call_is_resource_exhausted(stack_of) -> None:
    running = await stack_of(script=Script(outputs=[b"slow"] * 50, delay=0.1), max_concurrent_streams="1")
    first = running.stub.Generate(_request(), timeout=10)
    await first.read()  # the one slot is taken

    error = await _error(running.stub, _request())

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at capacity (1 streams)" in error.details()
    first.cancel()


async def test_triton_unreachable_is_unavailable_naming_it(stack_of) -> None:
    running = await stack_of()
    await running.fake_server.stop(None)
    started = time.perf_counter()

    error = await _error(running.stub, _request(), deadline=30)

    assert time.perf_counter() - started < 5.0  # at once, not when the call's deadline runs out
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "Triton at 127.0.0.1:" in error.details() and f"model {MODEL}" in error.details()


async def test_a_deadline_is_deadline_exceeded_and_ends_the_triton_stream(stack_of) -> None:
    running = await stack_of(script=Script(outputs=[b"x"] * 100, delay=0.05))
    before = STREAMS.labels("small", "cancelled")._value.get() + STREAMS.labels("small", "error")._value.get()

    error = await _error(running.stub, _request(max_tokens=1000), deadline=0.5)

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(running.fake.stream_cancelled.wait(), 2.0)
    after = STREAMS.labels("small", "cancelled")._value.get() + STREAMS.labels("small", "error")._value.get()
    assert after == before + 1


async def test_a_model_error_is_internal_naming_the_model(stack_of) -> None:
    running = await stack_of(script=Script(outputs=[b"partial"], error="generation failed: out of KV cache"))

    error = await _error(running.stub, _request())

    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == f"model {MODEL} failed: generation failed: out of KV cache"


async def test_cancelling_the_call_cancels_the_triton_stream(stack_of) -> None:
    running = await stack_of(script=Script(outputs=[b"x"] * 100, delay=0.05))
    call = running.stub.Generate(_request(max_tokens=1000), timeout=10)
    await call.read()

    call.cancel()

    await asyncio.wait_for(running.fake.stream_cancelled.wait(), 2.0)
    assert len(running.fake.requests) == 1


async def test_warm_up_refuses_a_model_that_does_not_take_the_ensemble_inputs(tokenizer_root: Path) -> None:
    config = entry_model_config(MODEL, decoupled=False)
    del config.input[5]  # random_seed
    fake_server, address = await start_fake_triton(FakeTriton({MODEL: config}))
    service = GeneratorService(_settings(tokenizer_root, address))
    try:
        with pytest.raises(ContractError) as refused:
            await service.wait_until_ready()  # what the server shell awaits before turning SERVING
    finally:
        await service.close()
        await fake_server.stop(None)

    assert str(refused.value) == f"model {MODEL}: no input random_seed; not decoupled (it cannot stream)"


def test_settings_refuse_a_model_without_a_chat_template(tmp_path: Path) -> None:
    (tmp_path / MODEL).mkdir()

    with pytest.raises(ValueError) as refused:
        GenerationSettings.from_env(
            {"SUBSECOND_GENERATION_MODELS": f"small={MODEL}", "SUBSECOND_GENERATION_TOKENIZER_ROOT": str(tmp_path)}
        )

    assert f"model {MODEL}: {tmp_path / MODEL} holds no chat template" in str(refused.value)
