"""The Generator servicer: one Triton streaming request per call, each chunk forwarded as it arrives.

The conversation is rendered with the model's own chat template (``prompts``) and sent as
``text_input`` with TensorRT-LLM's other ensemble inputs, shaped as the entry model declares
(``entry_model``); only ``text_output`` is read back. Errors are raised as the kit's domain errors;
the server shell turns them into gRPC status codes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
from opentelemetry import trace
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from tritonclient.grpc import service_pb2, service_pb2_grpc

from subsecond.generation.chat_template import ChatTemplateError
from subsecond.generation.entry_model import EntryModel, TextDeltas, is_final, text_output
from subsecond.generation.prompts import ModelPrompt
from subsecond.generation.settings import GenerationSettings
from subsecond.generation.triton_metrics import TritonMetrics
from subsecond.kit.errors import Internal, InvalidArgument, ResourceExhausted, from_downstream
from subsecond.kit.metrics import REQUEST_SECONDS
from subsecond.kit.prompt_identity import Sampling, check_roles
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

class GeneratorService(generation_pb2_grpc.GeneratorServicer):
    def __init__(self, settings: GenerationSettings) -> None:
        self._settings = settings
        # Triton's own generated stub: tritonclient's aio client cannot ask for the empty final response.
        self._channel = grpc.aio.insecure_channel(settings.triton_url)
        self._triton = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._slots = asyncio.Semaphore(settings.max_concurrent_streams)
        self._prompts = {
            model: ModelPrompt.load(settings.tokenizer_root / model) for model in sorted(set(settings.models.values()))
        }
        # Filled at warm-up from each model's configuration in Triton.
        self._entries: dict[str, EntryModel] = {}
        self._triton_metrics = (
            TritonMetrics(settings.triton_metrics_url, settings.triton_metrics_timeout_seconds)
            if settings.triton_metrics_url
            else None
        )

    async def wait_until_ready(self) -> None:
        """Start-up: wait (NOT_SERVING meanwhile) until Triton reports every configured model ready, then
        read each model's configuration and refuse to serve (ContractError) one that does not take
        what this service sends."""
        # From the start: Triton's `up` is 0 while it loads its engines, which alerts tell from a crash.
        if self._triton_metrics is not None:
            REGISTRY.register(self._triton_metrics)
        deadline = time.monotonic() + self._settings.startup_timeout_seconds
        pending = set(self._prompts)
        while pending:
            for model in sorted(pending):
                try:
                    if (await self._triton.ModelReady(service_pb2.ModelReadyRequest(name=model), timeout=5)).ready:
                        pending.discard(model)
                except grpc.aio.AioRpcError:
                    pass
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Triton at {self._settings.triton_url} never made {sorted(pending)} ready")
                await asyncio.sleep(0.5)
        for model in self._prompts:
            reply = await self._triton.ModelConfig(service_pb2.ModelConfigRequest(name=model), timeout=10)
            self._entries[model] = EntryModel.from_config(reply.config)
        log.info(
            "triton models ready",
            extra={
                "models": {
                    model: {"batched": entry.batched, "cumulative_text": entry.cumulative}
                    for model, entry in self._entries.items()
                }
            },
        )

    async def Generate(
        self, request: generation_pb2.GenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        model = self._settings.models.get(request.model)
        if model is None:
            known = ", ".join(sorted(self._settings.models))
            raise InvalidArgument(f"model: unknown tier {request.model!r}; known: {known}")
        if not request.messages:
            raise InvalidArgument("messages: give at least one message")
        check_roles(request.messages, "messages")
        if request.max_tokens <= 0:
            raise InvalidArgument("max_tokens: must be positive")
        if request.max_tokens > self._settings.max_tokens_limit:
            raise InvalidArgument(
                f"max_tokens: {request.max_tokens} is over the limit of {self._settings.max_tokens_limit}"
            )
        try:
            text = self._prompts[model].render([{"role": m.role, "content": m.content} for m in request.messages])
        except ChatTemplateError as error:
            raise InvalidArgument(f"messages: model {request.model}: {error}") from error
        if self._slots.locked():
            STREAMS.labels(request.model, "refused").inc()
            raise ResourceExhausted(
                f"generation is at capacity ({self._settings.max_concurrent_streams} streams); retry shortly"
            )
        async with self._slots:
            IN_FLIGHT.inc()
            try:
                async for chunk in self._stream(request, model, text, context):
                    yield chunk
            finally:
                IN_FLIGHT.dec()

    async def _stream(
        self, request: generation_pb2.GenerationRequest, model: str, text: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        started = time.perf_counter()
        entry = self._entries[model]
        # The call's span (a no-op unless traces are exported) marks where a miss's first chunk spends
        # its time: the request written to Triton's stream, Triton's first response, the first chunk out.
        span = trace.get_current_span()
        # Written on the call, not fed from a request iterator (grpc.aio would run a task to consume
        # it, a turn of the loop before the request leaves); the stream stays open (no half-close)
        # until the final response, and is cancelled after it.
        responses = self._triton.ModelStreamInfer(timeout=context.time_remaining())
        prompt_tokens = _PromptTokens(self._prompts[model], text)
        deltas = TextDeltas(entry.cumulative)
        outcome = "cancelled"
        completion_tokens = 0
        answered = forwarded = False
        try:
            await responses.write(entry.request(text, request.max_tokens, Sampling.from_proto(request.sampling)))
            span.add_event("triton request sent")
            prompt_tokens.start()
            async for response in responses:
                if not answered:
                    answered = True
                    span.add_event("triton first response")
                if response.error_message:
                    outcome = "error"
                    raise Internal(f"model {model} failed: {response.error_message}")
                raw = text_output(response.infer_response)
                piece = ""
                if raw is not None:
                    piece, advanced = deltas.feed(raw)
                    if advanced:
                        if completion_tokens == 0:
                            FIRST_TOKEN_SECONDS.labels(request.model).observe(time.perf_counter() - started)
                        completion_tokens += 1
                if not is_final(response.infer_response):
                    if piece:
                        if not forwarded:
                            forwarded = True
                            span.add_event("first chunk")
                        yield generation_pb2.GenerationChunk(text=piece)
                    continue
                reason = (
                    types_pb2.FINISH_REASON_LENGTH
                    if completion_tokens >= request.max_tokens
                    else types_pb2.FINISH_REASON_STOP
                )
                outcome = "length" if reason == types_pb2.FINISH_REASON_LENGTH else "stop"
                counted = await prompt_tokens.count
                TOKENS.labels(request.model, "prompt").inc(counted)
                TOKENS.labels(request.model, "completion").inc(completion_tokens)
                yield generation_pb2.GenerationChunk(
                    text=piece + deltas.finish(),
                    done=generation_pb2.GenerationDone(
                        finish_reason=reason, prompt_tokens=counted, completion_tokens=completion_tokens
                    ),
                )
                return
            outcome = "error"
            raise Internal(f"model {model} closed the stream without a final response")
        except grpc.aio.AioRpcError as error:
            outcome = "error"
            raise from_downstream(error, f"Triton at {self._settings.triton_url} (model {model})") from error
        finally:
            responses.cancel()  # no-op after a final response; cancels Triton's request otherwise
            prompt_tokens.cancel()
            STREAMS.labels(request.model, outcome).inc()
            STREAM_SECONDS.labels(request.model).observe(time.perf_counter() - started)

    async def close(self) -> None:
        await self._channel.close()
        if self._triton_metrics is not None:
            REGISTRY.unregister(self._triton_metrics)


class _PromptTokens:
    """The prompt's token count (TensorRT-LLM's ensemble returns none), needed only for the last chunk:
    counted in a worker thread once the request is written, while the model reads the prompt (which
    takes far longer than tokenizing it). Tokenizing holds the GIL (about 0.2 ms for a short prompt
    here): started at the call, it delayed the request itself; started after the first chunk, it
    delayed that chunk's way out."""

    def __init__(self, prompt: ModelPrompt, text: str) -> None:
        self._prompt = prompt
        self._text = text
        self._count: asyncio.Future[int] | None = None

    def start(self) -> None:
        self._count = asyncio.ensure_future(asyncio.to_thread(self._prompt.count, self._text))

    @property
    def count(self) -> asyncio.Future[int]:
        assert self._count is not None, "started once the request is written"
        return self._count

    def cancel(self) -> None:
        if self._count is not None:
            self._count.cancel()


def definition(settings: GenerationSettings) -> ServiceDefinition:
    service = GeneratorService(settings)
    return ServiceDefinition.for_servicer(
        generation_pb2.DESCRIPTOR.services_by_name["Generator"],
        generation_pb2_grpc.add_GeneratorServicer_to_server,
        service,
        warm_up=service.wait_until_ready,
        close=service.close,
    )
