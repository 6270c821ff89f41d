"""benchmarks/hit_path.py's reading of py-spy's stacks, which the router README's profile tables come from:
a function's time per call inclusive and running, and whose code was running."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from script_modules import load_script


@pytest.fixture(scope="module")
def hit_path() -> ModuleType:
    return load_script("benchmarks/hit_path.py")


def test_time_per_call_by_function_counts_a_function_once_a_stack_and_sorts_out_whose_code_ran(
    hit_path: ModuleType, tmp_path: Path
) -> None:
    generate = "generate (/r/services/subsecond/router/service.py:10)"
    digest = "_digest (/r/services/subsecond/kit/prompt_identity.py:5)"
    run = "_run (/usr/lib/python3.11/asyncio/events.py:80)"
    write = "write (/v/site-packages/grpc/aio/_call.py:3)"
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "\n".join(
            [
                f"process 1;{run};{generate};{digest} 40",
                f"process 1;{run};{generate};{generate} 20",  # recursion: counted once in the total
                f"process 1;{run};{write} 30",
                f"process 1;{run} 10",
            ]
        )
        + "\n"
    )
    hz, calls = hit_path.PROFILE_HZ, 100
    profile = hit_path.profile_by_function(stacks, calls, 5)

    def us(samples: int) -> float:
        return round(samples / hz / calls * 1e6, 1)

    assert profile["sampled_us_per_call"] == us(100)
    assert profile["running_us_per_call"] == {"subsecond": us(60), "grpc": us(30), "other": us(10)}
    assert profile["functions"] == [
        {"function": "subsecond/router/service.py:generate", "total_us": us(60), "self_us": us(20)},
        {"function": "subsecond/kit/prompt_identity.py:_digest", "total_us": us(40), "self_us": us(40)},
    ]
    assert list(profile["running_most"]) == [
        "/r/services/subsecond/kit/prompt_identity.py:_digest",
        "grpc/aio/_call.py:write",
        "/r/services/subsecond/router/service.py:generate",
        "/usr/lib/python3.11/asyncio/events.py:_run",
    ]
