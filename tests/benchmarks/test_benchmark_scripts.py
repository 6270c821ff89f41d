"""The benchmark scripts are not run by the tests (they take minutes), but each must still import
against the current code: a renamed function would otherwise surface only at the next `make bench`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_script_imports_and_shows_its_help(script: str) -> None:
    ran = subprocess.run(
        [sys.executable, f"{script}.py", "--help"], cwd=BENCHMARKS, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    assert "usage:" in ran.stdout
