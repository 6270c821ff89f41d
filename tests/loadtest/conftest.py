"""The load test's driver is a script folder (loadtest/), not a package: put it on sys.path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))
