"""The Router servicer: translates between gRPC and the request path, nothing more.

Every RPC first authenticates its caller for the scope it needs (``auth.py``), before it reads
the request; then a call's metadata and deadline become the admitted request and a ``Deadline``; the answer
(``pipeline.py``) is streamed back (``streaming.py``). Errors are raised as the kit's domain
errors and the kit's server shell turns them into the call's status; here they are only counted
by status code. ``definition`` wires the collaborators: the cache client, generation (which
writes through with the cache client) and the pipeline over both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace

import grpc
from prometheus_client import Counter

from subsecond.kit import tracing
from subsecond.kit.channels import open_channel
from subsecond.kit.errors import InvalidArgument, ServiceError, from_downstream
from subsecond.kit.prompt_identity import Turn
from subsecond.kit.server import ServiceDefinition
from subsecond.kit.tracing import span
from subsecond.router import admin
from subsecond.router.admission import Admitted, admit
from subsecond.router.auth import ADMIN, GENERATE, WORKFLOW
from subsecond.router.cache_client import CacheClient
from subsecond.router.context import Deadline, Tasks
from subsecond.router.generating import Generation
from subsecond.router.http_api import HttpApi
from subsecond.router.metrics import IN_FLIGHT, PROTOCOL_REQUESTS, REQUESTS, WORKFLOW_DURATION, WORKFLOWS, child
from subsecond.router.pipeline import Answerer
from subsecond.router.quotas import Quotas
from subsecond.router.settings import RouterSettings
from subsecond.router.streaming import respond
from subsecond.router.workflow import Step, WorkflowError, plan_workflow, run_workflow
from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)

CACHE_SERVICE = cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name
EMBEDDER_SERVICE = embedding_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
GENERATOR_SERVICE = generation_pb2.DESCRIPTOR.services_by_name["Generator"].full_name


class _Counted:
    """Counts the call in each of ``series`` (a counter, the labels before the status code) under
    the status code it ends with: one context for both of Generate's counters. A class, not a
    ``contextlib.contextmanager`` generator: about 1 us a call against 4.5 us here."""

    __slots__ = ("_series",)

    def __init__(self, *series: tuple[Counter, tuple[str, ...]]) -> None:
        self._series = series

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        if kind is None or not isinstance(error, Exception | asyncio.CancelledError):
            code = grpc.StatusCode.OK  # finished, or closed by its reader (GeneratorExit)
        elif isinstance(error, ServiceError):
            code = error.code
        elif isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        else:
            code = grpc.StatusCode.INTERNAL
        for calls, labels in self._series:
            child(calls, *labels, code.name).inc()


_NO_SPAN = nullcontext()


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


class RouterService(router_pb2_grpc.RouterServicer):
    def __init__(
        self,
        settings: RouterSettings,
        answerer: Answerer,
        cache: CacheClient,
        quotas: Quotas,
        embedder: embedding_pb2_grpc.EmbedderStub,
    ) -> None:
        self._settings = settings
        self._answerer = answerer
        self._cache = cache
        self._quotas = quotas
        self._embedder = embedder
        # Whether a call's admission gets a span, decided once, when the router is built, as its channels
        # decide theirs (kit.tracing): asking on every call looks an OpenTelemetry variable up in
        # os.environ, about 2 % of a near-cache hit's own path.
        self._spans = tracing.recording()

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        async for response in self.generate(_metadata(context), request, context.time_remaining(), "grpc"):
            yield response

    async def generate(
        self,
        metadata: Mapping[str, str],
        request: router_pb2.GenerateRequest,
        remaining_seconds: float | None,
        protocol: str,
    ) -> AsyncGenerator[router_pb2.GenerateResponse, None]:
        """Router/Generate's path, for either protocol (the HTTP API hands its requests in here)."""
        started = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            with _Counted((REQUESTS, ()), (PROTOCOL_REQUESTS, (protocol,))):
                with span("admission") if self._spans else _NO_SPAN:
                    caller = self._settings.keys.authenticate(metadata, GENERATE)
                    admitted = admit(request, caller.tenant, self._settings)
                    await self._quotas.admit(caller.tenant)
                deadline = Deadline.after(remaining_seconds, self._settings.default_deadline_seconds)
                async for response in self._respond(admitted, deadline, started):
                    yield response
        finally:
            IN_FLIGHT.dec()

    async def embed(self, metadata: Mapping[str, str], texts: list[str]) -> embedding_pb2.EmbedResponse:
        """The HTTP API's embeddings: the caller's key and request quota, then the embedding service
        (which bounds the texts' number and length, INVALID_ARGUMENT), under the tenant's name."""
        caller = self._settings.keys.authenticate(metadata, GENERATE)
        await self._quotas.admit(caller.tenant)
        request = embedding_pb2.EmbedRequest(texts=texts, tenant=caller.tenant)
        try:
            return await self._embedder.Embed(request, timeout=self._settings.default_deadline_seconds)
        except grpc.aio.AioRpcError as error:
            raise from_downstream(error, "embedding") from error

    async def RunWorkflow(
        self, request: router_pb2.WorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.WorkflowEvent]:
        started = time.perf_counter()
        with _Counted((WORKFLOWS, ())):
            caller = self._settings.keys.authenticate(_metadata(context), WORKFLOW)
            plan = plan_workflow(
                request,
                max_steps=self._settings.workflow_max_steps,
                max_prompt_chars=self._settings.max_prompt_chars,
                max_input_chars=self._settings.workflow_max_input_chars,
            )
            steps = {step.id: self._admit_step(step, request.chunking, caller.tenant) for step in plan.steps}
            await self._quotas.admit(caller.tenant, len(steps))  # each step is a request
            deadline = self._deadline(context)

            def run_step(step: Step, prompt: str) -> AsyncIterator[router_pb2.GenerateResponse]:
                admitted = replace(steps[step.id], turns=(Turn("user", prompt),))
                return self._respond(admitted, deadline, time.perf_counter())

            async for event in run_workflow(plan, run_step):
                yield event
            WORKFLOW_DURATION.observe(time.perf_counter() - started)

    async def ListStaticRoutes(
        self, request: router_pb2.ListStaticRoutesRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListStaticRoutesResponse:
        self._settings.keys.authenticate(_metadata(context), GENERATE)
        return router_pb2.ListStaticRoutesResponse(
            routes=[
                router_pb2.StaticRoute(
                    name=rule.name,
                    regex=rule.regex.pattern if rule.regex else "",
                    task=rule.task,
                    answer=rule.answer_label,
                )
                for rule in self._settings.static_routes
            ]
        )

    async def InvalidateCache(
        self, request: router_pb2.InvalidateCacheRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.InvalidateCacheResponse:
        self._settings.keys.authenticate(_metadata(context), ADMIN)
        return await admin.invalidate(request, self._settings, self._cache, self._deadline(context))

    async def CacheStats(
        self, request: router_pb2.CacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.CacheStatsResponse:
        self._settings.keys.authenticate(_metadata(context), ADMIN)
        return await admin.stats(request, self._settings, self._cache, self._deadline(context))

    def _respond(
        self, request: Admitted, deadline: Deadline, started: float
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        return respond(self._answerer.answer(request, deadline), request.chunking, started)

    def _deadline(self, context: grpc.aio.ServicerContext) -> Deadline:
        return Deadline.after(context.time_remaining(), self._settings.default_deadline_seconds)

    def _admit_step(self, step: Step, chunking: router_pb2.Chunking, tenant: str) -> Admitted:
        """The step's request admitted like a Generate call's (its prompt still a template), with the
        workflow's chunking unless it sets its own; a bad field is the workflow's error, naming the step."""
        request = router_pb2.GenerateRequest()
        request.CopyFrom(step.spec.request)
        request.chunking = request.chunking or chunking
        try:
            return admit(request, tenant, self._settings)
        except InvalidArgument as error:
            raise WorkflowError(f"step {step.id}: {error.message}") from None


@dataclass
class Router:
    """The router's parts as the server shell runs them, and its HTTP API (None when ``HTTP_PORT`` is unset)."""

    definition: ServiceDefinition
    http: HttpApi | None


def definition(settings: RouterSettings) -> ServiceDefinition:
    return wire(settings).definition


def wire(settings: RouterSettings) -> Router:
    # The router calls as itself: its certificate (mutual TLS) or its service token, when configured.
    cache_channel = open_channel(settings.cache_url, [CACHE_SERVICE], settings.server)
    generation_channel = open_channel(settings.generation_url, [GENERATOR_SERVICE], settings.server)
    embedding_channel = open_channel(settings.embedding_url, [EMBEDDER_SERVICE], settings.server)
    tasks = Tasks()
    anonymous = settings.keys.anonymous
    quotas = Quotas(settings.quotas, settings.keys.tenants | ({anonymous.tenant} if anonymous else set()))
    cache = CacheClient(cache_pb2_grpc.CacheStub(cache_channel), settings, tasks)
    generation = Generation(
        generation_pb2_grpc.GeneratorStub(generation_channel), cache, tasks, settings.generation_limits, quotas
    )
    embedder = embedding_pb2_grpc.EmbedderStub(embedding_channel)
    service = RouterService(settings, Answerer(settings, cache, generation), cache, quotas, embedder)
    http = HttpApi(settings, service) if settings.http_port is not None else None

    async def warm_up() -> None:
        if http is not None and settings.http_port is not None:
            await http.start(settings.server.host, settings.http_port)

    async def close() -> None:
        """After the gRPC server drained: the HTTP API drains, write-throughs finish, the channels close."""
        if http is not None:
            await http.stop()
        await tasks.drain(settings.server.shutdown_grace_seconds)
        await cache_channel.close()
        await generation_channel.close()
        await embedding_channel.close()
        await quotas.close()

    shell = ServiceDefinition.for_servicer(
        router_pb2.DESCRIPTOR.services_by_name["Router"],
        router_pb2_grpc.add_RouterServicer_to_server,
        service,
        warm_up=warm_up,
        close=close,
    )
    return Router(shell, http)
