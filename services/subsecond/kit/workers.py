"""Several worker processes of one service on one port, for more than one core per pod.

One Python process runs one event loop on one core. With ``SUBSECOND_<SERVICE>_PROCESSES`` = N > 1
the command a service was started with becomes a *supervisor*: it starts the same command N times
as workers, each a whole server (``kit.server``) binding the same gRPC port with ``SO_REUSEPORT``,
so the kernel spreads incoming connections over them (by a hash of each connection's addresses: a
client's one HTTP/2 connection stays on one worker, many clients spread).

- Metrics: workers record into Prometheus client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``,
  a fresh directory per supervisor), and the supervisor alone serves ``/metrics`` for all of them on
  the service's metrics port: counters and histograms summed over workers, gauges one series per
  worker (label ``pid``) unless a gauge declares another ``multiprocess_mode``.
- Health: each worker answers ``grpc.health.v1`` for itself (NOT_SERVING while it warms up or drains).
- Shutdown: SIGTERM or SIGINT to the supervisor reaches every worker, each drains as one server does,
  and the supervisor exits once all have (0 if all did cleanly). A worker that exits on its own takes
  the others down with it (exit code 1), so the pod restarts whole rather than serving on fewer cores.
  Workers die with the supervisor (``PR_SET_PDEATHSIG``) even if it is killed outright.
- Per-process state (limits, caches) is each service's to share out: ``run_service``'s ``share``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Set by the supervisor in each worker's environment: "<index>/<count>".
WORKER_ENV = "SUBSECOND_WORKER"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1


def worker_index(environ: Mapping[str, str]) -> int | None:
    """This process's index among the workers, or None when it is not a worker."""
    value = environ.get(WORKER_ENV)
    return int(value.partition("/")[0]) if value else None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: a worker left without its supervisor would hold the port.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Workers:
    """The running workers of one supervisor."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self._processes = processes
        self._stopping = False

    @classmethod
    async def start(cls, count: int, metrics_dir: str) -> Workers:
        """Starts ``count`` copies of this process's own command line as workers."""
        command = [sys.executable, *sys.orig_argv[1:]]
        processes = []
        for index in range(count):
            environ = {**os.environ, WORKER_ENV: f"{index}/{count}", MULTIPROC_ENV: metrics_dir}
            processes.append(
                await asyncio.create_subprocess_exec(*command, env=environ, preexec_fn=_die_with_parent)
            )
        log.info("workers started", extra={"pids": [process.pid for process in processes]})
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def stop(self) -> None:
        """Asks every worker still running to drain (SIGTERM)."""
        self._stopping = True
        for process in self._processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)

    async def wait(self) -> int:
        """Until every worker has exited: 0 when all drained cleanly after ``stop``; 1 when a worker
        exited on its own (the others are then stopped) or any exited with an error."""
        pending = {asyncio.ensure_future(process.wait()): process for process in self._processes}
        failed = False
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                process = pending.pop(finished)
                if process.returncode != 0 or not self._stopping:
                    failed = True
                    log.error(
                        "worker exited", extra={"pid": process.pid, "code": process.returncode, "asked": self._stopping}
                    )
            if failed and not self._stopping:
                self.stop()
        return 1 if failed else 0
