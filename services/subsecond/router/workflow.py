"""Workflows: a small DAG of generation steps, validated up front and run as soon as inputs are ready.

``plan_workflow`` is pure: it checks the request (step names, references, cycles, size) and
returns the steps in an order that respects their dependencies, or raises ``WorkflowError``
naming the step at fault, before anything runs. Sizes are checked before anything is rendered:
the inputs together, each template, and each template with the inputs it reads (counted, not
built), so a rendered prompt is bounded by construction; a step's prompt that would grow past the
limit with the outputs of the steps it reads is refused before it is built.

``run_workflow`` starts every step the moment the steps it reads have finished, so independent
steps overlap; it streams each step's events as they happen and ends with a summary that sets
the workflow's time against its critical path and against running the steps one after another.
When a step fails, or the caller goes away, the steps still running are cancelled; the failure
is the step's own status, its message naming the step.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from subsecond.kit.errors import Internal, InvalidArgument, ServiceError
from subsecond.kit.settings import NAME_PATTERN
from subsecond.v1 import router_pb2

log = logging.getLogger(__name__)

# {{inputs.NAME}} or {{steps.ID}}, with optional spaces inside the braces.
_REFERENCE = re.compile(r"\{\{\s*(inputs|steps)\.([A-Za-z0-9_-]+)\s*\}\}")


class WorkflowError(InvalidArgument):
    """A workflow refused before anything ran; the message names the step."""


class StepFailed(ServiceError):
    """A step failed while running and the other steps have been cancelled: the step's own status
    (INTERNAL for an unexpected error, whose text the caller does not see)."""

    def __init__(self, step: str, error: Exception) -> None:
        reason = error.message if isinstance(error, ServiceError) else "internal error"
        super().__init__(f"step {step} failed: {reason}; the other steps were cancelled")
        self.code = error.code if isinstance(error, ServiceError) else Internal.code
        self.step = step
        self.error = error


@dataclass(frozen=True)
class Step:
    id: str
    spec: router_pb2.WorkflowStep
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    # In an order where every step comes after the steps it depends on.
    steps: tuple[Step, ...]
    inputs: Mapping[str, str]
    # The longest prompt a step may be rendered to.
    max_prompt_chars: int


def plan_workflow(
    request: router_pb2.WorkflowRequest, *, max_steps: int, max_prompt_chars: int, max_input_chars: int
) -> Plan:
    if not request.steps:
        raise WorkflowError("steps: a workflow needs at least one step")
    if len(request.steps) > max_steps:
        raise WorkflowError(f"steps: {len(request.steps)} steps, at most {max_steps}")
    input_chars = sum(len(value) for value in request.inputs.values())
    if input_chars > max_input_chars:
        raise WorkflowError(
            f"inputs: {input_chars} characters together, at most {max_input_chars} (WORKFLOW_MAX_INPUT_CHARS)"
        )
    ids: list[str] = []
    for i, spec in enumerate(request.steps):
        if not NAME_PATTERN.match(spec.id):
            raise WorkflowError(f"steps[{i}].id: {spec.id!r} is not a simple name ([A-Za-z0-9_-])")
        if spec.id in ids:
            raise WorkflowError(f"step {spec.id}: the id is used twice")
        if len(spec.request.prompt) > max_prompt_chars:
            raise WorkflowError(
                f"step {spec.id}: prompt: {len(spec.request.prompt)} characters, at most {max_prompt_chars}"
            )
        if not spec.request.prompt.strip():
            raise WorkflowError(f"step {spec.id}: prompt must not be blank")
        if spec.request.messages:
            raise WorkflowError(f"step {spec.id}: messages: a step has a prompt template, not messages")
        ids.append(spec.id)
    known = set(ids)
    steps: dict[str, Step] = {}
    for spec in request.steps:
        depends_on: list[str] = []
        for kind, name in _REFERENCE.findall(spec.request.prompt):
            if kind == "inputs" and name not in request.inputs:
                raise WorkflowError(f"step {spec.id}: prompt reads input {name!r}, which the request does not give")
            if kind == "steps" and name not in known:
                raise WorkflowError(f"step {spec.id}: prompt reads step {name!r}, which does not exist")
            if kind == "steps" and name not in depends_on:
                depends_on.append(name)
        for name in spec.depends_on:
            if name not in known:
                raise WorkflowError(f"step {spec.id}: depends_on names step {name!r}, which does not exist")
            if name not in depends_on:
                depends_on.append(name)
        if spec.id in depends_on:
            raise WorkflowError(f"step {spec.id}: depends on itself")
        size = rendered_size(spec.request.prompt, request.inputs, {})
        if size > max_prompt_chars:
            raise WorkflowError(
                f"step {spec.id}: prompt: {size} characters with the inputs it reads, at most {max_prompt_chars}"
            )
        steps[spec.id] = Step(spec.id, spec, tuple(depends_on))
    return Plan(steps=_topological(steps, ids), inputs=dict(request.inputs), max_prompt_chars=max_prompt_chars)


def _topological(steps: Mapping[str, Step], ids: Sequence[str]) -> tuple[Step, ...]:
    """Kahn's algorithm, in request order among ready steps; a leftover step sits on a cycle."""
    waiting = {step_id: set(steps[step_id].depends_on) for step_id in ids}
    ordered: list[Step] = []
    while waiting:
        ready = [step_id for step_id in ids if step_id in waiting and not waiting[step_id]]
        if not ready:
            cycle = sorted(waiting)
            raise WorkflowError(f"step {cycle[0]}: dependency cycle among steps {', '.join(cycle)}")
        for step_id in ready:
            ordered.append(steps[step_id])
            del waiting[step_id]
        for pending in waiting.values():
            pending.difference_update(ready)
    return tuple(ordered)


def rendered_size(template: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> int:
    """The length ``render`` would give, without building it; a reference to a step not in ``outputs``
    counts as empty."""
    size = len(template)
    for reference in _REFERENCE.finditer(template):
        values = inputs if reference.group(1) == "inputs" else outputs
        size += len(values.get(reference.group(2), "")) - len(reference.group())
    return size


def render(template: str, inputs: Mapping[str, str], outputs: Mapping[str, str], *, max_chars: int) -> str:
    """The step's prompt with its references replaced (they were checked by ``plan_workflow``); one
    that would be longer than ``max_chars`` is refused before it is built."""
    size = rendered_size(template, inputs, outputs)
    if size > max_chars:
        raise InvalidArgument(f"rendered prompt: {size} characters, at most {max_chars}")
    return _REFERENCE.sub(lambda m: (inputs if m.group(1) == "inputs" else outputs)[m.group(2)], template)


def critical_path(durations: Mapping[str, float], plan: Plan) -> tuple[float, list[str]]:
    """The longest chain of dependent steps by their durations, and the steps on it."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for step in plan.steps:  # dependencies come first
        before = max(step.depends_on, key=lambda dep: finish[dep], default=None)
        finish[step.id] = (finish[before] if before else 0.0) + durations[step.id]
        via[step.id] = before
    last: str | None = max(finish, key=lambda step_id: finish[step_id])
    path: list[str] = []
    while last is not None:
        path.append(last)
        last = via[last]
    return max(finish.values()), path[::-1]


# Runs one step: given the step and its rendered prompt, streams the step's responses (the last carries done).
StepRunner = Callable[[Step, str], AsyncIterator[router_pb2.GenerateResponse]]


async def run_workflow(plan: Plan, run_step: StepRunner) -> AsyncIterator[router_pb2.WorkflowEvent]:
    """Runs the plan, yielding events in the order they happen; raises ``StepFailed`` for the first
    step that fails (after cancelling the rest). Closing the iterator cancels every running step."""
    started = time.perf_counter()
    events: asyncio.Queue[router_pb2.WorkflowEvent | None] = asyncio.Queue()
    finished = {step.id: asyncio.Event() for step in plan.steps}
    outputs: dict[str, str] = {}
    durations: dict[str, float] = {}

    def emit(
        step: str, started_event: router_pb2.StepStarted | None = None, chunk: router_pb2.GenerateResponse | None = None
    ) -> None:
        events.put_nowait(
            router_pb2.WorkflowEvent(
                step=step, at_seconds=time.perf_counter() - started, started=started_event, chunk=chunk
            )
        )

    async def one(step: Step) -> None:
        for dependency in step.depends_on:
            await finished[dependency].wait()
        began = time.perf_counter()
        emit(step.id, started_event=router_pb2.StepStarted(depends_on=step.depends_on))
        texts: list[str] = []
        try:
            prompt = render(step.spec.request.prompt, plan.inputs, outputs, max_chars=plan.max_prompt_chars)
            async for response in run_step(step, prompt):
                texts.append(response.text)
                emit(step.id, chunk=response)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not isinstance(error, ServiceError):
                log.error("workflow step %s failed", step.id, exc_info=error)
            raise StepFailed(step.id, error) from error
        durations[step.id] = time.perf_counter() - began
        outputs[step.id] = "".join(texts)
        finished[step.id].set()

    async def run_all() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for step in plan.steps:
                    group.create_task(one(step))
        finally:
            events.put_nowait(None)

    runner = asyncio.create_task(run_all())
    try:
        while (event := await events.get()) is not None:
            yield event
        try:
            await runner
        except BaseExceptionGroup as group:
            failed = [error for error in group.exceptions if isinstance(error, StepFailed)]
            if not failed:
                raise
            raise failed[0] from None
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
    path_seconds, path = critical_path(durations, plan)
    yield router_pb2.WorkflowEvent(
        at_seconds=time.perf_counter() - started,
        summary=router_pb2.WorkflowSummary(
            total_seconds=time.perf_counter() - started,
            critical_path_seconds=path_seconds,
            sequential_seconds=sum(durations.values()),
            critical_path=path,
        ),
    )
