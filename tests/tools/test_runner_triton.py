"""The stack runner's Triton: the real tritonserver with the repository's models, started and stopped as
`subsecond up` does. It stops within 5 s of SIGTERM, even with a generation in flight, and no shared-memory
region of its Python backend outlives it, even when it (or the runner) was killed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2_grpc

from subsecond.generation.entry_model import EntryModel
from subsecond.kit.prompt_identity import Sampling
from subsecond_tools.stack.runner import Ports, Stack, StackConfig
from subsecond_tools.stack.triton import SHM_DIR

pytestmark = pytest.mark.stack

SIGTERM_BOUND_SECONDS = 5.0


def triton_stack(run_dir: Path) -> Stack:
    return Stack(StackConfig(ports=Ports.free(), run_dir=run_dir))


def shm_prefix(stack: Stack) -> str:
    """The prefix the runner gave this Triton's regions (what it records in its run_dir)."""
    return (stack.config.run_dir / "triton-shm-prefix").read_text().strip()


def regions(prefix: str) -> list[str]:
    return sorted(path.name for path in SHM_DIR.glob(f"{prefix}*"))


async def started(stack: Stack) -> str:
    stack.config.run_dir.mkdir(parents=True, exist_ok=True)
    stack.start_triton()
    await stack.wait_triton()
    prefix = shm_prefix(stack)
    assert regions(prefix), "a running Triton's Python backend holds regions under its prefix"
    return prefix


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    running = triton_stack(tmp_path / "run")
    yield running
    await running.stop()


async def test_sigterm_stops_triton_within_seconds_with_a_generation_in_flight(stack: Stack) -> None:
    prefix = await started(stack)
    async with grpc.aio.insecure_channel(stack.address("triton_grpc")) as channel:
        triton = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        # Raw text (no chat template needed here): a generation far longer than the test.
        request = EntryModel(name="smollm2", batched=True, cumulative=False).request("Tell a story.", 1900, Sampling())

        async def one_request() -> AsyncIterator[object]:
            yield request

        call = triton.ModelStreamInfer(one_request())
        await call.read()  # the first token: the generation is running

        stopping = time.monotonic()
        code = await asyncio.to_thread(stack.stop_process, "triton")
        seconds = time.monotonic() - stopping
        call.cancel()

    assert code != -signal.SIGKILL, f"the runner had to kill Triton after {seconds:.1f} s"
    assert seconds < SIGTERM_BOUND_SECONDS
    assert regions(prefix) == []


async def test_regions_a_killed_triton_left_are_removed_at_stop_and_at_the_next_start(tmp_path: Path) -> None:
    crashed = triton_stack(tmp_path / "run")
    first = await started(crashed)
    pid = crashed._processes["triton"].popen.pid
    os.killpg(pid, signal.SIGKILL)  # Triton and its stubs die at once: nobody removes the regions
    crashed._processes["triton"].popen.wait()
    assert regions(first), "a killed Triton leaves its regions (else this test would prove nothing)"

    # The runner itself died too: a new one in the same run_dir cleans up before it starts Triton.
    again = triton_stack(tmp_path / "run")
    try:
        again.start_triton()
        assert regions(first) == []
        await again.wait_triton()
        second = shm_prefix(again)
        assert second != first and regions(second)
        os.killpg(again._processes["triton"].popen.pid, signal.SIGKILL)  # a crash this runner sees
    finally:
        await again.stop()
        crashed._processes["triton"].log_file.close()
    assert regions(second) == []
