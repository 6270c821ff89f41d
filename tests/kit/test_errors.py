"""Errors become gRPC status in one place: a real server on loopback whose handlers raise."""

from collections.abc import AsyncIterator

import grpc
import pytest

from subsecond.kit import errors
from subsecond.kit.interceptors import WrappedHandlers, WrappingRegistry
from subsecond.kit.server import RunningServer, ServiceDefinition, start_server
from subsecond.kit.settings import ServerSettings
from subsecond.v1 import types_pb2

SETTINGS = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_seconds=1, log_level="INFO")
SERVICE = "test.Errors"

RAISED: dict[bytes, Exception] = {
    b"invalid": errors.InvalidArgument("prompt: must not be blank"),
    b"unauthenticated": errors.Unauthenticated("unknown x-api-key"),
    b"exhausted": errors.ResourceExhausted("tenant t has 64 streams open"),
    b"unavailable": errors.Unavailable("generation unavailable"),
    b"deadline": errors.DeadlineExceeded("deadline exceeded while generating"),
    b"internal": errors.Internal("model small failed"),
    b"bug": KeyError("a secret detail"),
}


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request in RAISED:
        raise RAISED[request]
    return b"ok:" + request


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    if request in RAISED:
        raise RAISED[request]
    yield b"last"


async def _echo(request: types_pb2.ChatMessage, context: grpc.aio.ServicerContext) -> types_pb2.ChatMessage:
    return request


async def _echo_stream(
    request: types_pb2.ChatMessage, context: grpc.aio.ServicerContext
) -> AsyncIterator[types_pb2.ChatMessage]:
    yield request


def _register(server: WrappingRegistry) -> None:
    decoded = {
        "request_deserializer": types_pb2.ChatMessage.FromString,
        "response_serializer": types_pb2.ChatMessage.SerializeToString,
    }
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(_unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
                    "Echo": grpc.unary_unary_rpc_method_handler(_echo, **decoded),
                    "EchoStream": grpc.unary_stream_rpc_method_handler(_echo_stream, **decoded),
                },
            )
        ]
    )


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(SETTINGS, ServiceDefinition(names=[SERVICE], register=_register))
    yield running
    await running.stop(0)


@pytest.mark.parametrize(
    ("kind", "code", "details"),
    [
        (b"invalid", grpc.StatusCode.INVALID_ARGUMENT, "prompt: must not be blank"),
        (b"unauthenticated", grpc.StatusCode.UNAUTHENTICATED, "unknown x-api-key"),
        (b"exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED, "tenant t has 64 streams open"),
        (b"unavailable", grpc.StatusCode.UNAVAILABLE, "generation unavailable"),
        (b"deadline", grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while generating"),
        (b"internal", grpc.StatusCode.INTERNAL, "model small failed"),
        (b"bug", grpc.StatusCode.INTERNAL, "internal error; the service logged it"),
    ],
)
async def test_each_error_ends_both_kinds_of_call_with_its_status(
    server: RunningServer, kind: bytes, code: grpc.StatusCode, details: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await channel.unary_unary(f"/{SERVICE}/Unary")(kind, timeout=5)
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as stream:
            async for message in channel.unary_stream(f"/{SERVICE}/Stream")(kind, timeout=5):
                received.append(message)
    for raised in (unary.value, stream.value):
        assert raised.code() == code
        assert raised.details() == details
    assert received == [b"first"]  # what was sent before the error still arrived


async def test_calls_that_do_not_raise_are_untouched(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        assert await channel.unary_unary(f"/{SERVICE}/Unary")(b"x", timeout=5) == b"ok:x"
        assert [m async for m in channel.unary_stream(f"/{SERVICE}/Stream")(b"x", timeout=5)] == [b"first", b"last"]


async def test_an_unexpected_exception_is_logged_with_its_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary(f"/{SERVICE}/Unary")(b"bug", timeout=5)
    logged = [record for record in caplog.records if record.name == "subsecond.kit.errors"]
    assert logged and logged[0].exc_info is not None and isinstance(logged[0].exc_info[1], KeyError)


# Hand-made bytes for a ChatMessage: field 2 (content) as a string of invalid UTF-8, and a field 2
# that announces 16 bytes and carries 2.
INVALID_UTF8 = b"\x12\x02\xff\xfe"
TRUNCATED = b"\x12\x10ab"


@pytest.mark.parametrize("raw", [INVALID_UTF8, TRUNCATED], ids=["invalid-utf8", "truncated"])
async def test_bytes_that_are_not_the_request_message_are_invalid_argument_and_log_no_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await channel.unary_unary(f"/{SERVICE}/Echo")(raw, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as stream:
            async for _ in channel.unary_stream(f"/{SERVICE}/EchoStream")(raw, timeout=5):
                pass
        # A message that parses still reaches the handler.
        whole = types_pb2.ChatMessage(role="user", content="hi")
        echoed = await channel.unary_unary(f"/{SERVICE}/Echo")(whole.SerializeToString(), timeout=5)
    for refused in (unary.value, stream.value):
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.details() or "").startswith(f"request: not a valid subsecond.v1.ChatMessage ({len(raw)} bytes)")
    assert types_pb2.ChatMessage.FromString(echoed) == whole
    assert not [record for record in caplog.records if record.exc_info is not None or record.levelname == "ERROR"]


class _Refusal(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "kind", "message"),
    [
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded, "deadline exceeded while waiting for cache"),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable, "cache unavailable: connection refused"),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument, "connection refused"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted, "connection refused"),
        (grpc.StatusCode.UNKNOWN, errors.Internal, "cache failed (UNKNOWN): connection refused"),
    ],
)
def test_a_downstream_failure_keeps_the_codes_a_caller_can_act_on(
    code: grpc.StatusCode, kind: type[errors.ServiceError], message: str
) -> None:
    error = errors.from_downstream(_Refusal(code, "connection refused"), "cache")
    assert type(error) is kind
    assert error.message == message


async def test_a_methods_handler_is_wrapped_once_and_maps_every_call(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        unary = channel.unary_unary(f"/{SERVICE}/Unary")
        for kind in (b"exhausted", b"x", b"unavailable", b"y", b"exhausted"):  # the same wrapping each call
            try:
                assert await unary(kind, timeout=5) == b"ok:" + kind
            except grpc.aio.AioRpcError as error:
                assert (error.code(), error.details()) == (RAISED[kind].code, RAISED[kind].message)  # type: ignore[attr-defined]

    first, second = (grpc.unary_unary_rpc_method_handler(_unary) for _ in range(2))
    served = {f"/{SERVICE}/Unary": first}

    class Servicer(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return served.get(details.method)

    handlers = WrappedHandlers(Servicer(), [errors.StatusInterceptor()])
    details, unknown = grpc.HandlerCallDetails(), grpc.HandlerCallDetails()
    details.method, unknown.method = f"/{SERVICE}/Unary", f"/{SERVICE}/Nothing"  # type: ignore[attr-defined]
    wrapped = handlers.service(details)
    assert wrapped is not first and handlers.service(details) is wrapped
    served[details.method] = second  # another handler for the method: wrapped anew
    assert handlers.service(details) not in (wrapped, second)
    assert handlers.service(unknown) is None
