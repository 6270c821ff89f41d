"""A fake Triton for the generation service's in-process tests: a real gRPC server on port 0 that
implements ``GRPCInferenceService`` (tritonclient's own generated servicer) the way Triton serves
TensorRT-LLM's entry model.

A fake because TensorRT-LLM cannot run here (no GPU); the embedded models are tested against the
real ``tritonserver`` in test_triton_model.py. What it reproduces of Triton, since that is what the
service must get right: requests are checked against the model's config before anything runs
(unknown or missing inputs, wrong datatypes, shapes without the batch dimension when
``max_batch_size`` > 0, requested outputs the model does not declare), with Triton's error text,
returned on the stream as ``error_message``; decoupled responses carry ``triton_final_response``;
the empty final response reaches the client only when the request enables it; ``text_output`` is a
batch of one string, ``[1, 1]`` for a batched model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

STRING, INT32, BOOL, FP32, UINT64 = (
    model_config_pb2.TYPE_STRING,
    model_config_pb2.TYPE_INT32,
    model_config_pb2.TYPE_BOOL,
    model_config_pb2.TYPE_FP32,
    model_config_pb2.TYPE_UINT64,
)
_WIRE = {"BYTES": STRING, "INT32": INT32, "BOOL": BOOL, "FP32": FP32, "UINT64": UINT64}


def entry_model_config(
    name: str, *, max_batch_size: int = 64, accumulate_tokens: bool = True, decoupled: bool = True
) -> model_config_pb2.ModelConfig:
    """A config with the inputs and outputs of TensorRT-LLM's ``tensorrt_llm_bls`` / ``ensemble`` (v0.17)
    that the service uses, plus some it does not send (optional, as there)."""
    config = model_config_pb2.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    config.model_transaction_policy.decoupled = decoupled
    required = [("text_input", STRING), ("max_tokens", INT32)]
    optional = [
        ("stream", BOOL),
        ("temperature", FP32),
        ("top_p", FP32),
        ("random_seed", UINT64),
        ("top_k", INT32),
        ("bad_words", STRING),
        ("stop_words", STRING),
        ("end_id", INT32),
    ]
    for tensor_name, data_type in required:
        config.input.add(name=tensor_name, data_type=data_type, dims=[1])
    for tensor_name, data_type in optional:
        config.input.add(name=tensor_name, data_type=data_type, dims=[-1 if data_type == STRING else 1], optional=True)
    config.output.add(name="text_output", data_type=STRING, dims=[-1])
    if accumulate_tokens:
        config.parameters["accumulate_tokens"].string_value = "true"
    return config


@dataclass
class Script:
    """What the model answers to every request: these ``text_output`` values, ``delay`` apart, then
    ``error`` (a model failure) or the empty final response."""

    outputs: Sequence[bytes] = (b"Hello",)
    delay: float = 0.0
    error: str | None = None


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(dim) for dim in shape) + "]"


def check_request(config: model_config_pb2.ModelConfig, request: service_pb2.ModelInferRequest) -> str | None:
    """Triton's own checks of a request against the model's config; its error message, or None."""
    declared = {tensor.name: tensor for tensor in config.input}
    batched = config.max_batch_size > 0
    for tensor in request.inputs:
        spec = declared.get(tensor.name)
        if spec is None:
            return f"[request id: <id_unknown>] unexpected inference input '{tensor.name}' for model '{config.name}'"
        if _WIRE.get(tensor.datatype) != spec.data_type:
            expected = model_config_pb2.DataType.Name(spec.data_type)
            return (
                f"[request id: <id_unknown>] unexpected datatype TYPE_{tensor.datatype} for inference input "
                f"'{tensor.name}', expecting {expected} for model '{config.name}'"
            )
        shape = list(tensor.shape)
        dims = shape[1:] if batched else shape
        fits = len(dims) == len(spec.dims) and all(want in (-1, got) for want, got in zip(spec.dims, dims, strict=True))
        if not fits or (batched and not 1 <= shape[0] <= config.max_batch_size):
            expected = _shape_text(([-1] if batched else []) + list(spec.dims))
            note = (
                " NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be "
                "prepended to each input shape."
                if batched
                else ""
            )
            return (
                f"[request id: <id_unknown>] unexpected shape for input '{tensor.name}' for model '{config.name}'. "
                f"Expected {expected}, got {_shape_text(shape)}.{note}"
            )
    # Triton counts inputs: fewer than the required ones is refused here; a required one missing among
    # enough others reaches the model, which must check it itself.
    given = {tensor.name for tensor in request.inputs}
    required = [name for name, spec in declared.items() if not spec.optional]
    if len(given) < len(required):
        missing = [name for name in required if name not in given]
        return (
            f"[request id: <id_unknown>] expected {len(required)} inputs but got {len(given)} inputs for model "
            f"'{config.name}'. Got input(s) {sorted(given)}, but missing required input(s) {missing}."
        )
    outputs = {tensor.name for tensor in config.output}
    for output in request.outputs:
        if output.name not in outputs:
            return f"[request id: <id_unknown>] unexpected inference output '{output.name}' for model '{config.name}'"
    return None


def input_value(request: service_pb2.ModelInferRequest, name: str) -> np.ndarray:
    """An input as an array of its declared shape (strings as bytes)."""
    for index, tensor in enumerate(request.inputs):
        if tensor.name == name:
            raw = request.raw_input_contents[index]
            dtype = {"INT32": np.int32, "BOOL": np.bool_, "FP32": np.float32, "UINT64": np.uint64}.get(tensor.datatype)
            array = deserialize_bytes_tensor(raw) if dtype is None else np.frombuffer(raw, dtype=dtype)
            return array.reshape(list(tensor.shape))
    raise KeyError(name)


@dataclass
class FakeTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    models: dict[str, model_config_pb2.ModelConfig]
    script: Script = field(default_factory=Script)
    requests: list[service_pb2.ModelInferRequest] = field(default_factory=list)
    # Set when a stream ends because its caller went away (what a cancelled generation looks like to Triton).
    stream_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    streams_open: int = 0

    async def ServerReady(
        self, request: service_pb2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerReadyResponse:
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(
        self, request: service_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelReadyResponse:
        return service_pb2.ModelReadyResponse(ready=request.name in self.models)

    async def ModelConfig(
        self, request: service_pb2.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelConfigResponse:
        if request.name not in self.models:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{request.name}' is not found")
        return service_pb2.ModelConfigResponse(config=self.models[request.name])

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[service_pb2.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        self.streams_open += 1
        try:
            async for request in request_iterator:
                self.requests.append(request)
                config = self.models.get(request.model_name)
                if config is None:
                    yield service_pb2.ModelStreamInferResponse(
                        error_message=f"Request for unknown model: '{request.model_name}' is not found"
                    )
                    continue
                problem = check_request(config, request)
                if problem is not None:
                    yield service_pb2.ModelStreamInferResponse(error_message=problem)
                    continue
                async for response in self._answer(config, request):
                    yield response
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise
        finally:
            self.streams_open -= 1

    async def _answer(
        self, config: model_config_pb2.ModelConfig, request: service_pb2.ModelInferRequest
    ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        shape = [1, 1] if config.max_batch_size > 0 else [1]
        for text in self.script.outputs:
            await asyncio.sleep(self.script.delay)
            response = service_pb2.ModelInferResponse(model_name=config.name, id=request.id)
            response.outputs.add(name="text_output", datatype="BYTES", shape=shape)
            response.raw_output_contents.append(
                serialize_byte_tensor(np.array([text], dtype=np.object_).reshape(shape)).item()
            )
            response.parameters["triton_final_response"].bool_param = False
            yield service_pb2.ModelStreamInferResponse(infer_response=response)
        if self.script.error is not None:
            yield service_pb2.ModelStreamInferResponse(error_message=self.script.error)
            return
        enabled = request.parameters.get("triton_enable_empty_final_response")
        if enabled is not None and enabled.bool_param:
            final = service_pb2.ModelInferResponse(model_name=config.name, id=request.id)
            final.parameters["triton_final_response"].bool_param = True
            yield service_pb2.ModelStreamInferResponse(infer_response=final)


async def start_fake_triton(fake: FakeTriton) -> tuple[grpc.aio.Server, str]:
    """Serves ``fake`` on a free loopback port; returns the server and its address."""
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"
