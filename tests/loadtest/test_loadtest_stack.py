"""A short run of each scenario against the real local stack (redis-server, tritonserver, the four
services as processes), asserting that every SLO threshold held; a planted near-miss that the
cache does serve must fail the run; a fault schedule reports each phase; the capacity search
brackets a rate. The generated-answer SLOs are loose here: this machine's CPU model is slow."""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from run import THRESHOLDS_CROSSED, main_async, parser

from subsecond.cache.guard import same_text
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

pytestmark = pytest.mark.stack

DATA = Path(__file__).resolve().parents[2] / "loadtest" / "data" / "mix.json"
LOOSE = ["--slo", "SLO_GENERATED_P95_MS=60000", "--slo", "SLO_FIRST_CHUNK_P95_MS=60000"]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = Stack(StackConfig(ports=Ports.free(), run_dir=tmp_path_factory.mktemp("loadtest-stack")))
    await running.start()
    yield running
    await running.stop()


async def run(stack: Stack, out: Path, *argv: str) -> dict[str, object]:
    return await main_async(parser().parse_args([*argv, *LOOSE, "--out", str(out)]), stack=stack)


@pytest.mark.parametrize(
    "scenario", ["steady", *(pytest.param(name, marks=pytest.mark.long) for name in ("step", "ramp", "spike"))]
)
async def test_each_scenario_holds_every_slo(stack: Stack, tmp_path: Path, scenario: str) -> None:
    report = await run(stack, tmp_path, "--scenario", scenario, "--rate", "2", "--duration", "3")
    assert report["exit_code"] == 0, report
    assert report["passed"] and set(report["slos"]) >= {"wrong_answers: count==0", "request_errors: rate<0.01"}  # type: ignore[arg-type]
    (phase,) = report["phases"]  # type: ignore[misc]
    assert phase["requests"] > 0 and phase["wrong_answers"] == 0
    assert (tmp_path / "latency.png").exists() and json.loads((tmp_path / "report.json").read_text())["passed"]


async def test_a_near_miss_served_from_the_cache_fails_the_run(stack: Stack, tmp_path: Path) -> None:
    """Planted: a paraphrase pair (which the stack serves as a semantic hit) labelled as a near-miss; not
    one that is one text once normalised, which embeds at similarity 1 and reads as the prompt's own entry."""
    data = json.loads(DATA.read_text())
    data["near_misses"] = [pair for pair in data["paraphrases"] if not same_text(pair["prompt"], pair["anchor"])][:1]
    assert data["near_misses"]
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps(data))
    report = await run(stack, tmp_path, "--rate", "3", "--duration", "2", "--mix", "near_misses=1",
                       "--data", str(planted))  # fmt: skip
    assert report["exit_code"] == THRESHOLDS_CROSSED and not report["passed"]
    assert report["slos"]["wrong_answers: count==0"] is False  # type: ignore[index]
    assert report["phases"][0]["wrong_answers"] > 0  # type: ignore[index]


async def test_a_fault_schedule_reports_each_phase(stack: Stack, tmp_path: Path) -> None:
    report = await run(stack, tmp_path, "--rate", "3", "--duration", "6", "--mix", "repeats=1,static=1",
                       "--fault", "2:kill:redis", "--fault", "4:restart:redis")  # fmt: skip
    phases = report["phases"]
    assert [p["phase"] for p in phases] == ["baseline", "kill redis", "restart redis"]  # type: ignore[attr-defined]
    assert all(p["requests"] > 0 for p in phases)  # type: ignore[attr-defined]
    # The cache fails open: Redis gone costs hits, not answers.
    assert report["passed"], report


@pytest.mark.long
async def test_capacity_search_brackets_a_rate(stack: Stack, tmp_path: Path) -> None:
    report = await run(stack, tmp_path, "--scenario", "capacity", "--rate", "2", "--max-rate", "4",
                       "--search-steps", "1", "--duration", "2", "--mix", "repeats=1,static=1")  # fmt: skip
    found = report["capacity"]
    rates = [r["rate"] for r in found["runs"]]  # type: ignore[index]
    assert rates[:2] == [2.0, 4.0]
    assert found["highest_rate_holding_every_slo"] >= 2.0  # type: ignore[index,operator]
