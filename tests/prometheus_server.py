"""A real Prometheus server (Debian's `prometheus` package, which .ci/run installs) on a free loopback
port, scraping the targets a test gives it every second: the operator's queries and the services'
metrics endpoints are tested against what Prometheus itself does, TLS included."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis_server import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
READY_TIMEOUT_SECONDS = 20.0


class Prometheus:
    """One prometheus process with ``scrape_configs`` (Prometheus's own schema), scraping every second."""

    def __init__(self, folder: Path, scrape_configs: Sequence[Mapping[str, Any]]) -> None:
        if not Path(PROMETHEUS).exists():
            pytest.fail("prometheus not found: install Debian's prometheus package (.ci/run does)")
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": list(scrape_configs),
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_file = folder / "prometheus.log"
        self._log = self._log_file.open("wb")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not become ready: " + self._log_file.read_text()[-2000:])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with its job, health and last error, as the API reports them."""
        with urllib.request.urlopen(self.url + "/api/v1/targets?state=active", timeout=5) as response:
            active: list[dict[str, Any]] = json.load(response)["data"]["activeTargets"]
        return active

    def query(self, expr: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._log.close()
