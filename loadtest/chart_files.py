"""The load test's files the chart ships for its `helm test` Pod (templates/tests/loadtest.yaml).

Helm reads only files inside the chart, and a symlink does not survive `helm package`, so the chart
holds copies under charts/subsecond/files/loadtest/: the k6 script, the labelled traffic and the
protos of subsecond.v1. `.venv/bin/python loadtest/chart_files.py --write` refreshes them after a change
here; tests/chart/test_chart_loadtest.py fails while a copy differs from its source.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART_COPIES = REPO / "charts" / "subsecond" / "files" / "loadtest"
PROTOS = REPO / "proto" / "subsecond" / "v1"


def sources() -> dict[str, Path]:
    """The chart's file name (a ConfigMap key: no directories) -> its source in the repository. Every
    proto of the package, not only router.proto: what it imports changes with the API."""
    files = {"script.js": REPO / "loadtest" / "script.js", "mix.json": REPO / "loadtest" / "data" / "mix.json"}
    return files | {proto.name: proto for proto in sorted(PROTOS.glob("*.proto"))}


def stale() -> list[str]:
    """The chart's copies that are missing, differ from their source, or have no source any more."""
    wanted = sources()
    present = {path.name for path in CHART_COPIES.iterdir()} if CHART_COPIES.is_dir() else set()
    differing = [
        name
        for name, source in wanted.items()
        if name not in present or (CHART_COPIES / name).read_bytes() != source.read_bytes()
    ]
    return differing + sorted(present - set(wanted))


def write() -> None:
    CHART_COPIES.mkdir(parents=True, exist_ok=True)
    wanted = sources()
    for path in CHART_COPIES.iterdir():
        if path.name not in wanted:
            path.unlink()
    for name, source in wanted.items():
        (CHART_COPIES / name).write_bytes(source.read_bytes())


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    elif differing := stale():
        sys.exit(f"out of date in {CHART_COPIES}: {', '.join(differing)} (run with --write)")
