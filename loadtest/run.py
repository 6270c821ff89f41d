"""Runs the k6 load test (loadtest/script.js) against a router and reports whether the SLOs held.

Target: ``--target HOST:PORT`` (or $TARGET) for any deployment, with ``--api-key`` (or
$SUBSECOND_API_KEY) and ``--tls``/``--ca``/``--cert``/``--key``/``--authority``; without one, the
local stack: a router already answering on 127.0.0.1:50051 (``make up``), else the stack is started
here and stopped after the run. A fault schedule (``--fault 20:kill:redis --fault 35:restart:redis``,
seconds from the first request) needs the stack started here, and the report then has a section per
phase. ``--scenario capacity`` reruns short steady runs, doubling the rate until an SLO breaks and
then bisecting, and reports the highest rate at which every SLO held.

Writes k6's summary to the terminal and, under ``--out`` (default loadtest/results/): report.json
(the SLOs and whether each held, figures per phase), k6-summary.json, points.json and latency.png.

    .venv/bin/python loadtest/run.py --scenario spike --rate 4 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from report import Phase, phase_figures, plot, read_points

from subsecond_tools.stack.runner import Stack, StackConfig

log = logging.getLogger("loadtest")

HERE = Path(__file__).resolve().parent
K6 = Path(sys.executable).parent / "k6"
LOCAL = "127.0.0.1:50051"
SCENARIOS = ("steady", "step", "ramp", "spike")
PROCESSES = ("redis", "cache", "embedding", "triton", "generation")
ACTIONS = ("stop", "kill", "pause", "resume", "restart")
# k6's exit code when a threshold was crossed (any other non-zero code is a failure to run).
THRESHOLDS_CROSSED = 99


@dataclass(frozen=True)
class Fault:
    at: float  # seconds from the first request
    action: str
    process: str

    @classmethod
    def parse(cls, text: str) -> Fault:
        at, action, process = text.split(":")
        if action not in ACTIONS or process not in PROCESSES:
            raise argparse.ArgumentTypeError(f"{text}: want SECONDS:{'|'.join(ACTIONS)}:{'|'.join(PROCESSES)}")
        return cls(float(at), action, process)

    @property
    def name(self) -> str:
        return f"{self.action} {self.process}"


@dataclass(frozen=True)
class Result:
    rate: float
    exit_code: int
    slos: dict[str, bool]  # "metric: threshold" -> held
    phases: list[dict[str, object]]

    @property
    def held(self) -> bool:
        return self.exit_code == 0 and all(self.slos.values())


def k6_environment(args: argparse.Namespace, target: str, rate: float, scenario: str) -> dict[str, str]:
    env = {
        "TARGET": target,
        "SCENARIO": scenario,
        "RATE": str(rate),
        "DURATION": str(args.duration),
        "DATA": str(args.data.resolve()),
        "PROTO_DIR": str(HERE.parent / "proto"),
        "MIX": args.mix,
        "API_KEY": args.api_key or "",
        "TLS": "true" if args.tls else "false",
        "TLS_CA": str(args.ca or ""),
        "TLS_CERT": str(args.cert or ""),
        "TLS_KEY": str(args.key or ""),
        "TLS_AUTHORITY": args.authority or "",
    }
    env.update(slo.split("=", 1) for slo in args.slo)
    return env


def slo_outcomes(summary: dict[str, dict[str, object]]) -> dict[str, bool]:
    """Every threshold of k6's exported summary and whether it held (k6 marks the crossed ones true)."""
    return {
        f"{metric}: {threshold}": not crossed
        for metric, figures in sorted(summary["metrics"].items())
        for threshold, crossed in dict(figures.get("thresholds", {})).items()  # type: ignore[call-overload]
    }


async def first_request_time(points: Path, k6: asyncio.subprocess.Process) -> float | None:
    """When the scenario's first answer was recorded (setup's warm-up comes before), or None if k6 ended first."""
    def started() -> bool:
        return points.exists() and '"class":' in points.read_text()

    while k6.returncode is None:
        if await asyncio.to_thread(started):
            return time.time()
        await asyncio.sleep(0.1)
    return None


async def apply(stack: Stack, fault: Fault) -> None:
    log.info("fault: %s", fault.name)
    name = fault.process
    if fault.action == "stop":
        await asyncio.to_thread(stack.stop_process, name)
    elif fault.action == "kill":
        await asyncio.to_thread(stack.kill_process, name)
    elif fault.action in ("pause", "resume"):
        stack.signal(name, signal.SIGSTOP if fault.action == "pause" else signal.SIGCONT)
    elif name == "redis":
        await stack.restart_redis()
    elif name == "triton":
        stack.start_triton()
        await stack.wait_triton()
    else:
        await stack.restart_service(name)


async def run_once(
    args: argparse.Namespace, target: str, rate: float, scenario: str, out: Path, stack: Stack | None
) -> Result:
    """One k6 run, with the fault schedule applied to ``stack`` while it runs."""
    points_path, summary_path = out / "points.json", out / "k6-summary.json"
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(points_path.unlink, missing_ok=True)
    argv = [str(K6), "run", "--no-color", "--quiet", "--no-usage-report", "--summary-export", str(summary_path),
            "--out", f"json={points_path}", str(HERE / "script.js")]  # fmt: skip
    env = {**os.environ, **k6_environment(args, target, rate, scenario)}
    k6 = await asyncio.create_subprocess_exec(*argv, env=env, cwd=HERE)
    waiting = asyncio.ensure_future(k6.wait())
    boundaries: list[tuple[str, float]] = [("baseline", time.time())]
    start = await first_request_time(points_path, k6)
    if start is not None:
        boundaries = [("baseline", start)]
        for fault in sorted(args.fault, key=lambda f: f.at):
            assert stack is not None
            await asyncio.sleep(max(0.0, start + fault.at - time.time()))
            if waiting.done():
                break
            boundaries.append((fault.name, time.time()))
            await apply(stack, fault)
    exit_code = await waiting
    ends = [at for _, at in boundaries[1:]] + [time.time()]
    phases = [Phase(name, begin, end) for (name, begin), end in zip(boundaries, ends, strict=True)]
    points = read_points(points_path) if points_path.exists() else []
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"metrics": {}}
    if points:
        plot(points, phases, out / "latency.png", f"{scenario} at {rate:g}/s against {target}")
    return Result(rate, exit_code, slo_outcomes(summary), [phase_figures(points, phase) for phase in phases])


async def capacity(args: argparse.Namespace, target: str, out: Path, stack: Stack | None) -> dict[str, object]:
    """Steady runs: double the rate from ``--rate`` until an SLO breaks, then bisect ``--search-steps`` times."""
    tried: list[Result] = []

    async def held(rate: float) -> bool:
        result = await run_once(args, target, rate, "steady", out / f"rate-{rate:g}", stack)
        tried.append(result)
        log.info("capacity: %g/s %s", rate, "held" if result.held else "broke an SLO")
        return result.held

    low, high = 0.0, args.rate
    while high <= args.max_rate and await held(high):
        low, high = high, high * 2
    if high <= args.max_rate:  # an SLO broke at `high` and held at `low`: bisect between them
        for _ in range(args.search_steps):
            middle = round((low + high) / 2, 2)
            if middle in (low, high):
                break
            low, high = (middle, high) if await held(middle) else (low, middle)
    return {
        "highest_rate_holding_every_slo": low,
        "lowest_rate_breaking_one": high if high <= args.max_rate else None,
        "runs": [{"rate": r.rate, "held": r.held, "slos": r.slos} for r in tried],
    }


async def router_serving(address: str, ca_pem: bytes | None) -> bool:
    """Whether a router answers health checks there: over TLS trusting ``ca_pem``, or in plaintext."""
    if ca_pem is None:
        channel = grpc.aio.insecure_channel(address)
    else:
        channel = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca_pem))
    async with channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def running_stack_ca() -> tuple[Path, bytes] | None:
    """The CA of a stack started elsewhere (`make up`), where a default stack writes it; None: no
    CA there (no stack, or a plaintext one)."""
    ca_file = Stack(StackConfig()).ca_file
    return (ca_file, ca_file.read_bytes()) if ca_file is not None and ca_file.is_file() else None


@contextlib.asynccontextmanager
async def local_target(args: argparse.Namespace) -> AsyncIterator[tuple[str, Stack | None]]:
    """The target and the stack the faults go to: --target as given, a running local stack, or one started here."""
    running_ca = await asyncio.to_thread(running_stack_ca)
    if args.target:
        yield args.target, None
    elif not args.fault and await router_serving(LOCAL, running_ca[1] if running_ca else None):
        if running_ca is not None:
            args.tls, args.ca = True, running_ca[0]
        yield LOCAL, None
    else:
        stack = Stack(StackConfig())
        log.info("starting the local stack (logs in %s)", stack.config.run_dir)
        await stack.start()
        try:
            yield stack.address("router"), stack
        finally:
            await stack.stop()


async def main_async(args: argparse.Namespace, stack: Stack | None = None) -> dict[str, object]:
    """The whole run; a test passes the ``stack`` it started (faults apply to it)."""
    async with contextlib.AsyncExitStack() as scope:
        if stack is not None:
            target = stack.address("router")
        else:
            target, stack = await scope.enter_async_context(local_target(args))
        if args.fault and stack is None:
            raise SystemExit("--fault needs the local stack started by this run (no --target, no stack running)")
        if stack is not None and stack.ca_file is not None:  # the local stack serves TLS with its own CA
            args.tls, args.ca = True, stack.ca_file
        report: dict[str, object] = {
            "scenario": args.scenario, "target": target, "rate": args.rate, "duration_seconds": args.duration,
            "mix": args.mix, "faults": [f.__dict__ for f in args.fault],
        }  # fmt: skip
        if args.scenario == "capacity":
            report["capacity"] = await capacity(args, target, args.out, stack)
            report["passed"] = bool(report["capacity"]["highest_rate_holding_every_slo"])  # type: ignore[index]
        else:
            result = await run_once(args, target, args.rate, args.scenario, args.out, stack)
            report |= {"exit_code": result.exit_code, "passed": result.held, "slos": result.slos,
                       "phases": result.phases}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=(*SCENARIOS, "capacity"), default="steady")
    p.add_argument("--rate", type=float, default=4.0, help="arrivals per second at the base (default: %(default)s)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per run (default: %(default)s)")
    p.add_argument("--target", default=os.environ.get("TARGET"), help="HOST:PORT of a router (default: local)")
    p.add_argument("--api-key", default=os.environ.get("SUBSECOND_API_KEY"), help="sent as x-api-key")
    p.add_argument("--tls", action="store_true", help="TLS to the target (plaintext without)")
    p.add_argument("--ca", type=Path, help="PEM bundle the target's certificate is checked against")
    p.add_argument("--cert", type=Path, help="client certificate (PEM), for a router that wants one")
    p.add_argument("--key", type=Path, help="its private key (PEM)")
    p.add_argument("--authority", help="the server name to expect, when it differs from the target's host")
    p.add_argument("--mix", default="repeats=0.35,paraphrases=0.2,near_misses=0.2,static=0.15,fresh=0.1",
                   help="shares of the traffic classes (default: %(default)s)")  # fmt: skip
    p.add_argument("--data", type=Path, default=HERE / "data" / "mix.json", help="the labelled traffic")
    p.add_argument("--slo", action="append", default=[], metavar="NAME=VALUE",
                   help="override an SLO, e.g. SLO_GENERATED_P95_MS=4000 (see README)")  # fmt: skip
    p.add_argument("--fault", action="append", default=[], type=Fault.parse, metavar="SECONDS:ACTION:PROCESS")
    p.add_argument("--max-rate", type=float, default=256.0, help="capacity search: the rate not to go past")
    p.add_argument("--search-steps", type=int, default=4, help="capacity search: bisection steps")
    # Absolute: k6 runs in loadtest/, where a relative path would land.
    p.add_argument("--out", type=lambda path: Path(path).resolve(), default=HERE / "results")
    return p


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = asyncio.run(main_async(parser().parse_args()))
    for name, held in dict(report.get("slos", {})).items():  # type: ignore[call-overload]
        print(f"{'held  ' if held else 'BROKEN'} {name}")
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
