"""The operator's distribution, built by pip as its image builds it: only the operator's package ships, no tooling."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def test_the_wheel_holds_the_operator_package_and_nothing_else(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ and egg-info/ beside the pyproject it builds.
    source = shutil.copytree(OPERATOR, tmp_path / "operator", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), source],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("subsecond_operator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"subsecond_operator"}
    modules = {Path(name).stem for name in names if name.startswith("subsecond_operator/")}
    assert {"main", "predelete", "handlers", "decision"} <= modules
    assert "simulator" not in modules  # tooling: tools/subsecond_tools/simulator.py
