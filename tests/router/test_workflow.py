import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from subsecond.kit.errors import InvalidArgument, ResourceExhausted
from subsecond.router.workflow import (
    Plan,
    Step,
    StepFailed,
    WorkflowError,
    critical_path,
    plan_workflow,
    render,
    rendered_size,
    run_workflow,
)
from subsecond.v1 import router_pb2, types_pb2


def workflow(*steps: dict[str, object], inputs: dict[str, str] | None = None) -> router_pb2.WorkflowRequest:
    """Steps given as ``{"id": ..., "prompt": ..., "depends_on": [...]}``: the prompt goes in the step's request."""
    return router_pb2.WorkflowRequest(
        inputs=inputs or {},
        steps=[
            router_pb2.WorkflowStep(
                id=step["id"],  # type: ignore[arg-type]
                request=router_pb2.GenerateRequest(prompt=step["prompt"]),  # type: ignore[arg-type]
                depends_on=step.get("depends_on", []),  # type: ignore[arg-type]
            )
            for step in steps
        ],
    )


LIMITS = {"max_steps": 8, "max_prompt_chars": 1000, "max_input_chars": 2000}
ONBOARDING = workflow(
    {"id": "intent", "prompt": "What does this user want? {{inputs.message}}"},
    {"id": "profile", "prompt": "Summarise: {{ inputs.profile }}"},
    {"id": "welcome", "prompt": "Write a welcome. Intent: {{steps.intent}}. Profile: {{steps.profile}}"},
    inputs={"message": "I want to track my runs", "profile": "Ana, 34, runner"},
)


def test_dependencies_come_from_references_and_depends_on() -> None:
    plan = plan_workflow(ONBOARDING, **LIMITS)
    assert [step.id for step in plan.steps] == ["intent", "profile", "welcome"]
    assert plan.steps[2].depends_on == ("intent", "profile")
    explicit = workflow({"id": "b", "prompt": "x", "depends_on": ["a"]}, {"id": "a", "prompt": "y"})
    assert [step.id for step in plan_workflow(explicit, **LIMITS).steps] == ["a", "b"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (workflow(), "steps: a workflow needs at least one step"),
        (workflow(*({"id": f"s{i}", "prompt": "x"} for i in range(9))), "steps: 9 steps, at most 8"),
        (workflow({"id": "bad id", "prompt": "x"}), "steps[0].id"),
        (workflow({"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}), "step a: the id is used twice"),
        (workflow({"id": "a", "prompt": "  "}), "step a: prompt must not be blank"),
        (workflow({"id": "a", "prompt": "{{inputs.nope}}"}), "step a: prompt reads input 'nope'"),
        (workflow({"id": "a", "prompt": "{{steps.ghost}}"}), "step a: prompt reads step 'ghost'"),
        (workflow({"id": "a", "prompt": "x", "depends_on": ["ghost"]}), "step a: depends_on names step 'ghost'"),
        (workflow({"id": "a", "prompt": "{{steps.a}}"}), "step a: depends on itself"),
        (workflow({"id": "a", "prompt": "x"}, inputs={"big": "y" * 2001}), "inputs: 2001 characters together"),
        (workflow({"id": "a", "prompt": "x" * 1001}), "step a: prompt: 1001 characters, at most 1000"),
        # 60 references to a 600-character input: refused by counting, before a 36,000-character prompt is built.
        (
            workflow({"id": "a", "prompt": "{{inputs.m}}" * 60}, inputs={"m": "z" * 600}),
            "step a: prompt: 36000 characters with the inputs it reads, at most 1000",
        ),
        (
            workflow(
                {"id": "a", "prompt": "{{steps.c}}"},
                {"id": "b", "prompt": "{{steps.a}}"},
                {"id": "c", "prompt": "{{steps.b}}"},
                {"id": "d", "prompt": "free"},
            ),
            "step a: dependency cycle among steps a, b, c",
        ),
    ],
)
def test_bad_workflows_are_refused_naming_the_step(request_: router_pb2.WorkflowRequest, message: str) -> None:
    with pytest.raises(WorkflowError) as refused:
        plan_workflow(request_, **LIMITS)
    assert str(refused.value).startswith(message)


def test_a_step_with_messages_is_refused() -> None:
    step = router_pb2.WorkflowStep(
        id="a",
        request=router_pb2.GenerateRequest(prompt="x", messages=[types_pb2.ChatMessage(role="user", content="y")]),
    )
    with pytest.raises(WorkflowError, match="step a: messages: a step has a prompt template"):
        plan_workflow(router_pb2.WorkflowRequest(steps=[step]), **LIMITS)


def test_a_failed_step_keeps_its_status_and_hides_unexpected_errors() -> None:
    refused = StepFailed("a", ResourceExhausted("generation is at capacity"))
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.message == "step a failed: generation is at capacity; the other steps were cancelled"
    bug = StepFailed("b", KeyError("a secret detail"))
    assert bug.code == grpc.StatusCode.INTERNAL
    assert bug.message == "step b failed: internal error; the other steps were cancelled"


def test_render_replaces_references() -> None:
    assert render("{{inputs.x}} and {{ steps.y }}", {"x": "1"}, {"y": "2"}, max_chars=7) == "1 and 2"


def test_render_refuses_a_prompt_the_steps_outputs_make_too_long() -> None:
    assert rendered_size("{{steps.y}}" * 3, {}, {"y": "abcd"}) == 12
    with pytest.raises(InvalidArgument, match="rendered prompt: 12 characters, at most 11"):
        render("{{steps.y}}" * 3, {}, {"y": "abcd"}, max_chars=11)


def test_critical_path_is_the_longest_chain() -> None:
    plan = plan_workflow(ONBOARDING, **LIMITS)
    seconds, path = critical_path({"intent": 1.0, "profile": 3.0, "welcome": 2.0}, plan)
    assert seconds == 5.0
    assert path == ["profile", "welcome"]


def fake_runner(durations: dict[str, float], fail: str = "", log: list[str] | None = None) -> tuple[list[str], object]:
    prompts: list[str] = []
    record = log if log is not None else []

    async def run(step: Step, prompt: str) -> AsyncIterator[router_pb2.GenerateResponse]:
        prompts.append(prompt)
        record.append(f"start {step.id}")
        try:
            await asyncio.sleep(durations[step.id])
            if step.id == fail:
                raise RuntimeError("boom")
            yield router_pb2.GenerateResponse(text=f"<{step.id}>")
            yield router_pb2.GenerateResponse(text="", done=router_pb2.Completion())
        except asyncio.CancelledError:
            record.append(f"cancelled {step.id}")
            raise
        record.append(f"end {step.id}")

    return prompts, run


async def collect(plan: Plan, run: object) -> list[router_pb2.WorkflowEvent]:
    return [event async for event in run_workflow(plan, run)]  # type: ignore[arg-type]


async def test_independent_steps_overlap_and_the_dependent_one_waits() -> None:
    plan = plan_workflow(ONBOARDING, **LIMITS)
    log: list[str] = []
    prompts, run = fake_runner({"intent": 0.05, "profile": 0.1, "welcome": 0.05}, log=log)
    events = await collect(plan, run)
    assert log[:2] == ["start intent", "start profile"]  # both before either ends
    assert log.index("start welcome") > log.index("end profile")
    assert prompts[-1] == "Write a welcome. Intent: <intent>. Profile: <profile>"
    summary = events[-1].summary
    assert summary.critical_path == ["profile", "welcome"]
    assert summary.sequential_seconds > summary.total_seconds >= summary.critical_path_seconds
    assert summary.total_seconds < summary.critical_path_seconds * 1.5
    kinds = [(event.step, event.WhichOneof("event")) for event in events]
    assert kinds.count(("welcome", "started")) == 1
    welcome_chunks = [event.chunk for event in events if event.step == "welcome" and event.HasField("chunk")]
    assert [chunk.HasField("done") for chunk in welcome_chunks] == [False, True]


async def test_a_failing_step_cancels_the_others_and_is_named() -> None:
    plan = plan_workflow(ONBOARDING, **LIMITS)
    log: list[str] = []
    _, run = fake_runner({"intent": 0.01, "profile": 5.0, "welcome": 0.01}, fail="intent", log=log)
    with pytest.raises(StepFailed) as failed:
        await collect(plan, run)
    assert failed.value.step == "intent"
    assert "cancelled profile" in log
    assert "start welcome" not in log


async def test_closing_the_stream_cancels_running_steps() -> None:
    plan = plan_workflow(ONBOARDING, **LIMITS)
    log: list[str] = []
    _, run = fake_runner({"intent": 5.0, "profile": 5.0, "welcome": 0.01}, log=log)
    events = run_workflow(plan, run)  # type: ignore[arg-type]
    first = await anext(events)
    assert first.WhichOneof("event") == "started"
    await events.aclose()
    assert sorted(entry for entry in log if entry.startswith("cancelled")) == ["cancelled intent", "cancelled profile"]
