"""The router's OpenAI-compatible HTTP API on the real stack, over HTTPS with the router's certificate
as `subsecond up` serves it: `curl -N` reading server-sent events, OpenAI's Python client (sync and
async, streamed and not), and one prompt asked over HTTP then over gRPC answered from the one cache
entry the first wrote."""

import asyncio
import json
import ssl
import subprocess
import uuid
from typing import Any

import openai
import pytest
from router_calls import call, store_counts, write_throughs

from subsecond.v1 import router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.stack.runner import Stack

pytestmark = pytest.mark.stack

KEY = "key-blue"  # tenant "blue" (stack_keys.API_KEYS)
SYSTEM = "Answer in one short sentence."


def base_url(stack: Stack) -> str:
    scheme = "https" if stack.ca_file else "http"
    return f"{scheme}://127.0.0.1:{stack.config.ports.router_http}/v1"


def trust(stack: Stack) -> dict[str, Any]:
    """What OpenAI's clients need to trust the stack's CA (nothing for a plaintext stack)."""
    return {"verify": ssl.create_default_context(cafile=str(stack.ca_file))} if stack.ca_file else {}


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


async def test_curl_streams_server_sent_events(stack: Stack) -> None:
    body = {"model": "small", "stream": True, "max_tokens": 32, "messages": messages("Name one planet.")}
    argv = [
        "curl", "-sS", "-N", "--max-time", "120", base_url(stack) + "/chat/completions",
        "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {KEY}", "-d", json.dumps(body),
        *(["--cacert", str(stack.ca_file)] if stack.ca_file else []),
    ]  # fmt: skip
    result = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=130, check=True)
    events = [line.removeprefix("data: ") for line in result.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(chunk["choices"][0]["delta"]["content"] for chunk in chunks)
    assert text.strip()
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] in ("stop", "length")
    assert last["usage"]["completion_tokens"] > 0
    assert last["subsecond"]["served_by"] in ("generated", "exact", "semantic")


async def test_the_openai_clients_and_grpc_share_one_cache_entry(
    stack: Stack, router: router_pb2_grpc.RouterStub
) -> None:
    prompt = f"In one word, what colour is the sky? ({uuid.uuid4().hex[:8]})"

    def ask_sync() -> openai.types.chat.ChatCompletion:
        http = openai.DefaultHttpx2Client(**trust(stack))
        with openai.OpenAI(base_url=base_url(stack), api_key=KEY, max_retries=0, http_client=http) as client:
            return client.chat.completions.create(model="small", messages=messages(prompt), max_tokens=32)

    stores = store_counts(stack)
    first = await asyncio.to_thread(ask_sync)
    assert first.model_extra is not None and first.model_extra["subsecond"]["served_by"] == "generated"
    assert first.usage is not None and first.usage.completion_tokens > 0
    stored = (await write_throughs(stack, stores))["stored"]  # waited for even when skipped: no store left behind
    if first.choices[0].finish_reason != "stop":
        pytest.skip("the model ran out of tokens: a truncated answer is never cached")
    assert stored >= 1

    http = openai.DefaultAsyncHttpx2Client(**trust(stack))
    async with openai.AsyncOpenAI(base_url=base_url(stack), api_key=KEY, max_retries=0, http_client=http) as client:
        again = await client.chat.completions.with_raw_response.create(
            model="small", messages=messages(prompt), max_tokens=32
        )
        assert again.headers["x-subsecond-served-by"] == "exact"
        assert again.parse().choices[0].message.content == first.choices[0].message.content
        stream = await client.chat.completions.create(
            model="small", messages=messages(prompt), max_tokens=32, stream=True
        )
        streamed = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == first.choices[0].message.content

    request = router_pb2.GenerateRequest(model="small", max_tokens=32)
    for message in messages(prompt):
        request.messages.add(role=message["role"], content=message["content"])
    over_grpc = await call(router, request, key=KEY)
    assert over_grpc.done.served_by == types_pb2.SERVED_BY_EXACT
    assert over_grpc.text == first.choices[0].message.content
