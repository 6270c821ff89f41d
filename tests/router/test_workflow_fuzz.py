"""Property-based fuzzing of the workflow planner and rendering (hypothesis): whatever a WorkflowRequest
holds, ``plan_workflow`` returns a plan or refuses with the kit's InvalidArgument (as WorkflowError), and
never raises anything else; a plan puts every step after the steps it depends on, and rendering a step
with any outputs of those steps gives a prompt within the limit or InvalidArgument, never a larger one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from subsecond.kit.errors import InvalidArgument
from subsecond.router.workflow import plan_workflow, render
from subsecond.v1 import router_pb2

MAX_PROMPT_CHARS = 2_000
LIMITS = {"max_steps": 6, "max_prompt_chars": MAX_PROMPT_CHARS, "max_input_chars": 5_000}

NAMES = st.one_of(st.sampled_from(["a", "b", "c", "msg", "profile"]), st.text(max_size=6))
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
VALUE = st.one_of(TEXT, st.builds(lambda n: "v" * n, st.integers(0, 6_000)))
# Template pieces: text, well-formed references (with and without spaces), and broken ones.
PIECE = st.one_of(
    TEXT,
    st.builds("{{{{inputs.{}}}}}".format, NAMES),
    st.builds("{{{{ steps.{} }}}}".format, NAMES),
    st.sampled_from(["{{", "}}", "{{inputs.", "{{steps.}}", "{{ inputs.a }"]),
)
TEMPLATE = st.lists(PIECE, max_size=8).map("".join)
STEP = st.builds(
    router_pb2.WorkflowStep,
    id=NAMES,
    request=st.builds(router_pb2.GenerateRequest, prompt=TEMPLATE),
    depends_on=st.lists(NAMES, max_size=3),
)
WORKFLOW = st.builds(
    router_pb2.WorkflowRequest, inputs=st.dictionaries(NAMES, VALUE, max_size=4), steps=st.lists(STEP, max_size=8)
)


@settings(max_examples=400, deadline=None)
@given(request=WORKFLOW, output=st.one_of(TEXT, st.builds(lambda n: "o" * n, st.integers(0, 3_000))))
def test_plans_or_refuses_and_renders_within_the_limit(request: router_pb2.WorkflowRequest, output: str) -> None:
    try:
        plan = plan_workflow(request, **LIMITS)
    except InvalidArgument as error:
        assert error.message.split(":")[0]
        return
    seen: set[str] = set()
    for step in plan.steps:
        assert set(step.depends_on) <= seen
        seen.add(step.id)
        try:
            outputs = dict.fromkeys(seen, output)
            prompt = render(step.spec.request.prompt, plan.inputs, outputs, max_chars=MAX_PROMPT_CHARS)
        except InvalidArgument as error:
            assert error.message.startswith("rendered prompt:")
            continue
        assert len(prompt) <= MAX_PROMPT_CHARS
