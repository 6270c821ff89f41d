"""Benchmark of the router's latency features, each against the path without it, in one run.

Starts the whole stack on free ports (two tiers: smollm2 small, gemma3 large) and measures, with
requests one at a time so that the model is not shared between them unless the feature says so:

- workflows: the onboarding example (two independent steps, then one reading both) against its
  steps run alone, one after another (the sequential sum) and the longest chain of them (the
  critical path);
- static routes: a rule's answer against a generated answer of a similar request;
- chunking: time to first chunk with sentence chunking against token chunking;
- right-sizing: "auto" on short classification-like prompts (it picks the small tier) against
  the same prompts forced onto the large tier;
- prompt economy: a long chat history through the router (trimmed to the tier's budget) against
  the same conversation sent whole to the generation service;
- paced replay: a cached answer replayed at the model's pace and at once, against its generation.

Prints a table and writes benchmarks/results/latency_features.json.

    .venv/bin/python benchmarks/latency_features.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml
from google.protobuf.json_format import ParseDict
from serving import summary

from subsecond.router.workflow import render
from subsecond.v1 import generation_pb2, generation_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

log = logging.getLogger("bench")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BYPASS = router_pb2.CachePolicy(mode=router_pb2.CACHE_MODE_BYPASS)


def tag() -> str:
    """A fresh prefix: no cache hit, and no llama.cpp prompt-prefix reuse between requests."""
    return f"({uuid.uuid4().hex[:8]})"


async def timed(stub: router_pb2_grpc.RouterStub, request: router_pb2.GenerateRequest) -> router_pb2.Completion:
    """The completion of one Generate call (its own timings: first chunk and total, router-side)."""
    async for response in stub.Generate(request, timeout=300):
        if response.HasField("done"):
            return response.done
    raise RuntimeError("stream ended without done")


def med_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


async def alternate(
    runs: int, first: Callable[[], Awaitable[float]], second: Callable[[], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """Runs two variants in alternating order, ``runs`` times each, so drift hits both alike."""
    a, b = [], []
    for i in range(runs):
        if i % 2:
            b.append(await second())
            a.append(await first())
        else:
            a.append(await first())
            b.append(await second())
    return a, b


async def bench_workflow(stub: router_pb2_grpc.RouterStub, runs: int) -> dict[str, object]:
    example = yaml.safe_load((REPO / "examples" / "onboarding-workflow.yaml").read_text())
    totals, paths, sums, in_run_paths = [], [], [], []
    for i in range(runs):
        request = ParseDict(example, router_pb2.WorkflowRequest())
        request.inputs["message"] = f"{tag()} {request.inputs['message']}"
        request.inputs["profile"] = f"{tag()} {request.inputs['profile']}"
        outputs: dict[str, list[str]] = {}
        summary_event = None
        async for event in stub.RunWorkflow(request, timeout=300):
            if event.HasField("chunk"):
                outputs.setdefault(event.step, []).append(event.chunk.text)
            if event.HasField("summary"):
                summary_event = event.summary
        assert summary_event is not None
        # The same steps alone, one after another, with the prompts they had in the workflow.
        alone: dict[str, float] = {}
        for step in request.steps:
            prompt = render(
                step.request.prompt, request.inputs, {name: "".join(pieces) for name, pieces in outputs.items()}
            )
            t0 = time.perf_counter()
            await timed(
                stub,
                router_pb2.GenerateRequest(
                    prompt=prompt, model=step.request.model, max_tokens=step.request.max_tokens, cache=BYPASS
                ),
            )
            alone[step.id] = time.perf_counter() - t0
        totals.append(summary_event.total_seconds)
        in_run_paths.append(summary_event.critical_path_seconds)
        sums.append(sum(alone.values()))
        paths.append(max(alone["intent"], alone["profile"]) + alone["welcome"])
        log.info(
            "workflow %d/%d: %.0f ms (alone: path %.0f, sum %.0f)",
            i + 1,
            runs,
            totals[-1] * 1e3,
            paths[-1] * 1e3,
            sums[-1] * 1e3,
        )
    return {
        "runs": runs,
        "workflow_ms": med_ms(totals),
        "critical_path_of_steps_alone_ms": med_ms(paths),
        "sequential_sum_of_steps_alone_ms": med_ms(sums),
        "critical_path_in_run_ms": med_ms(in_run_paths),
        "workflow_over_critical_path": round(statistics.median(t / p for t, p in zip(totals, paths, strict=True)), 3),
        "workflow_over_sequential": round(statistics.median(t / s for t, s in zip(totals, sums, strict=True)), 3),
    }


async def bench_static(stub: router_pb2_grpc.RouterStub, runs: int) -> dict[str, object]:
    async def static() -> float:
        done = await timed(stub, router_pb2.GenerateRequest(prompt=f"{tag()} What are your opening hours?"))
        assert done.served_by == types_pb2.SERVED_BY_STATIC
        return done.total_seconds

    async def generated() -> float:
        request = router_pb2.GenerateRequest(
            prompt=f"{tag()} In one sentence: when is a small shop usually open?", max_tokens=32, cache=BYPASS
        )
        return (await timed(stub, request)).total_seconds

    static_s, generated_s = await alternate(runs, static, generated)
    return {
        "static_route": summary(static_s),
        "generated": summary(generated_s),
        "generated_over_static": round(statistics.median(generated_s) / statistics.median(static_s), 1),
    }


async def bench_chunking(stub: router_pb2_grpc.RouterStub, runs: int) -> dict[str, object]:
    async def first_chunk(chunking: int) -> float:
        request = router_pb2.GenerateRequest(
            prompt=f"{tag()} Describe a sunny day in two sentences.", max_tokens=48, cache=BYPASS, chunking=chunking
        )
        return (await timed(stub, request)).time_to_first_chunk_seconds

    token, sentence = await alternate(
        runs, lambda: first_chunk(router_pb2.CHUNKING_TOKEN), lambda: first_chunk(router_pb2.CHUNKING_SENTENCE)
    )
    return {
        "token_time_to_first_chunk": summary(token),
        "sentence_time_to_first_chunk": summary(sentence),
        "sentence_minus_token_median_ms": round((statistics.median(sentence) - statistics.median(token)) * 1000, 1),
    }


async def bench_right_sizing(stub: router_pb2_grpc.RouterStub) -> dict[str, object]:
    prompts = json.loads((REPO / "examples" / "tier-examples.json").read_text())["test"]["small"]
    auto_s, large_s, chosen = [], [], []

    for prompt in prompts * 2:

        async def auto(prompt: str = prompt) -> float:
            done = await timed(
                stub, router_pb2.GenerateRequest(prompt=f"{prompt} {tag()}", model="auto", max_tokens=32)
            )
            chosen.append(done.model)
            return done.total_seconds

        async def large(prompt: str = prompt) -> float:
            request = router_pb2.GenerateRequest(prompt=f"{prompt} {tag()}", model="large", max_tokens=32, cache=BYPASS)
            return (await timed(stub, request)).total_seconds

        a, b = await alternate(1, auto, large)
        auto_s += a
        large_s += b
    return {
        "auto_chose_small": f"{chosen.count('small')}/{len(chosen)}",
        "auto_total": summary(auto_s),
        "forced_large_total": summary(large_s),
        "large_over_auto": round(statistics.median(large_s) / statistics.median(auto_s), 2),
    }


async def bench_prompt_economy(
    stub: router_pb2_grpc.RouterStub, generator: generation_pb2_grpc.GeneratorStub, runs: int
) -> dict[str, object]:
    filler = "Tell me more about the weather in spring and in autumn. " * 40

    def history() -> list[types_pb2.ChatMessage]:
        return [
            types_pb2.ChatMessage(role="system", content="Be brief."),
            types_pb2.ChatMessage(role="user", content=f"{tag()} {filler}"),
            types_pb2.ChatMessage(role="assistant", content=filler),
            types_pb2.ChatMessage(role="user", content="Now just say hello."),
        ]

    trimmed_tokens: list[int] = []
    prompt_tokens: dict[str, list[int]] = {"router": [], "whole": []}

    async def through_router() -> float:
        request = router_pb2.GenerateRequest(messages=history(), model="small", max_tokens=16, cache=BYPASS)
        done = await timed(stub, request)
        trimmed_tokens.append(done.trimmed_prompt_tokens)
        prompt_tokens["router"].append(done.prompt_tokens)
        return done.time_to_first_chunk_seconds

    async def whole() -> float:
        request = generation_pb2.GenerationRequest(model="small", messages=history(), max_tokens=16)
        t0 = time.perf_counter()
        first = None
        async for chunk in generator.Generate(request, timeout=300):
            if first is None and chunk.text:
                first = time.perf_counter() - t0
            if chunk.HasField("done"):
                prompt_tokens["whole"].append(chunk.done.prompt_tokens)
        return first if first is not None else time.perf_counter() - t0

    trimmed, untrimmed = await alternate(runs, through_router, whole)
    return {
        "router_trimmed_time_to_first_chunk": summary(trimmed),
        "whole_history_time_to_first_token": summary(untrimmed),
        "whole_over_trimmed": round(statistics.median(untrimmed) / statistics.median(trimmed), 2),
        "prompt_tokens_read_trimmed": statistics.median(prompt_tokens["router"]),
        "prompt_tokens_read_whole": statistics.median(prompt_tokens["whole"]),
        "estimated_tokens_trimmed": statistics.median(trimmed_tokens),
    }


async def bench_replay(stub: router_pb2_grpc.RouterStub) -> dict[str, object]:
    question = router_pb2.GenerateRequest(
        messages=[
            types_pb2.ChatMessage(role="system", content="Answer in two short sentences."),
            types_pb2.ChatMessage(role="user", content=f"{tag()} Why is the sky blue?"),
        ],
        max_tokens=96,
    )
    generated = await timed(stub, question)
    await asyncio.sleep(0.5)  # the write-through runs after the last chunk
    at_once = await timed(stub, question)
    question.replay = router_pb2.REPLAY_PACED
    paced = await timed(stub, question)
    return {
        "generation_streaming_ms": round((generated.total_seconds - generated.time_to_first_chunk_seconds) * 1000, 1),
        "paced_replay_total_ms": round(paced.total_seconds * 1000, 1),
        "at_once_replay_total_ms": round(at_once.total_seconds * 1000, 1),
        "served_by": [types_pb2.ServedBy.Name(at_once.served_by), types_pb2.ServedBy.Name(paced.served_by)],
    }


async def bench(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="subsecond-bench-") as run_dir:
        stack = Stack(StackConfig(ports=Ports.free(), run_dir=Path(run_dir)))
        log.info("starting the stack (Redis, Triton with smollm2 and gemma3, four services)")
        await stack.start()
        results: dict[str, object] = {}
        try:
            async with (
                stack.channel("router", as_service=None) as router_channel,
                stack.channel("generation") as generation_channel,
            ):
                stub = router_pb2_grpc.RouterStub(router_channel)
                generator = generation_pb2_grpc.GeneratorStub(generation_channel)
                await timed(stub, router_pb2.GenerateRequest(prompt=f"{tag()} warm up", max_tokens=4, cache=BYPASS))
                await timed(
                    stub, router_pb2.GenerateRequest(prompt=f"{tag()} warm", model="large", max_tokens=4, cache=BYPASS)
                )
                for name, scenario in (
                    ("workflow", lambda: bench_workflow(stub, args.workflows)),
                    ("static_route", lambda: bench_static(stub, args.runs)),
                    ("chunking", lambda: bench_chunking(stub, args.runs)),
                    ("right_sizing", lambda: bench_right_sizing(stub)),
                    ("prompt_economy", lambda: bench_prompt_economy(stub, generator, args.runs)),
                    ("paced_replay", lambda: bench_replay(stub)),
                ):
                    log.info("%s ...", name)
                    results[name] = await scenario()
                    log.info("%s: %s", name, json.dumps(results[name]))
        finally:
            await stack.stop()
    return results


def table(results: dict[str, dict[str, object]]) -> str:
    w, s, c, r, e, p = (
        results[k] for k in ("workflow", "static_route", "chunking", "right_sizing", "prompt_economy", "paced_replay")
    )
    rows = [
        (
            "workflow (onboarding)",
            f"{w['workflow_ms']} ms",
            f"path {w['critical_path_of_steps_alone_ms']} ms, sum {w['sequential_sum_of_steps_alone_ms']} ms",
            # The workflow's time over its steps' (from the medians this row shows): above 1 is slower.
            f"took {w['workflow_ms'] / w['critical_path_of_steps_alone_ms']:.2f}x the path, "  # type: ignore[operator]
            f"{w['workflow_ms'] / w['sequential_sum_of_steps_alone_ms']:.2f}x the sum",  # type: ignore[operator]
        ),
        (
            "static route vs generated (total)",
            f"{s['static_route']['p50_ms']} ms",
            f"{s['generated']['p50_ms']} ms",
            f"{s['generated_over_static']}x faster",
        ),
        (
            "first chunk: sentence vs token",
            f"{c['sentence_time_to_first_chunk']['p50_ms']} ms",
            f"{c['token_time_to_first_chunk']['p50_ms']} ms",
            f"+{c['sentence_minus_token_median_ms']} ms for whole sentences",
        ),
        (
            "auto (small) vs forced large (total)",
            f"{r['auto_total']['p50_ms']} ms",
            f"{r['forced_large_total']['p50_ms']} ms",
            f"{r['large_over_auto']}x; auto chose small {r['auto_chose_small']}",
        ),
        (
            "trimmed history vs whole (first chunk)",
            f"{e['router_trimmed_time_to_first_chunk']['p50_ms']} ms",
            f"{e['whole_history_time_to_first_token']['p50_ms']} ms",
            f"{e['whole_over_trimmed']}x; reads {e['prompt_tokens_read_trimmed']:.0f}, "
            f"not {e['prompt_tokens_read_whole']:.0f} prompt tokens",
        ),
        (
            "paced replay vs generation streaming",
            f"{p['paced_replay_total_ms']} ms",
            f"{p['generation_streaming_ms']} ms",
            f"at once: {p['at_once_replay_total_ms']} ms",
        ),
    ]
    head = ("feature", "with it (p50)", "without it (p50)", "gain")
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(4)]
    line = lambda row: "  ".join(str(v).ljust(widths[i]) for i, v in enumerate(row))  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * x for x in widths)), *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="pairs per scenario (default: %(default)s)")
    parser.add_argument("--workflows", type=int, default=5, help="onboarding workflow runs (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_features.json", help="where the figures go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = asyncio.run(bench(args))
    print(table(results))  # type: ignore[arg-type]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "args": {"runs": args.runs, "workflows": args.workflows},
        **results,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
