"""How the kit's server wrappers reach a method: each wraps a method's handler once, when the method is
first called, not on every call, and without gRPC's interceptor chain.

Errors' status mapping, the caller check and the server span are wrappers of a method's behaviour
(:class:`WrappingInterceptor`: ``applies`` to a method, ``wrap`` its handler). The server shell does not
install them as gRPC interceptors: grpc.aio runs a server's interceptors on every call, a coroutine
each awaited in a chain before the handler is found, which cost a bare grpc.aio server about 80 us of
CPU and 0.2 ms of latency a call here (the router's README, "Where an exact hit's time goes"). Instead
the servicers are registered through a :class:`WrappingRegistry`, whose :class:`WrappedHandlers` hand
gRPC each method's handler already wrapped, built once and used again while the servicer's handler for
the method stays the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


class WrappingInterceptor:
    """Wraps the handlers of the methods it ``applies`` to with ``wrap`` (named for the interceptor it
    does the work of; the shell applies it through :class:`WrappedHandlers`)."""

    def applies(self, method: str) -> bool:
        return True

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class WrappedHandlers(grpc.GenericRpcHandler):
    """``handlers``' method handlers wrapped by ``wrappers``, the first outermost (as interceptors nest).
    A method's wrapping is built on its first call and kept with the handler it wraps; a method the
    servicer does not serve is not remembered (so unknown names sent by a client cannot grow it)."""

    def __init__(self, handlers: grpc.GenericRpcHandler, wrappers: Sequence[WrappingInterceptor]) -> None:
        self._handlers = handlers
        self._wrappers = wrappers
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._handlers.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = handler
        for wrapper in reversed(self._wrappers):
            if wrapper.applies(method):
                wrapped = wrapper.wrap(wrapped, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class WrappingRegistry:
    """What servicers are registered on in place of the server: their handlers reach it wrapped.

    Registered-method handlers (the generated ``add_*_to_server`` passes both kinds) are not passed on:
    grpc.aio does not use them (its ``add_registered_method_handlers`` does nothing), and were a later
    grpc.aio to look methods up there first, those would bypass the wrapping (the status mapping, the
    caller check). The generic handlers serve every method."""

    def __init__(self, server: grpc.aio.Server, wrappers: Sequence[WrappingInterceptor]) -> None:
        self._server = server
        self._wrappers = wrappers

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([WrappedHandlers(h, self._wrappers) for h in generic_rpc_handlers])

    def add_registered_method_handlers(self, service_name: str, method_handlers: Mapping[str, Any]) -> None:
        """Not passed on (see the class)."""
