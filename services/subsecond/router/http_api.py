"""The OpenAI-compatible HTTP API, served by the router process on its own port (aiohttp).

``POST /v1/chat/completions`` and ``POST /v1/completions`` become the router's own
``GenerateRequest`` and are answered by the very path ``Router/Generate`` takes (keys, admission,
tenants, quotas, static routes, cache policy, coalescing): the servicer hands that path in as a
``FrontDoor``, so there is no second hop and no second copy of any rule. ``POST /v1/embeddings``
goes to the embedding service, ``GET /v1/models`` lists the tiers.

What OpenAI clients do not know about travels where they ignore it: the request body's optional
``subsecond`` object (cache policy, chunking, replay, task), the response headers
``x-request-id`` and ``x-subsecond-served-by``, and a ``subsecond`` object in the response (in a
stream, on its last chunk: the headers leave before anyone knows how the answer will be served).

Errors are the kit's domain errors, mapped here to an HTTP status and OpenAI's error shape
(``{"error": {"message", "type", "param", "code"}}``), a 429 with ``Retry-After``. A refusal is
known before the first byte of the answer: the first response is awaited before the status line
goes out, so a stream starts only when there is something to stream. An error after that ends the
stream with one ``data: {"error": ...}`` event. A client that disconnects cancels its request's
task (aiohttp's ``handler_cancellation``), which cancels the generation exactly as a cancelled
gRPC stream does.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import ssl
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np
from aiohttp import web

from subsecond.kit.errors import InvalidArgument, ResourceExhausted, ServiceError
from subsecond.kit.settings import TlsSettings
from subsecond.kit.tracing import server_span
from subsecond.router.admission import AUTO
from subsecond.router.auth import API_KEY_HEADER, GENERATE
from subsecond.router.metrics import HTTP_RESPONSES
from subsecond.router.settings import RouterSettings
from subsecond.router.sizing import estimate_tokens
from subsecond.v1 import embedding_pb2, router_pb2, types_pb2

log = logging.getLogger(__name__)

HTTP = "http"
# The same bound as a gRPC message (kit.server.MAX_MESSAGE_BYTES): a prompt is text.
MAX_BODY_BYTES = 4 * 1024 * 1024
REQUEST_ID_HEADER = "x-request-id"
SERVED_BY_HEADER = "x-subsecond-served-by"
# A caller's own request id is echoed back when it is a plain token, else a fresh one is made.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID = web.RequestKey("request_id", str)

_STATUS = {
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "NOT_FOUND": (404, "invalid_request_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
    "UNAVAILABLE": (503, "service_unavailable"),
}
_FINISH = {types_pb2.FINISH_REASON_STOP: "stop", types_pb2.FINISH_REASON_LENGTH: "length"}
_SERVED_BY = {
    types_pb2.SERVED_BY_EXACT: "exact",
    types_pb2.SERVED_BY_SEMANTIC: "semantic",
    types_pb2.SERVED_BY_GENERATED: "generated",
    types_pb2.SERVED_BY_STATIC: "static",
}
# The extras' values and the enum values (by name) they stand for; the first is the default.
_CACHE_MODES = {"use": "CACHE_MODE_USE", "bypass": "CACHE_MODE_BYPASS", "refresh": "CACHE_MODE_REFRESH"}
_CHUNKINGS = {"token": "CHUNKING_TOKEN", "sentence": "CHUNKING_SENTENCE"}
_REPLAYS = {"at_once": "REPLAY_AT_ONCE", "paced": "REPLAY_PACED"}
# OpenAI parameters that would change the answer and that subsecond does not implement: refused
# rather than ignored, unless they hold their neutral value.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "stop": (None, "", []),
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none"),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "response_format": (None, {"type": "text"}),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
}


class FrontDoor(Protocol):
    """The router's request path, as the servicer runs it for ``Router/Generate`` (``service.py``)."""

    def generate(
        self,
        metadata: Mapping[str, str],
        request: router_pb2.GenerateRequest,
        remaining_seconds: float | None,
        protocol: str,
    ) -> AsyncGenerator[router_pb2.GenerateResponse, None]: ...

    async def embed(self, metadata: Mapping[str, str], texts: list[str]) -> embedding_pb2.EmbedResponse: ...


class NotFound(ServiceError):
    """A model no tier answers to, over HTTP (the gRPC path refuses it in admission, INVALID_ARGUMENT)."""

    code = grpc.StatusCode.NOT_FOUND


@dataclass(frozen=True)
class _Parsed:
    request: router_pb2.GenerateRequest
    stream: bool


@dataclass(frozen=True)
class _Shape:
    """How one endpoint lays out its answer: ``object`` names, and a choice from text and finish."""

    whole_object: str
    chunk_object: str
    id_prefix: str
    choice: Callable[[str, str | None, bool], dict[str, Any]]


def _chat_choice(text: str, finish: str | None, delta: bool) -> dict[str, Any]:
    content = {"role": "assistant", "content": text}
    return {"index": 0, ("delta" if delta else "message"): content, "finish_reason": finish, "logprobs": None}


def _completion_choice(text: str, finish: str | None, delta: bool) -> dict[str, Any]:
    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}


CHAT = _Shape("chat.completion", "chat.completion.chunk", "chatcmpl-", _chat_choice)
COMPLETION = _Shape("text_completion", "text_completion", "cmpl-", _completion_choice)


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _status(error: ServiceError) -> tuple[int, dict[str, Any]]:
    """``error``'s HTTP status and OpenAI's JSON error for it; a 400 names the field its message starts with."""
    status, kind = _STATUS.get(error.code.name, (500, "server_error"))
    code = "model_not_found" if isinstance(error, NotFound) else error.code.name.lower()
    field, colon, _ = error.message.partition(":")
    param = field if status in (400, 404) and colon and " " not in field else None
    return status, error_body(error.message, kind, code, param)


def error_response(error: ServiceError, request_id: str) -> web.Response:
    """``error`` as an HTTP response (with ``Retry-After``, in whole seconds, on a 429)."""
    headers = {REQUEST_ID_HEADER: request_id}
    if isinstance(error, ResourceExhausted) and error.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_seconds)))
    status, body = _status(error)
    return web.json_response(body, status=status, headers=headers)


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidArgument(f"{name}: expected {names}, got {type(value).__name__}")
    return value


def _choice(extras: Mapping[str, Any], name: str, values: Mapping[str, str]) -> str:
    given = _field(extras, name, str, next(iter(values)))
    if given not in values:
        raise InvalidArgument(f"subsecond.{name}: {given!r} is not one of {', '.join(values)}")
    return values[given]


def _common(body: Mapping[str, Any], tiers: tuple[str, ...]) -> router_pb2.GenerateRequest:
    """The fields chat and text completions share, and subsecond's extras, as a GenerateRequest."""
    for name, neutral in _NEUTRAL.items():
        if body.get(name) not in neutral:
            raise InvalidArgument(f"{name}: not supported by subsecond (leave it unset)")
    model = _field(body, "model", str, "")
    if model and model != AUTO and model not in tiers:
        raise NotFound(f"model: {model!r} is not a tier of this router ({', '.join((*tiers, AUTO))})")
    max_tokens = _field(body, "max_completion_tokens", int, _field(body, "max_tokens", int, 0))
    if max_tokens < 0:
        raise InvalidArgument(f"max_tokens: {max_tokens} is negative")
    sampling = types_pb2.SamplingParams(
        # subsecond's default is greedy decoding (OpenAI's is 1.0): the same prompt then hits the same
        # cache entry whichever protocol asked it.
        temperature=_field(body, "temperature", (int, float), 0.0),
        top_p=_field(body, "top_p", (int, float), 0.0),
    )
    seed = _field(body, "seed", int)
    if seed is not None:
        if seed < 0:
            raise InvalidArgument(f"seed: {seed} is negative")
        sampling.seed = seed
    extras = _field(body, "subsecond", dict, {})
    unknown = set(extras) - {"cache", "max_age_seconds", "chunking", "replay", "task"}
    if unknown:
        raise InvalidArgument(f"subsecond: unknown fields {', '.join(sorted(unknown))}")
    max_age = _field(extras, "max_age_seconds", int, 0)
    if max_age < 0:
        raise InvalidArgument(f"subsecond.max_age_seconds: {max_age} is negative")
    return router_pb2.GenerateRequest(
        model=model,
        max_tokens=min(max_tokens, 2**32 - 1),
        sampling=sampling,
        cache=router_pb2.CachePolicy(mode=_choice(extras, "cache", _CACHE_MODES), max_age_seconds=max_age),
        chunking=_choice(extras, "chunking", _CHUNKINGS),
        replay=_choice(extras, "replay", _REPLAYS),
        task=_field(extras, "task", str, ""),
    )


def _content(message: Mapping[str, Any], i: int) -> str:
    """A message's text: a string, or a list of ``{"type": "text", "text": ...}`` parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) and part.get("type") == "text" for part in content):
        return "".join(str(part.get("text", "")) for part in content)
    raise InvalidArgument(f"messages[{i}].content: expected a string or a list of text parts")


def chat_request(body: Mapping[str, Any], tiers: tuple[str, ...]) -> _Parsed:
    request = _common(body, tiers)
    messages = _field(body, "messages", list, [])
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidArgument(f"messages[{i}]: expected an object")
        role = message.get("role")
        # OpenAI's newer name for the system role.
        request.messages.add(role="system" if role == "developer" else str(role), content=_content(message, i))
    return _Parsed(request, bool(_field(body, "stream", bool, False)))


def completion_request(body: Mapping[str, Any], tiers: tuple[str, ...]) -> _Parsed:
    request = _common(body, tiers)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidArgument("prompt: expected one string (a batch of prompts or token ids is not supported)")
    request.prompt = prompt
    return _Parsed(request, bool(_field(body, "stream", bool, False)))


def credentials(request: web.Request) -> dict[str, str]:
    """The caller's key as the router's metadata: ``x-api-key``, else ``Authorization: Bearer``."""
    key = request.headers.get(API_KEY_HEADER)
    if key is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return {API_KEY_HEADER: key} if key is not None else {}


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _extras(done: router_pb2.Completion) -> dict[str, Any]:
    extras: dict[str, Any] = {
        "served_by": _SERVED_BY.get(done.served_by, "unspecified"),
        "tier_reason": done.tier_reason,
        "coalesced": done.coalesced,
        "time_to_first_chunk_seconds": done.time_to_first_chunk_seconds,
        "total_seconds": done.total_seconds,
    }
    if done.served_by in (types_pb2.SERVED_BY_EXACT, types_pb2.SERVED_BY_SEMANTIC):
        extras |= {"similarity": done.similarity, "cache_age_seconds": done.cache_age_seconds}
    if done.static_route:
        extras["static_route"] = done.static_route
    return extras


def _usage(done: router_pb2.Completion) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def _event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class HttpApi:
    """The aiohttp application and its server: ``start`` binds, ``stop`` drains."""

    def __init__(self, settings: RouterSettings, door: FrontDoor) -> None:
        self._settings = settings
        self._door = door
        self._runner: web.AppRunner | None = None
        self._ready = False
        self.port = 0
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._errors])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self.app = app

    async def start(self, host: str, port: int) -> None:
        # handler_cancellation: a client that goes away cancels its handler, and so its generation.
        runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self._settings.server.shutdown_grace_seconds,
        )
        await runner.setup()
        tls = self._settings.server.tls
        # With PROCESSES > 1 every worker binds the port, as its gRPC server does (kit.workers).
        site = web.TCPSite(
            runner,
            host,
            port,
            ssl_context=ssl_context(tls) if tls.serves_tls else None,
            reuse_port=self._settings.server.processes > 1,
        )
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        self._ready = True
        log.info("serving http", extra={"http_port": self.port, "tls": tls.serves_tls})

    async def stop(self) -> None:
        """Not ready at once; requests in flight get the shutdown grace, then the port closes."""
        self._ready = False
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every request in a span continuing the caller's trace, every refusal in OpenAI's shape, every
        response counted by endpoint and status."""
        request_id = _request_id(request)
        request[REQUEST_ID] = request_id
        endpoint = request.match_info.route.resource.canonical if request.match_info.route.resource else "other"
        attributes = {"http.request.method": request.method, "http.route": endpoint, "request_id": request_id}
        with server_span(f"{request.method} {endpoint}", request.headers, attributes) as span:
            response = await self._handled(request, handler, request_id, endpoint)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
        HTTP_RESPONSES.labels(endpoint, str(response.status)).inc()
        return response

    async def _handled(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        request_id: str,
        endpoint: str,
    ) -> web.StreamResponse:
        """The handler's response, or its refusal in OpenAI's shape."""
        try:
            return await handler(request)
        except ServiceError as error:
            return error_response(error, request_id)
        except web.HTTPException as error:
            return web.json_response(
                error_body(error.reason, "invalid_request_error", str(error.status)),
                status=error.status,
                headers={REQUEST_ID_HEADER: request_id},
            )
        except Exception:
            log.exception("http request failed", extra={"request_id": request_id, "endpoint": endpoint})
            return web.json_response(
                error_body("internal error; the service logged it", "server_error", "internal"),
                status=500,
                headers={REQUEST_ID_HEADER: request_id},
            )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as error:
            raise InvalidArgument(f"body: not JSON ({error})") from None
        if not isinstance(body, dict):
            raise InvalidArgument("body: expected a JSON object")
        return body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat_request(await self._body(request), self._settings.tiers), CHAT)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        parsed = completion_request(await self._body(request), self._settings.tiers)
        return await self._answer(request, parsed, COMPLETION)

    async def _answer(self, request: web.Request, parsed: _Parsed, shape: _Shape) -> web.StreamResponse:
        request_id: str = request[REQUEST_ID]
        created = int(time.time())
        model = parsed.request.model or self._settings.default_tier
        responses = self._door.generate(credentials(request), parsed.request, None, HTTP)
        async with aclosing(responses):
            first = await anext(responses)  # a refusal raises here, before any byte is sent
            if not parsed.stream:
                texts, last = [first.text], first
                while not last.HasField("done"):
                    last = await anext(responses)
                    texts.append(last.text)
                extras = _extras(last.done)
                body = {
                    "id": shape.id_prefix + request_id,
                    "object": shape.whole_object,
                    "created": created,
                    "model": last.done.model or model,
                    "choices": [shape.choice("".join(texts), _FINISH.get(last.done.finish_reason, "stop"), False)],
                    "usage": _usage(last.done),
                    "subsecond": extras,
                }
                headers = {REQUEST_ID_HEADER: request_id, SERVED_BY_HEADER: extras["served_by"]}
                return web.json_response(body, headers=headers)
            stream = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",  # nginx (an ingress) passes each event on at once
                    REQUEST_ID_HEADER: request_id,
                }
            )
            await stream.prepare(request)
            response = first
            try:
                while True:
                    chunk: dict[str, Any] = {
                        "id": shape.id_prefix + request_id,
                        "object": shape.chunk_object,
                        "created": created,
                        "model": model,
                    }
                    if response.HasField("done"):
                        finish = _FINISH.get(response.done.finish_reason, "stop")
                        chunk |= {
                            "model": response.done.model or model,
                            "choices": [shape.choice(response.text, finish, True)],
                            "usage": _usage(response.done),
                            "subsecond": _extras(response.done),
                        }
                        await stream.write(_event(chunk))
                        break
                    chunk["choices"] = [shape.choice(response.text, None, True)]
                    await stream.write(_event(chunk))
                    response = await anext(responses)
            except ServiceError as error:
                await stream.write(_event(_status(error)[1]))
            await stream.write(b"data: [DONE]\n\n")
            await stream.write_eof()
            return stream

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
            raise InvalidArgument("input: a string or a non-empty list of strings (token ids are not supported)")
        encoding = _field(body, "encoding_format", str, "float")
        if encoding not in ("float", "base64"):
            raise InvalidArgument(f"encoding_format: {encoding!r} is not float or base64")
        embedded = await self._door.embed(credentials(request), texts)
        dimensions = _field(body, "dimensions", int)
        if dimensions is not None and dimensions != embedded.dimensions:
            raise InvalidArgument(f"dimensions: this model has {embedded.dimensions}, not {dimensions}")

        def encoded(values: Any) -> Any:
            if encoding == "float":
                return list(values)
            return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()

        tokens = sum(estimate_tokens(text) for text in texts)
        return web.json_response(
            {
                "object": "list",
                "model": embedded.model,
                "data": [
                    {"object": "embedding", "index": i, "embedding": encoded(embedding.values)}
                    for i, embedding in enumerate(embedded.embeddings)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers={REQUEST_ID_HEADER: request[REQUEST_ID]},
        )

    async def _models(self, request: web.Request) -> web.Response:
        self._settings.keys.authenticate(credentials(request), GENERATE)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": tier, "object": "model", "created": 0, "owned_by": "subsecond"}
                    for tier in (*self._settings.tiers, AUTO)
                ],
            },
            headers={REQUEST_ID_HEADER: request[REQUEST_ID]},
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ready" if self._ready else "draining"}, status=200 if self._ready else 503)


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The router's certificate for HTTPS; with a client CA, client certificates are required, as on
    the gRPC port. Read once at start (a rotated certificate is served after the next restart)."""
    assert tls.cert_file is not None and tls.key_file is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
