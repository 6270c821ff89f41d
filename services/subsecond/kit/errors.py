"""What went wrong, said once: domain errors raised by every service, and the one place that turns
them into a gRPC status.

A servicer (or anything it calls) raises one of the errors below with a message a person can act
on; :class:`StatusInterceptor`, installed by the kit's server shell, ends the call with that error's
status code and message. An unexpected exception becomes ``INTERNAL`` and is logged with its
traceback; the caller never sees the exception's text. Servicers never call ``context.abort``.
A request whose bytes are not the message the method takes (truncated, or invalid UTF-8 in a
string) is ``INVALID_ARGUMENT`` before the servicer runs, with nothing logged: left to gRPC, its
deserializer's failure was ``UNKNOWN`` with a traceback in the log.
The HTTP front door maps the same errors through :attr:`ServiceError.code`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from subsecond.kit.interceptors import WrappingInterceptor

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error the caller is meant to read; subclasses fix the status code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request is wrong; the message names the field and what would be right."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    """The caller is known, but may not do this (its key lacks the scope)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    """A limit was reached (per tenant, or the service's capacity); retrying later may succeed.

    ``retry_after_seconds``, when given, reaches the caller as the trailing metadata
    ``retry-after-ms`` (whole milliseconds), so a client backs off by the service's estimate."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(ServiceError):
    """A backend this call needs cannot be reached now."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(ServiceError):
    """A backend answered with something it should not have (a failed model, a broken stream)."""

    code = grpc.StatusCode.INTERNAL


def from_downstream(error: grpc.aio.AioRpcError, what: str) -> ServiceError:
    """A failed call to another service as this service's error: the caller's deadline and an
    unreachable backend keep their codes; a refusal keeps its code and message; anything else is
    INTERNAL. ``what`` names the backend, e.g. ``"generation"``."""
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"deadline exceeded while waiting for {what}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"{what} unavailable: {error.details()}")
    for kind in (InvalidArgument, ResourceExhausted, Unauthenticated, PermissionDenied):
        if code == kind.code:
            return kind(error.details() or f"{what} refused the call")
    return Internal(f"{what} failed ({code.name}): {error.details()}")


Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]
Deserializer = Callable[[bytes], Any]


class _Undecodable:
    """Stands in for a request that did not parse; the wrapped handler refuses it (see _refused)."""

    def __init__(self, error: InvalidArgument) -> None:
        self.error = error


def _decoding(deserializer: Deserializer | None) -> Deserializer | None:
    """``deserializer`` (a message class's ``FromString``) returning an ``_Undecodable`` instead of raising."""
    if deserializer is None:
        return None
    kind = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = kind.full_name if kind is not None else "request message"

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as error:
            return _Undecodable(InvalidArgument(f"request: not a valid {name} ({len(data)} bytes): {error}"))

    return decode


def _refused(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise request.error


async def _end(error: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(error, ResourceExhausted) and error.retry_after_seconds is not None:
        retry_after_ms = str(max(1, round(error.retry_after_seconds * 1000)))
        await context.abort(error.code, error.message, trailing_metadata=(("retry-after-ms", retry_after_ms),))
    if isinstance(error, ServiceError):
        await context.abort(error.code, error.message)
    log.error("unexpected error", exc_info=error, extra={"method": method})
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; the service logged it")


def _unary(behavior: Behavior, method: str) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            _refused(request)
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _end(error, context, method)

    return call


def _stream(behavior: Behavior, method: str) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            _refused(request)
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _end(error, context, method)

    return call


class StatusInterceptor(WrappingInterceptor):
    """Ends every call that raised with the status its error names (see the module's docstring); a
    method's handler is wrapped once (kit.interceptors)."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return _mapped(handler, method)


def _mapped(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """``handler`` with its request decoded safely and its errors ended with their status."""
    if not handler.request_streaming:
        handler = handler._replace(  # type: ignore[attr-defined]
            request_deserializer=_decoding(handler.request_deserializer)
        )
    if handler.unary_unary is not None:
        return handler._replace(unary_unary=_unary(handler.unary_unary, method))  # type: ignore[attr-defined]
    if handler.stream_unary is not None:
        return handler._replace(stream_unary=_unary(handler.stream_unary, method))  # type: ignore[attr-defined]
    # A streaming handler is an async generator, or a coroutine that writes with ``context.write``.
    if handler.unary_stream is not None:
        wrap = _stream if inspect.isasyncgenfunction(handler.unary_stream) else _unary
        return handler._replace(unary_stream=wrap(handler.unary_stream, method))  # type: ignore[attr-defined]
    wrap = _stream if inspect.isasyncgenfunction(handler.stream_stream) else _unary
    return handler._replace(stream_stream=wrap(handler.stream_stream, method))  # type: ignore[attr-defined]
