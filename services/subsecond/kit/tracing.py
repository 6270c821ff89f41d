"""Traces across the services: W3C trace context in gRPC metadata (and the router's HTTP headers),
a span per call on each side of every hop, and the trace id in the JSON logs.

Every server the kit's shell starts runs :class:`ServerTracing`: a call's span continues the caller's
trace (``traceparent``/``tracestate`` in its metadata) or starts one. Every channel the kit opens is a
:class:`TracedChannel`: a client span per call, ended when the call is, whose context goes out in the
call's metadata, so the callee's span is its child. The router's HTTP API continues a trace from the
request's own headers (``router/http_api.py``).

Export is off by default. Without an SDK tracer provider no span is made at all (the API's no-op
spans still cost microseconds each, which an exact hit of a few milliseconds would notice): an
incoming trace context is only made current, so that it still goes on to the next hop and into the
logs, and a call without one costs a dictionary lookup. ``configure_tracing`` installs the SDK with an
OTLP exporter when the standard variables ask for one (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the exporter reads the other ``OTEL_EXPORTER_OTLP_*`` itself;
``OTEL_SDK_DISABLED=true`` keeps it off; ``OTEL_SERVICE_NAME`` names the service, by default
``subsecond-<service>``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeAlias

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from subsecond.kit.interceptors import WrappingInterceptor, with_behavior

log = logging.getLogger(__name__)

tracer = trace.get_tracer("subsecond")
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def export_requested(environ: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for spans to be exported."""
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return not disabled and any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure_tracing(service: str, environ: Mapping[str, str]) -> None:
    """The process's tracing: the SDK and its OTLP exporter when ``environ`` asks for export (else
    the API's no-op), and the current trace and span ids on every log record."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_add_trace_ids)
    if not export_requested(environ):
        return
    # Imported only when exporting: the SDK and the exporter cost start-up time a no-op never needs.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = environ.get("OTEL_SERVICE_NAME", "").strip() or f"subsecond-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("exporting traces", extra={"otel_service_name": name})


def _add_trace_ids(record: logging.LogRecord) -> bool:
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        record.trace_id = format(span_context.trace_id, "032x")
        record.span_id = format(span_context.span_id, "016x")
    return True


TRACEPARENT = "traceparent"


def recording() -> bool:
    """Whether spans are made: an SDK tracer provider was set (``configure_tracing``, or a test's)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def span(name: str) -> AbstractContextManager[object]:
    """An internal span of the current trace, while spans are recorded."""
    return tracer.start_as_current_span(name) if recording() else nullcontext()


def _server_start(
    name: str, carrier: Mapping[str, str], attributes: Mapping[str, str]
) -> tuple[trace.Span | None, otel_context.Context | None]:
    """A received call's span (None while spans are not recorded) and the context to run the call in:
    its span's, continuing the trace of the caller's ``carrier``, or only the caller's trace while
    spans are not recorded (None when there is nothing to make current)."""
    if recording():
        parent = propagate.extract(carrier)
        started = tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes)
        return started, trace.set_span_in_context(started, parent)
    if TRACEPARENT in carrier:
        return None, propagate.extract(carrier)
    return None, None


def _failed(started: trace.Span | None, error: Exception) -> None:
    """``error`` on the span, as the SDK's own context managers record it (GeneratorExit and
    CancelledError are no Exception: a call the client cancelled keeps an unset status, as
    OpenTelemetry's gRPC conventions have CANCELLED on a server)."""
    if started is not None:
        started.record_exception(error)
        started.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))


@contextmanager
def server_span(name: str, carrier: Mapping[str, str], attributes: Mapping[str, str]) -> Iterator[trace.Span | None]:
    """The span of a call received (None while spans are not recorded), continuing the trace of the
    caller's ``carrier`` (its metadata or headers) when it sent one. Only for code that runs in one
    context throughout (a coroutine): a streamed call's span is :func:`_traced_stream`'s."""
    started, current = _server_start(name, carrier, attributes)
    if current is None:
        yield None
        return
    token = otel_context.attach(current)
    try:
        yield started
    except Exception as error:
        _failed(started, error)
        raise
    finally:
        otel_context.detach(token)
        if started is not None:
            started.end()


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def _traced_stream(behavior: Behavior, name: str, attributes: Mapping[str, str]) -> Behavior:
    """The streaming ``behavior`` with its call's context made current around each of its steps only,
    never across a yield: gRPC may close a stream's generator from another task (a client that
    cancelled while the handler waited at a yield), whose context never had it attached, and
    OpenTelemetry then fails to detach it. The span, when there is one, ends with the stream."""

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started, current = _server_start(name, _metadata(context), attributes)
        responses = behavior(request, context)
        if current is None:
            async for response in responses:
                yield response
            return
        try:
            while True:
                token = otel_context.attach(current)
                try:
                    response = await anext(responses)
                except StopAsyncIteration:
                    return
                except Exception as error:
                    _failed(started, error)
                    raise
                finally:
                    otel_context.detach(token)
                yield response
        finally:
            token = otel_context.attach(current)
            try:
                await responses.aclose()  # its own cleanup, in its context, when it was left at a yield
            finally:
                otel_context.detach(token)
                if started is not None:
                    started.end()

    return stream


def _traced(behavior: Behavior, method: str) -> Behavior:
    """``behavior`` in a server span continuing the trace of the call's metadata."""
    attributes = _rpc_attributes(method)
    name = method.lstrip("/")
    if inspect.isasyncgenfunction(behavior):
        return _traced_stream(behavior, name, attributes)

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with server_span(name, _metadata(context), attributes):
            return await behavior(request, context)

    return call


class ServerTracing(WrappingInterceptor):
    """A server span around every call (installed first, so that it also covers the status mapping)."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return with_behavior(handler, lambda behavior: _traced(behavior, method))


MetadataLike: TypeAlias = grpc.aio.Metadata | Sequence[tuple[str, str | bytes]] | None


def _with_context(metadata: MetadataLike, current: otel_context.Context | None = None) -> grpc.aio.Metadata:
    """``metadata`` with the trace context ``current`` (by default the current one) added."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=current)
    sent = grpc.aio.Metadata(*(metadata or ()))
    for key, value in carrier.items():
        sent.add(key, value)
    return sent


class _TracedCalls:
    """A method's calls, each in a client span ending with it while spans are recorded (and were when
    its channel was opened: ``spans``), its context in the call's metadata; else with the current trace
    context only, if there is one."""

    def __init__(self, method: str, calls: Callable[..., Any], spans: bool) -> None:
        self._name = method.lstrip("/")
        self._attributes = _rpc_attributes(method)
        self._calls = calls
        self._spans = spans

    def __call__(self, request: Any, *, metadata: MetadataLike = None, **options: Any) -> Any:
        if not (self._spans and recording()):
            if trace.get_current_span().get_span_context().is_valid:
                metadata = _with_context(metadata)
            return self._calls(request, metadata=metadata, **options)
        client = tracer.start_span(self._name, kind=trace.SpanKind.CLIENT, attributes=self._attributes)
        try:
            call = self._calls(request, metadata=_with_context(metadata, trace.set_span_in_context(client)), **options)
        except BaseException:
            client.end()
            raise
        call.add_done_callback(lambda _: client.end())
        return call


class TracedChannel(grpc.aio.Channel):
    """``channel`` with its calls traced (:class:`_TracedCalls`). Not client interceptors: grpc.aio runs
    an intercepted call through a call object and task more, which cost every call tens of
    microseconds even while no span is recorded (the router README's "Traces" has the figure). Whether
    its calls may make spans is decided when it is opened (``recording()`` reads the environment while
    no SDK provider is set, microseconds a call): the services set theirs (``configure_tracing``) before
    they open a channel. A call that makes no span costs a context lookup, and a trace to carry its
    injection."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._spans = recording()

    async def __aenter__(self) -> TracedChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.close()

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TracedCalls(method, self._channel.unary_unary(method, *args, **kwargs), self._spans)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TracedCalls(method, self._channel.unary_stream(method, *args, **kwargs), self._spans)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TracedCalls(method, self._channel.stream_unary(method, *args, **kwargs), self._spans)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TracedCalls(method, self._channel.stream_stream(method, *args, **kwargs), self._spans)
