"""Which services may call a service: the caller's identity checked before a servicer runs.

An inner service (the cache, generation, embedding) serves only the services that are meant to
call it: :class:`CallerInterceptor` accepts a call when the caller's name is in
``CallerSettings.allowed``. The name is, under mutual TLS, a subject alternative name of the
client certificate the handshake verified; without TLS (the local stack), the name in a service
token, ``<name>.<unix seconds>.<HMAC-SHA256 of name.seconds under the shared secret>``, sent as
the ``x-subsecond-service-token`` metadata by :func:`token_interceptors` on the caller's channels
and compared in constant time. A token is accepted for five minutes around its time, which bounds
the use of one read off the wire; the shared secret is read once at start-up.

A call with neither a certificate nor a valid token is ``UNAUTHENTICATED``; a call from a service
that is identified but not allowed is ``PERMISSION_DENIED``. Health checks and reflection are not
checked: probes and operators' tools reach them without an identity.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from subsecond.kit.errors import PermissionDenied, Unauthenticated
from subsecond.kit.interceptors import WrappingInterceptor, with_behavior
from subsecond.kit.settings import CallerSettings

TOKEN_METADATA = "x-subsecond-service-token"
TOKEN_VALID_SECONDS = 300

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


class ServiceToken:
    """Signs and verifies service tokens with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a service token secret has at least 16 bytes")
        self._secret = secret

    @classmethod
    def from_file(cls, path: Path) -> ServiceToken:
        return cls(path.read_bytes().strip())

    def _signature(self, name: str, seconds: int) -> str:
        return hmac.new(self._secret, f"{name}.{seconds}".encode(), hashlib.sha256).hexdigest()

    def sign(self, name: str, now: float | None = None) -> str:
        seconds = int(time.time() if now is None else now)
        return f"{name}.{seconds}.{self._signature(name, seconds)}"

    def verify(self, token: str, now: float | None = None) -> str | None:
        """The caller's name when the token is genuine and current, else None."""
        # A name may hold dots; the time and the signature never do.
        parts = token.rsplit(".", 2)
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
            return None
        name, seconds_text, signature = parts
        seconds = int(seconds_text)
        if abs((time.time() if now is None else now) - seconds) > TOKEN_VALID_SECONDS:
            return None
        if not hmac.compare_digest(signature.encode(), self._signature(name, seconds).encode()):
            return None
        return name


def _token(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == TOKEN_METADATA:
            return value if isinstance(value, str) else value.decode("ascii", "replace")
    return None


class CallerCheck:
    """Decides whether one call's caller is allowed (see the module's docstring)."""

    def __init__(self, allowed: Sequence[str], token: ServiceToken | None) -> None:
        self._allowed = frozenset(allowed)
        self._token = token

    def __call__(self, context: grpc.aio.ServicerContext) -> None:
        names = [name.decode() if isinstance(name, bytes) else name for name in context.peer_identities() or ()]
        if self._allowed.intersection(names):
            return
        presented = _token(context)
        signed = self._token.verify(presented) if self._token is not None and presented is not None else None
        if signed in self._allowed:
            return
        if names or signed is not None:
            raise PermissionDenied(f"caller {(signed or names[0])!r} may not call this service")
        raise Unauthenticated("only subsecond services may call this one: no client certificate or service token")


def _guarded(behavior: Behavior, check: CallerCheck) -> Behavior:
    """``behavior`` with ``check`` run first, keeping it an async generator if it was one."""
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            check(context)
            async for response in behavior(request, context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        check(context)
        return await behavior(request, context)

    return call


class CallerInterceptor(WrappingInterceptor):
    """Runs a :class:`CallerCheck` before every method of ``services`` (full gRPC service names).

    The server shell installs it after kit.errors' StatusInterceptor, which therefore wraps it and
    turns its refusals into status codes. The check runs on every call; the guarded handler is built
    once per method (kit.interceptors)."""

    def __init__(self, services: Sequence[str], check: CallerCheck) -> None:
        super().__init__()
        self._prefixes = tuple(f"/{name}/" for name in services)
        self._check = check

    def applies(self, method: str) -> bool:
        return method.startswith(self._prefixes)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return with_behavior(handler, lambda behavior: _guarded(behavior, self._check))


def caller_interceptor(settings: CallerSettings, services: Sequence[str]) -> CallerInterceptor | None:
    """The interceptor for a service with ``ALLOWED_CALLERS``, or None for one open to every caller."""
    if not settings.allowed:
        return None
    token = ServiceToken.from_file(settings.token_file) if settings.token_file is not None else None
    return CallerInterceptor(services, CallerCheck(settings.allowed, token))


class _TokenInterceptor:
    """Adds a fresh service token, signed as ``identity``, to every call of one kind. One class per call
    kind below: grpc.aio files an interceptor under the first kind it implements only, so a single class
    implementing all four would sign unary calls and leave streaming ones (generation's) without a token."""

    def __init__(self, identity: str, token: ServiceToken) -> None:
        self._identity = identity
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(TOKEN_METADATA, self._token.sign(self._identity))
        return details._replace(metadata=metadata)  # type: ignore[attr-defined,no-any-return]


class _UnaryUnaryToken(_TokenInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamToken(_TokenInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnaryToken(_TokenInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStreamToken(_TokenInterceptor, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def token_interceptors(settings: CallerSettings) -> list[grpc.aio.ClientInterceptor]:
    """What a channel of this service adds to its calls: its token when it has a shared secret."""
    if settings.token_file is None:
        return []
    token = ServiceToken.from_file(settings.token_file)
    kinds = (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
    return [kind(settings.identity, token) for kind in kinds]
