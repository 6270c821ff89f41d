"""What the kit's server interceptors share: each wraps a method's handler once, not on every call.

gRPC asks a server interceptor for the handler of every call. Wrapping it anew each time costs
microseconds per call for nothing: the wrapping is kept with the handler it wraps and used again
while the continuation returns that same handler (errors' status mapping, the caller check and the
server span all run on every call; only building their wrappers does not).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

SLOTS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def behavior_slot(handler: grpc.RpcMethodHandler) -> str:
    """The name of the one behaviour a method handler has (``unary_unary``, ...)."""
    return next(name for name in SLOTS if getattr(handler, name) is not None)


def with_behavior(handler: grpc.RpcMethodHandler, wrap: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour replaced by ``wrap(behaviour)``."""
    slot = behavior_slot(handler)
    return handler._replace(**{slot: wrap(getattr(handler, slot))})  # type: ignore[attr-defined,no-any-return]


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that wraps the handlers of the methods it ``applies`` to with ``wrap``, once each."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def applies(self, method: str) -> bool:
        return True

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.applies(method):
            return handler
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self.wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
