"""Calls to the running stack shared by the integration tests: stream a Generate call to its end,
read a service's metric, wait for the router's write-throughs."""

import asyncio
import ssl
import time
import urllib.request
from collections import Counter
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


STORES = "subsecond_router_cache_stores_total"
RESULTS = ("stored", "skipped", "failed")
QUIET = 1.0  # seconds without another write-through before the count is taken as complete


def store_counts(stack: Stack) -> dict[str, float]:
    """The router's write-throughs so far, by result."""
    return {result: metric(stack, "router", STORES, result=result) for result in RESULTS}


async def write_throughs(
    stack: Stack, before: dict[str, float], count: int = 1, seconds: float = 30.0, result: str | None = None
) -> Counter[str]:
    """Waits until the router has finished at least ``count`` write-throughs since ``before`` (its
    ``store_counts``), of ``result`` when given, and then none for QUIET seconds, and returns them by
    result. A store runs after the last chunk and waits for the prompt's embedding, so no fixed pause is
    long enough on a loaded machine; and an earlier test's store may land in the same window, so callers
    check ``>=`` and name the result they wait for (a late "skipped" of an earlier test once ended the
    wait before this test's store had finished)."""
    deadline = time.monotonic() + seconds
    moved: Counter[str] = Counter()
    last_change = time.monotonic()
    while True:
        now = store_counts(stack)
        counted = Counter({name: int(now[name] - before[name]) for name in RESULTS})
        if counted != moved:
            moved, last_change = counted, time.monotonic()
        finished = moved[result] if result else sum(moved.values())
        if finished >= count and time.monotonic() - last_change >= QUIET:
            return moved
        if time.monotonic() > deadline:
            what = f"{result} " if result else ""
            raise AssertionError(f"{finished} of {count} {what}write-throughs in {seconds:.0f} s: {dict(moved)}")
        await asyncio.sleep(0.05)
