"""Calls to the running stack shared by the integration tests: stream a Generate call to its end,
read a service's metric."""

import asyncio
import ssl
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from subsecond.v1 import router_pb2, router_pb2_grpc
from subsecond_tools.stack.runner import Stack


@dataclass
class Answer:
    text: str
    done: router_pb2.Completion
    chunks: int


async def call(
    router: router_pb2_grpc.RouterStub, request: router_pb2.GenerateRequest, key: str | None = None
) -> Answer:
    metadata = [("x-api-key", key)] if key else None
    text, chunks = [], 0
    async for response in router.Generate(request, timeout=120, metadata=metadata):
        text.append(response.text)
        chunks += 1
        if response.HasField("done"):
            return Answer("".join(text), response.done, chunks)
    raise AssertionError("the stream ended without a final message")


def metric(stack: Stack, service: str, name: str, **labels: str) -> float:
    port = getattr(stack.config.ports, f"{service}_metrics")
    return metric_at(port, name, context=stack.metrics_ssl_context(), **labels)


def metric_at(port: int, name: str, *, context: ssl.SSLContext | None = None, **labels: str) -> float:
    """The sum of the samples of ``name`` with ``labels`` on the /metrics page at ``port`` (over
    HTTPS, trusting ``context``, when given: a service of the TLS stack; Triton's is plain HTTP)."""
    url = f"{'https' if context else 'http'}://127.0.0.1:{port}/metrics"
    body = urllib.request.urlopen(url, timeout=5, context=context).read().decode()
    total = 0.0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def settle_store() -> None:
    """Write-through runs after the last chunk; give it a moment before looking."""
    await asyncio.sleep(0.5)
