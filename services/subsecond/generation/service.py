"""The Generator servicer: one Triton streaming request per call, each chunk forwarded as it arrives.

The request speaks TensorRT-LLM's ``ensemble`` interface (``text_input``, ``max_tokens``,
``stream``, ``temperature``, ``top_p``, ``random_seed`` -> ``text_output``). The conversation is
sent as ``text_input`` in JSON (a list of {role, content}); the model applies its own chat template.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton
from prometheus_client import Counter, Gauge, Histogram
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult
from tritonclient.utils import InferenceServerException

from subsecond.generation.settings import GenerationSettings
from subsecond.kit.metrics import REQUEST_SECONDS
from subsecond.kit.server import ServiceDefinition
from subsecond.v1 import generation_pb2, generation_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

FIRST_TOKEN_SECONDS = Histogram(
    "subsecond_generation_time_to_first_token_seconds",
    "From the call arriving to Triton's first token.",
    ["model"],
    buckets=REQUEST_SECONDS,
)
STREAM_SECONDS = Histogram(
    "subsecond_generation_stream_duration_seconds",
    "Whole generation streams.",
    ["model"],
    buckets=REQUEST_SECONDS,
)
STREAMS = Counter("subsecond_generation_streams_total", "Generation streams by outcome.", ["model", "outcome"])
TOKENS = Counter("subsecond_generation_tokens_total", "Tokens processed, prompt or completion.", ["model", "kind"])
IN_FLIGHT = Gauge("subsecond_generation_streams_in_flight", "Streams being generated now.")

_OUTPUTS = ["text_output", "num_input_tokens", "num_output_tokens"]


def _tensor(name: str, dtype: str, value: Any) -> InferInput:
    array = np.array([value], dtype=object if dtype == "BYTES" else None)
    if dtype != "BYTES":
        array = array.astype({"INT32": np.int32, "FP32": np.float32, "UINT64": np.uint64, "BOOL": np.bool_}[dtype])
    tensor = InferInput(name, [1], dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def triton_inputs(request: generation_pb2.GenerationRequest) -> list[InferInput]:
    conversation = json.dumps([{"role": m.role, "content": m.content} for m in request.messages], ensure_ascii=False)
    inputs = [
        _tensor("text_input", "BYTES", conversation.encode()),
        _tensor("max_tokens", "INT32", request.max_tokens),
        _tensor("stream", "BOOL", True),
        _tensor("temperature", "FP32", request.sampling.temperature),
        _tensor("top_p", "FP32", request.sampling.top_p or 1.0),
    ]
    if request.sampling.HasField("seed"):
        inputs.append(_tensor("random_seed", "UINT64", request.sampling.seed))
    return inputs


def _scalar(result: InferResult, name: str) -> int | None:
    array = result.as_numpy(name)
    return None if array is None else int(array.reshape(-1)[0])


def _is_final(result: InferResult) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and parameters["triton_final_response"].bool_param


class GeneratorService(generation_pb2_grpc.GeneratorServicer):
    def __init__(self, settings: GenerationSettings) -> None:
        self._settings = settings
        self._client = triton.InferenceServerClient(settings.triton_url)
        self._slots = asyncio.Semaphore(settings.max_concurrent_streams)

    async def wait_until_ready(self) -> None:
        """Start-up: wait (NOT_SERVING meanwhile) until Triton reports every configured model ready."""
        deadline = time.monotonic() + self._settings.startup_timeout_seconds
        pending = set(self._settings.models.values())
        while pending:
            for model in sorted(pending):
                try:
                    if await self._client.is_model_ready(model):
                        pending.discard(model)
                except InferenceServerException:
                    pass
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Triton at {self._settings.triton_url} never made {sorted(pending)} ready")
                await asyncio.sleep(0.5)
        log.info("triton models ready", extra={"models": dict(self._settings.models)})

    async def Generate(
        self, request: generation_pb2.GenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        model = self._settings.models.get(request.model)
        if model is None:
            known = ", ".join(sorted(self._settings.models))
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"model: unknown tier {request.model!r}; known: {known}"
            )
            return
        if not request.messages:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "messages: give at least one message")
        if request.max_tokens <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "max_tokens: must be positive")
        if self._slots.locked():
            STREAMS.labels(request.model, "refused").inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "generation is at capacity; retry shortly")
        async with self._slots:
            IN_FLIGHT.inc()
            try:
                async for chunk in self._stream(request, model, context):
                    yield chunk
            finally:
                IN_FLIGHT.dec()

    async def _stream(
        self, request: generation_pb2.GenerationRequest, model: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        started = time.perf_counter()
        finished = asyncio.Event()

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {
                "model_name": model,
                "inputs": triton_inputs(request),
                "outputs": [InferRequestedOutput(name) for name in _OUTPUTS],
            }
            await finished.wait()  # keep the stream open until the final response

        remaining = context.time_remaining()
        responses = self._client.stream_infer(requests(), stream_timeout=remaining)
        outcome = "cancelled"
        tokens = 0
        try:
            async for result, error in responses:
                if error is not None:
                    outcome = "error"
                    await context.abort(grpc.StatusCode.INTERNAL, f"model {model} failed: {error.message()}")
                assert result is not None
                text = result.as_numpy("text_output")
                piece = b"".join(text.reshape(-1)).decode("utf-8", errors="replace") if text is not None else ""
                if piece:
                    if tokens == 0:
                        FIRST_TOKEN_SECONDS.labels(request.model).observe(time.perf_counter() - started)
                    tokens += 1
                if not _is_final(result):
                    if piece:
                        yield generation_pb2.GenerationChunk(text=piece)
                    continue
                completion = _scalar(result, "num_output_tokens") or tokens
                prompt = _scalar(result, "num_input_tokens") or 0
                reason = (
                    types_pb2.FINISH_REASON_LENGTH if completion >= request.max_tokens else types_pb2.FINISH_REASON_STOP
                )
                outcome = "length" if reason == types_pb2.FINISH_REASON_LENGTH else "stop"
                TOKENS.labels(request.model, "prompt").inc(prompt)
                TOKENS.labels(request.model, "completion").inc(completion)
                yield generation_pb2.GenerationChunk(
                    text=piece,
                    done=generation_pb2.GenerationDone(
                        finish_reason=reason, prompt_tokens=prompt, completion_tokens=completion
                    ),
                )
                return
            outcome = "error"
            await context.abort(grpc.StatusCode.INTERNAL, f"model {model} closed the stream without a final response")
        except grpc.aio.AioRpcError as error:
            outcome = "error"
            code = error.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                await context.abort(code, "deadline exceeded while generating")
            if code == grpc.StatusCode.UNAVAILABLE:
                await context.abort(code, f"Triton unreachable at {self._settings.triton_url}")
            await context.abort(grpc.StatusCode.INTERNAL, f"Triton error {code.name}: {error.details()}")
        finally:
            finished.set()
            responses.cancel()  # no-op after a final response; cancels Triton's request otherwise
            STREAMS.labels(request.model, outcome).inc()
            STREAM_SECONDS.labels(request.model).observe(time.perf_counter() - started)

    async def close(self) -> None:
        await self._client.close()


def definition(settings: GenerationSettings) -> ServiceDefinition:
    service = GeneratorService(settings)
    return ServiceDefinition(
        names=[generation_pb2.DESCRIPTOR.services_by_name["Generator"].full_name],
        register=lambda server: generation_pb2_grpc.add_GeneratorServicer_to_server(service, server),
        warm_up=service.wait_until_ready,
        close=service.close,
    )
